// What the host offers: logging, the plugin's config and secrets, the directory,
// the cache and outbound HTTP. Inside a component only (these call the host).

import * as hostApi from 'portico:adapter/host@0.3.0';
import * as directory from 'portico:adapter/directory@0.3.0';
import * as cache from 'portico:adapter/cache@0.3.0';
import * as outbound from 'portico:adapter/outbound@0.3.0';

/** Logged by the host with the plugin's name and the webhook's correlation id.
 *  `level`: 'trace' | 'debug' | 'info' | 'warn' | 'error'. */
export function log(level, message) {
  hostApi.log(level, String(message));
}
export const debug = (message) => log('debug', message);
export const info = (message) => log('info', message);
export const warn = (message) => log('warn', message);
export const error = (message) => log('error', message);

/** A value of the plugin's [config] table in plugins.toml, or null. */
export function config(key) {
  return hostApi.config(key) ?? null;
}

/** A true/false setting; anything unreadable is `fallback`, with a warning. */
export function configBool(key, fallback) {
  const raw = config(key);
  if (raw === null) return fallback;
  const text = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  warn(`config ${key} = ${JSON.stringify(raw)} is not true or false; using ${fallback}`);
  return fallback;
}

/** A value of the plugin's [secrets] table, or null. Never log it. */
export function secret(key) {
  const value = hostApi.secret(key);
  return value && value.trim() ? value : null;
}

/** A comma-separated secret as a list (several during a rotation). */
export function secretList(key) {
  return (hostApi.secret(key) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The provider key a tenant mapped for `kind` (tenantId: a number or BigInt). */
export function sourceKey(tenantId, kind) {
  return directory.sourceKey(BigInt(tenantId), kind) ?? null;
}
export function sourceSecret(kind, key, name) {
  return directory.sourceSecret(kind, key, name) ?? null;
}
export function sourceSetting(kind, key, name) {
  return directory.sourceSetting(kind, key, name) ?? null;
}

export function cacheGet(key) {
  return cache.get(key) ?? null;
}
export function cachePut(key, value, ttlMs) {
  cache.put(key, value, ttlMs);
}

/** A call that got no answer: `kind` is not_allowed, timeout or failed (as in
 *  the Python library), `detail` the host's words. */
export class OutboundError extends Error {
  constructor(kind, detail) {
    const name = String(kind).replace(/-/g, '_');
    super(`${name}: ${detail}`);
    this.name = 'OutboundError';
    this.kind = name;
    this.detail = detail;
  }
}

/** Send a request through the host (only to the plugin's allowed_hosts); any
 *  status is an answer: { status, headers, body (Uint8Array), text(), json() }.
 *  Throws OutboundError when none came. */
export function send(method, url, { headers = [], body = new Uint8Array(), timeoutMs } = {}) {
  let res;
  try {
    res = outbound.send({
      method,
      url,
      headers,
      body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
      timeoutMs,
    });
  } catch (e) {
    const payload = e?.payload ?? e;
    throw new OutboundError(payload?.tag ?? 'failed', payload?.val ?? String(e));
  }
  return {
    status: res.status,
    headers: res.headers,
    body: res.body,
    text: () => new TextDecoder().decode(res.body),
    json: () => JSON.parse(new TextDecoder().decode(res.body)),
  };
}
