import { test } from 'node:test';
import assert from 'node:assert/strict';
import { header, queryParam } from '../src/index.js';

test('query parameters are decoded, a bad escape kept as written', () => {
  assert.equal(queryParam('a=x%2Fy+b&c', 'a'), 'x/y b');
  assert.equal(queryParam('a=x%2Fy%zz+b', 'a'), 'x/y%zz b');
  assert.equal(queryParam('a=1&c', 'c'), '');
  assert.equal(queryParam('', 'a'), null);
});

test('headers are found whatever their case', () => {
  const req = { headers: [['Webhook-Id', 'm1']] };
  assert.equal(header(req, 'webhook-id'), 'm1');
  assert.equal(header(req, 'other'), null);
});
