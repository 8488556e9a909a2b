// Native unit tests of the adapter's logic: `node --test` (no host needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as logic from './logic.js';
import { FieldError, SignatureError } from '../sdk-js/src/index.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const BODY = new TextEncoder().encode(
  '{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{"id":"L-1",'
  + '"source_key":"acme-site","full_name":"Ana Silva","email":"ana@example.com",'
  + '"phone":"+5511900000000","fields":{"city":"Recife"}}}',
);

function sign(id, ts, body) {
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`;
}
const headers = (id, ts, sig) => (name) => ({
  'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sig,
})[name] ?? null;

test('the spec example verifies', () => {
  const h = (name) => ({
    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  })[name];
  logic.verify(h, new TextEncoder().encode('{"test": 2432232314}'), [SECRET], 1614265330);
});

test('a rotated secret and several signatures verify', () => {
  const now = 1_800_000_000;
  const sig = `v1,bm90IGl0 ${sign('msg_1', now, BODY)}`;
  logic.verify(headers('msg_1', now, sig), BODY, ['whsec_aGkh', SECRET], now + 10);
});

test('tampering and stale timestamps are refused', () => {
  const now = 1_800_000_000;
  const sig = sign('msg_1', now, BODY);
  const cases = [
    [headers('msg_1', now, sig), new TextEncoder().encode('{}'), [SECRET], now, /no v1 signature/],
    [headers('msg_2', now, sig), BODY, [SECRET], now, /no v1 signature/],
    [headers('msg_1', now, sig), BODY, [SECRET], now + 301, /-301 s from now/],
    [headers('msg_1', now, sig), BODY, [], now, /no signing secret/],
    [() => null, BODY, [SECRET], now, /missing webhook-id/],
    [headers('msg_1', 'soon', sig), BODY, [SECRET], now, /unix seconds/],
  ];
  for (const [h, body, secrets, at, expected] of cases) {
    assert.throws(() => logic.verify(h, body, secrets, at),
      (e) => e instanceof SignatureError && expected.test(e.message));
  }
});

test('lead.created maps to a lead', () => {
  const parsed = logic.parse(BODY, 'msg_1');
  assert.deepEqual([parsed.dedupKey, parsed.tenantKey, parsed.kind], ['lead:L-1', 'acme-site', 'lead']);
  const lead = logic.mapLead(new TextEncoder().encode(JSON.stringify(parsed.payload)));
  assert.equal(lead.externalId, 'L-1');
  assert.equal(lead.fullName, 'Ana Silva');
  assert.deepEqual(lead.fields, { city: 'Recife' });
});

test('other types are ignored and bad shapes named', () => {
  const other = logic.parse(new TextEncoder().encode('{"type":"lead.deleted","data":{"id":"1"}}'), 'msg_9');
  assert.deepEqual([other.kind, other.dedupKey], ['ignored', 'msg:msg_9']);
  assert.throws(() => logic.parse(new TextEncoder().encode('{"type":"lead.created","data":{"id":"1"}}'), 'm'),
    (e) => e instanceof FieldError && e.message === 'data.source_key is missing');
  assert.throws(() => logic.parse(new TextEncoder().encode('{"type":'), 'm'),
    (e) => e instanceof FieldError && e.path === '$');
  assert.throws(() => logic.mapLead(new TextEncoder().encode('{"id":"1","fields":[1]}')),
    (e) => e instanceof FieldError && e.path === 'data.fields');
});
