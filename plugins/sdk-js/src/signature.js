// Signature checks providers use, all compared in constant time:
// HMAC-SHA256 as hex or base64, Meta's `X-Hub-Signature-256` and handshake,
// and Standard Webhooks (standardwebhooks.com).

import { hmacSha256 as hmacBytes } from './sha256.js';
import { queryParam } from './http.js';

/** How far a Standard Webhooks timestamp may be from now, either way (seconds). */
export const STANDARD_TOLERANCE_SECS = 5 * 60;

/** Why a request was refused; the message is safe to show the caller. */
export class SignatureError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SignatureError';
  }
}

const encoder = new TextEncoder();

/** Bytes of a string (UTF-8), a typed array or an ArrayBuffer. Anything else is
 *  a TypeError: a key must never become zeros by accident. */
export function bytes(value) {
  if (typeof value === 'string') return encoder.encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`expected a string or bytes, not ${value === null ? 'null' : typeof value}`);
}

/** The secrets to try: one string, or several (a rotation); never an empty one. */
function secretList(secrets) {
  const list = (Array.isArray(secrets) ? secrets : [secrets]).filter((s) => s != null && s !== '');
  for (const s of list) bytes(s);
  return list;
}

export function toHex(data) {
  let out = '';
  for (const b of data) out += b.toString(16).padStart(2, '0');
  return out;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

export function base64Encode(data) {
  let out = '';
  for (let i = 0; i < data.length; i += 3) {
    const n = (data[i] << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
    out += i + 1 < data.length ? ALPHABET[(n >> 6) & 63] : '=';
    out += i + 2 < data.length ? ALPHABET[n & 63] : '=';
  }
  return out;
}

/** Standard base64 (padding optional) to bytes; null when it is not base64. */
export function base64Decode(text) {
  const clean = text.trim().replace(/=+$/, '');
  if (clean.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(clean)) return null;
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const c of clean) {
    value = (value << 6) | ALPHABET.indexOf(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

/** HMAC-SHA256 of `message` with `key` (strings or bytes), as bytes. */
export function hmacSha256(key, message) {
  return hmacBytes(bytes(key), bytes(message));
}

export function hmacSha256Hex(key, message) {
  return toHex(hmacSha256(key, message));
}

export function hmacSha256Base64(key, message) {
  return base64Encode(hmacSha256(key, message));
}

/** a === b, in time that depends only on their lengths. */
export function constantTimeEqual(a, b) {
  const x = bytes(a);
  const y = bytes(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** `given` is the hex HMAC-SHA256 of `body` with `secret`. */
export function verifyHmacHex(secret, body, given) {
  return constantTimeEqual(hmacSha256Hex(secret, body), (given ?? '').trim().toLowerCase());
}

/** `given` is the base64 HMAC-SHA256 of `body` with `secret`. */
export function verifyHmacBase64(secret, body, given) {
  return constantTimeEqual(hmacSha256Base64(secret, body), (given ?? '').trim());
}

/** Meta's `X-Hub-Signature-256: sha256=<hex HMAC of the body with the app secret>`.
 *  `appSecrets`: one secret or several (during a rotation), each checked in
 *  constant time. Throws SignatureError naming what is wrong. */
export function verifyHubSha256(appSecrets, body, headerValue) {
  const secrets = secretList(appSecrets);
  if (secrets.length === 0) throw new SignatureError('the app secret is not set');
  if (headerValue == null) throw new SignatureError('missing X-Hub-Signature-256');
  const value = headerValue.trim();
  const hex = value.startsWith('sha256=') ? value.slice('sha256='.length) : '';
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new SignatureError('X-Hub-Signature-256 must be sha256=<64 hex digits>');
  }
  let matched = false;
  for (const secret of secrets) matched = verifyHmacHex(secret, body, hex) || matched;
  if (!matched) throw new SignatureError('X-Hub-Signature-256 does not match the body');
}

/** Meta's subscription handshake: the `hub.challenge` to echo when `hub.mode`
 *  is `subscribe` and `hub.verify_token` matches, else null (answer 403). */
export function hubChallenge(query, verifyToken) {
  if (!verifyToken || queryParam(query, 'hub.mode') !== 'subscribe') return null;
  if (!constantTimeEqual(queryParam(query, 'hub.verify_token') ?? '', verifyToken)) return null;
  return queryParam(query, 'hub.challenge');
}

/** The key inside a `whsec_<base64>` secret (the prefix is optional). */
export function standardWebhookKey(secret) {
  const text = secret.trim().replace(/^whsec_/, '');
  const key = base64Decode(text);
  // An empty key would let anyone sign.
  if (key === null || key.length === 0) {
    throw new SignatureError('the signing secret must be whsec_ followed by base64');
  }
  return key;
}

/** Standard Webhooks: `v1,<base64 HMAC of "{id}.{timestamp}.{body}">`, several
 *  space-separated during key rotation; a timestamp over `tolerance` seconds from
 *  `now` is refused. `header(name)` returns a header's value or null. Throws
 *  SignatureError naming what is wrong. */
export function verifyStandardWebhook(header, body, secrets, now, tolerance = STANDARD_TOLERANCE_SECS) {
  const values = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const value = header(name);
    if (value == null) throw new SignatureError(`missing ${name} header`);
    values[name] = value.trim();
  }
  if (!/^[+-]?[0-9]+$/.test(values['webhook-timestamp'])) {
    throw new SignatureError('webhook-timestamp must be unix seconds');
  }
  const skew = Number(values['webhook-timestamp']) - now;
  if (!(Math.abs(skew) <= tolerance)) {
    throw new SignatureError(
      `webhook-timestamp is ${skew} s from now; at most ${tolerance} s is accepted`,
    );
  }
  const keys = secretList(secrets);
  if (!keys.length) throw new SignatureError('no signing secret is set');
  const prefix = bytes(`${values['webhook-id']}.${values['webhook-timestamp']}.`);
  const body_ = bytes(body);
  const signed = new Uint8Array(prefix.length + body_.length);
  signed.set(prefix);
  signed.set(body_, prefix.length);
  const given = values['webhook-signature']
    .split(/\s+/)
    .filter((s) => s.startsWith('v1,'))
    .map((s) => s.slice(3));
  let matched = false;
  for (const secret of keys) {
    const expected = base64Encode(hmacBytes(standardWebhookKey(secret), signed));
    for (const signature of given) matched = constantTimeEqual(expected, signature) || matched;
  }
  if (!matched) throw new SignatureError('no v1 signature in webhook-signature matches');
}
