// A test adapter: GET /probe?to=allowed|denied exercises the JavaScript guest
// library's host calls (config, log, cache, outbound) inside a component.
import { queryParam } from '../../../../plugins/sdk-js/src/index.js';
import { defaults, jsonResponse, accept } from '../../../../plugins/sdk-js/src/adapter.js';
import * as host from '../../../../plugins/sdk-js/src/host.js';

export const plugin = {
  ...defaults,
  manifest() {
    return {
      name: 'probe-js',
      version: '0.1.0',
      routes: [{ method: 'GET', path: 'probe', kind: 'custom', auth: 'none' }],
      outbox: [],
      warnings: [],
    };
  },
  verify() {
    return accept();
  },
  parse() {
    return [];
  },
  mapToDomain() {
    return [];
  },
  handle(req) {
    const hits = Number(host.cacheGet('hits') ?? '0') + 1;
    host.cachePut('hits', String(hits), 60000);
    host.info(`probe call ${hits}`);
    const url = queryParam(req.query, 'to') === 'allowed' ? host.config('target_url') : 'http://203.0.113.9/denied';
    let res;
    try {
      res = host.send('POST', url, {
        headers: [['content-type', 'application/json'], ['x-probe', 'js']],
        body: JSON.stringify({ hello: 'from javascript' }),
        timeoutMs: 5000,
      });
    } catch (e) {
      if (e instanceof host.OutboundError) {
        return jsonResponse(502, { error: e.kind, message: e.detail, hits });
      }
      throw e;
    }
    return jsonResponse(200, {
      status: res.status,
      answer: res.json(),
      content_type: res.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? null,
      hits,
      secret_set: host.secret('token') !== null,
    });
  },
};
