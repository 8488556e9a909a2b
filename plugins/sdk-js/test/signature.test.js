// The guest library's signature helpers: `node --test` in plugins/sdk-js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import {
  SignatureError, base64Decode, base64Encode, constantTimeEqual, hmacSha256Base64, hmacSha256Hex,
  hubChallenge, sha256, standardWebhookKey, toHex, verifyHmacBase64, verifyHmacHex,
  verifyHubSha256, verifyStandardWebhook,
} from '../src/index.js';

test('SHA-256 matches FIPS 180-4 and Node for every length across block edges', () => {
  assert.equal(toHex(sha256(new TextEncoder().encode('abc'))),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  for (let n = 0; n < 300; n++) {
    const data = randomBytes(n);
    assert.equal(toHex(sha256(data)), createHash('sha256').update(data).digest('hex'), `length ${n}`);
  }
});

test('HMAC-SHA256 matches RFC 4231 and Node, keys longer than a block included', () => {
  assert.equal(hmacSha256Hex('Jefe', 'what do ya want for nothing?'),
    '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  for (const keyLength of [0, 1, 64, 65, 131]) {
    const key = randomBytes(keyLength);
    const message = randomBytes(100);
    assert.equal(hmacSha256Base64(key, message), createHmac('sha256', key).update(message).digest('base64'));
  }
  assert.ok(verifyHmacHex('Jefe', 'what do ya want for nothing?',
    '5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843'));
  assert.ok(verifyHmacBase64('Jefe', 'what do ya want for nothing?',
    'W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM='));
  assert.ok(!verifyHmacHex('Jefe', 'what do ya want', '5bdc'));
  assert.ok(constantTimeEqual('abc', new TextEncoder().encode('abc')));
  assert.ok(!constantTimeEqual('abc', 'abcd'));
});

test('base64 round-trips and refuses what is not base64', () => {
  for (let n = 0; n < 20; n++) {
    const data = randomBytes(n);
    assert.equal(base64Encode(data), Buffer.from(data).toString('base64'));
    assert.deepEqual(Buffer.from(base64Decode(base64Encode(data))), Buffer.from(data));
  }
  assert.equal(base64Decode('***'), null);
  assert.throws(() => standardWebhookKey('whsec_***'), /whsec_ followed by base64/);
});

test('Meta hub signature and handshake', () => {
  const body = '{"object":"page"}';
  verifyHubSha256('s3cret', body, `sha256=${hmacSha256Hex('s3cret', body)}`);
  assert.throws(() => verifyHubSha256('s3cret', body, null), /missing X-Hub-Signature-256/);
  assert.throws(() => verifyHubSha256('s3cret', body, 'md5=00'), /must be sha256=<64 hex digits>/);
  assert.throws(() => verifyHubSha256('s3cret', body, `sha256=${'0'.repeat(64)}`),
    (e) => e instanceof SignatureError && /does not match/.test(e.message));
  const query = 'hub.mode=subscribe&hub.verify_token=tok%20en&hub.challenge=1158201444';
  assert.equal(hubChallenge(query, 'tok en'), '1158201444');
  assert.equal(hubChallenge(query, 'other'), null);
  assert.equal(hubChallenge(query, null), null);
});

test('Standard Webhooks: the spec example, and huge timestamps refused', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const h = (name) => ({
    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  })[name];
  verifyStandardWebhook(h, '{"test": 2432232314}', [secret], 1614265330);
  assert.throws(() => verifyStandardWebhook(h, '{"test": 2432232315}', [secret], 1614265330), SignatureError);
  const huge = (name) => ({ 'webhook-id': 'm', 'webhook-timestamp': '1'.repeat(400), 'webhook-signature': 'v1,AA' })[name];
  assert.throws(() => verifyStandardWebhook(huge, '{}', [secret], 1614265330), /at most 300 s/);
});

test('keys are strings or bytes, never zeros by accident; Meta secrets rotate', () => {
  assert.throws(() => hmacSha256Hex(['s1', 's2'], 'x'), TypeError);
  assert.throws(() => hmacSha256Hex({}, 'x'), TypeError);
  assert.throws(() => sha256('abc'), TypeError);
  const body = '{"object":"page"}';
  const zeros = `sha256=${hmacSha256Hex(new Uint8Array(2), body)}`;
  assert.throws(() => verifyHubSha256(['s1', 's2'], body, zeros), /does not match/);
  verifyHubSha256(['old', 's3cret'], body, `sha256=${hmacSha256Hex('s3cret', body)}`);
  assert.throws(() => verifyHubSha256([], body, zeros), /app secret is not set/);
  assert.throws(() => verifyHubSha256('s3cret', body, 'sha256=abc'), /64 hex digits/);
});

test('Standard Webhooks: unpadded secrets, signed timestamps, empty keys refused', () => {
  const key = standardWebhookKey('whsec_aGk');
  assert.equal(new TextDecoder().decode(key), 'hi');
  assert.throws(() => standardWebhookKey('whsec_'), /whsec_ followed by base64/);
  const body = '{}';
  const sig = `v1,${hmacSha256Base64(key, `m.+1614265330.${body}`)}`;
  const h = (name) => ({ 'webhook-id': 'm', 'webhook-timestamp': '+1614265330', 'webhook-signature': sig })[name];
  verifyStandardWebhook(h, body, ['whsec_aGk'], 1614265330);
});
