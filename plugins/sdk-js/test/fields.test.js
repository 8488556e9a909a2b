// The guest library's JSON helpers name the field that is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FieldError, at, objAt, optStrAt, parseJson, strAt } from '../src/index.js';

const DOC = parseJson(new TextEncoder().encode(
  '{"data":{"id":123456789012,"name":" ","tags":["a","b"],"n":null,"o":[]}}',
));

test('paths reach objects and arrays', () => {
  assert.equal(strAt(DOC, 'data.id'), '123456789012');
  assert.equal(at(DOC, 'data.tags.1'), 'b');
  assert.equal(optStrAt(DOC, 'data.name'), null);
  assert.equal(optStrAt(DOC, 'data.missing'), null);
  assert.deepEqual(objAt(DOC, 'data.none'), {});
});

test('errors name the path and the problem', () => {
  const cases = [
    [() => strAt(DOC, 'data.email'), 'data.email', 'is missing'],
    [() => strAt(DOC, 'data.n'), 'data.n', 'is missing'],
    [() => strAt(DOC, 'data.tags'), 'data.tags', 'must be a string, not an array'],
    [() => at(DOC, 'data.tags.9'), 'data.tags.9', 'is missing'],
    [() => at(DOC, 'data.toString'), 'data.toString', 'is missing'],
    [() => objAt(DOC, 'data.o'), 'data.o', 'must be an object, not an array'],
    [() => parseJson('{'), '$', 'is not valid JSON'],
    [() => parseJson(new Uint8Array([0xff])), '$', 'is not UTF-8'],
  ];
  for (const [call, path, problem] of cases) {
    assert.throws(call, (e) => e instanceof FieldError && e.path === path && e.problem.startsWith(problem),
      `${path} ${problem}`);
  }
});

test('ids past 2^53 are refused rather than rounded', () => {
  const doc = parseJson('{"id":12345678901234567890,"ok":9007199254740991}');
  assert.equal(strAt(doc, 'ok'), '9007199254740991');
  assert.throws(() => strAt(doc, 'id'), (e) => e instanceof FieldError && /send it as a string/.test(e.problem));
});
