// Standard Webhooks adapter in JavaScript: a thin component wrapper over logic.js.
//
// Mount: /api/integrations/<mount>/webhook. Secret: `signing_secret`
// (`whsec_...`, comma-separated for rotation). Tenant: lead_sources kind
// `standard`, key = `data.source_key`.

import * as logic from './logic.js';
import { FieldError, SignatureError, header } from '../sdk-js/src/index.js';
import {
  accept, defaults, fromFieldError, ignore, item, lead, reject, webhookRoute,
} from '../sdk-js/src/adapter.js';
import { secretList } from '../sdk-js/src/host.js';

const decoder = new TextDecoder();

export const plugin = {
  ...defaults,

  manifest() {
    const warnings = [];
    if (secretList('signing_secret').length === 0) {
      warnings.push('the signing secret is not set: every POST will be refused with 401');
    }
    return {
      name: 'standard-webhooks-js', version: '0.1.0', routes: [webhookRoute()], outbox: [], warnings,
    };
  },

  verify(req) {
    try {
      logic.verify((name) => header(req, name), req.body, secretList('signing_secret'),
        Math.floor(Date.now() / 1000));
    } catch (e) {
      if (e instanceof SignatureError) return reject(e.message);
      throw e;
    }
    return accept();
  },

  parse(req) {
    let parsed;
    try {
      parsed = logic.parse(req.body, header(req, 'webhook-id') ?? '');
    } catch (e) {
      throw fromFieldError(e);
    }
    return [item(parsed.dedupKey, parsed.kind, parsed.payload, logic.TENANT_KIND, parsed.tenantKey)];
  },

  mapToDomain(it) {
    if (it.kind === 'ignored') return [ignore(decoder.decode(it.payload))];
    let out;
    try {
      out = logic.mapLead(it.payload);
    } catch (e) {
      if (e instanceof FieldError) throw fromFieldError(e);
      throw e;
    }
    return [lead(logic.LEAD_SOURCE, out.externalId, {
      fullName: out.fullName, email: out.email, phone: out.phone, fields: out.fields,
    })];
  },
};
