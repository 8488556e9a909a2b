// Standard Webhooks (standardwebhooks.com) logic, free of host calls: the
// JavaScript port of plugins/standard-webhooks (same routes, keys and answers).
//
// Signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with
// the key inside `whsec_<base64>`, sent as `webhook-signature: v1,<base64>`.
// `lead.created` events become leads; other types are recorded as ignored.

import {
  FieldError, objAt, optStrAt, parseJson, strAt, verifyStandardWebhook,
} from '../sdk-js/src/index.js';

export const LEAD_SOURCE = 'Standard';
export const TENANT_KIND = 'standard';

/** Throws SignatureError naming what is wrong. */
export function verify(header, body, secrets, now) {
  verifyStandardWebhook(header, body, secrets, now);
}

/** `lead.created` is a lead item (its `data`); other types are ignored items. */
export function parse(body, webhookId) {
  const event = parseJson(body);
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw new FieldError('$', 'must be an object');
  }
  const kind = strAt(event, 'type');
  if (kind !== 'lead.created') {
    return {
      dedupKey: `msg:${webhookId}`,
      tenantKey: optStrAt(event, 'data.source_key'),
      kind: 'ignored',
      payload: `event type ${JSON.stringify(kind)} is not handled (only lead.created)`,
    };
  }
  const id = strAt(event, 'data.id');
  const sourceKey = strAt(event, 'data.source_key');
  return { dedupKey: `lead:${id}`, tenantKey: sourceKey, kind: 'lead', payload: event.data };
}

/** The lead a lead item's payload (the event's `data`) makes. */
export function mapLead(payload) {
  const data = parseJson(payload);
  let fields;
  try {
    fields = objAt(data, 'fields');
  } catch {
    throw new FieldError('data.fields', 'must be an object');
  }
  return {
    externalId: strAt(data, 'id'),
    fullName: optStrAt(data, 'full_name'),
    email: optStrAt(data, 'email'),
    phone: optStrAt(data, 'phone'),
    fields,
  };
}
