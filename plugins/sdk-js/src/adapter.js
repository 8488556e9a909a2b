// The shapes the host expects from an adapter's exports, and defaults for what
// most adapters do not use. Pure: it imports nothing from the host.
//
// The WIT contract in JavaScript (componentize-js): records are objects with
// camelCase fields, variants are { tag, val }, enums are their kebab-case names,
// option<T> is the value or undefined, list<u8> is a Uint8Array, s64 is a
// BigInt, and an export returning result<T, E> returns T or throws
// { payload: E } (use `adapterError` below).

import { FieldError } from './fields.js';

const encoder = new TextEncoder();

export const accept = () => ({ tag: 'accept' });
/** Refuse a request (401); the reason is shown to the caller: no secrets in it. */
export const reject = (reason) => ({ tag: 'reject', val: String(reason) });

/** A provider delivery route, open to anyone (the provider proves itself in verify). */
export function webhookRoute(path = 'webhook', method = 'POST') {
  return { method, path, kind: 'webhook', auth: 'none' };
}

/** An error to `throw` from parse or mapToDomain: what is wrong and how to fix it. */
export function adapterError(code, message, { retryable = false, fields = [] } = {}) {
  return { payload: { code, message, retryable, fields } };
}

/** A FieldError as an adapter error naming the field. */
export function fromFieldError(e, code = 'invalid_payload') {
  if (!(e instanceof FieldError)) throw e;
  return adapterError(code, e.message, { fields: [[e.path, e.problem]] });
}

/** An item; `payload` (bytes, a string or a JSON-able value) comes back to mapToDomain. */
export function item(dedupKey, kind, payload, tenantKind, tenantKey) {
  // The host's bytes (a request body) are typed arrays, though not always of
  // this realm's Uint8Array.
  let bytes;
  if (ArrayBuffer.isView(payload)) {
    bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  } else {
    bytes = encoder.encode(typeof payload === 'string' ? payload : JSON.stringify(payload));
  }
  const tenant = tenantKind && tenantKey ? { kind: tenantKind, key: tenantKey } : undefined;
  return { dedupKey, tenant, kind, payload: bytes };
}

/** A create-lead operation; `fields` (an object) is every other field. */
export function lead(source, externalId, {
  formId, adId, campaignId, fullName, email, phone, fields = {},
} = {}) {
  return {
    tag: 'create-lead',
    val: {
      source,
      externalId,
      formId: formId ?? undefined,
      adId: adId ?? undefined,
      campaignId: campaignId ?? undefined,
      fullName: fullName ?? undefined,
      email: email ?? undefined,
      phone: phone ?? undefined,
      fieldsJson: canonicalJson(fields),
    },
  };
}

/** Nothing to do for this item; the reason is recorded on its event. */
export const ignore = (reason) => ({ tag: 'ignore', val: String(reason) });

export function textResponse(status, text) {
  return {
    status,
    headers: [['content-type', 'text/plain; charset=utf-8']],
    body: encoder.encode(text),
  };
}

/** JSON with object keys sorted, as the Rust adapters write it (serde_json):
 *  the same fields make the same `fields_json` whatever the language. */
export function canonicalJson(value) {
  const sorted = (v) => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sorted(value));
}

// s64 ids arrive as BigInt, which JSON.stringify refuses.
const json = (value) => JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? Number(v) : v));

export function jsonResponse(status, value) {
  return { status, headers: [['content-type', 'application/json']], body: encoder.encode(json(value)) };
}

function recordJson(r) {
  const out = { kind: r.kind, id: r.id, status: r.status };
  if (r.externalId != null) out.external_id = r.externalId;
  if (r.error != null) out.error = r.error;
  return out;
}

/** The default intake answer, as the Rust SDK's: 200 with {id, status} for one
 *  record, {records: [...]} for several. */
export function respondRecords(records) {
  if (records.length === 1) return jsonResponse(200, { id: records[0].id, status: records[0].status });
  return jsonResponse(200, { records: records.map(recordJson) });
}

/** Defaults for an adapter without custom routes or an outbox: spread them into
 *  the exported `plugin` object and define manifest, verify, parse, mapToDomain. */
export const defaults = {
  handle(_req) {
    return undefined;
  },
  deliver(kind, _rows) {
    throw {
      payload: {
        tag: 'stop',
        val: `this adapter declares no outbox kind ${JSON.stringify(kind)}; check the plugin's manifest and version`,
      },
    };
  },
  respond(_req, records) {
    return respondRecords(records);
  },
};
