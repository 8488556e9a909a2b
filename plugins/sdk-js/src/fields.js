// JSON helpers whose errors name the field path, e.g. `data.source_key is missing`.

/** A problem with one field: `path` is dotted (`data.fields.city`), `$` for the document. */
export class FieldError extends Error {
  constructor(path, problem) {
    super(`${path} ${problem}`);
    this.name = 'FieldError';
    this.path = path;
    this.problem = problem;
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Parse bytes (Uint8Array) or text as JSON; the error says what is wrong. */
export function parseJson(raw) {
  let text = raw;
  if (typeof raw !== 'string') {
    try {
      text = decoder.decode(raw);
    } catch {
      throw new FieldError('$', 'is not UTF-8');
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FieldError('$', `is not valid JSON: ${e.message}`);
  }
}

function kind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'boolean': return 'a boolean';
    case 'number': return 'a number';
    case 'string': return 'a string';
    default: return 'an object';
  }
}

/** The value at a dotted path (`a.0.b`: numbers index arrays); null counts as missing. */
export function at(value, path) {
  let current = value;
  for (const part of path.split('.')) {
    if (Array.isArray(current)) {
      current = /^\d+$/.test(part) ? current[Number(part)] : undefined;
    } else if (current !== null && typeof current === 'object') {
      current = Object.hasOwn(current, part) ? current[part] : undefined;
    } else {
      current = undefined;
    }
    if (current === undefined || current === null) throw new FieldError(path, 'is missing');
  }
  return current;
}

/** A string at `path`; numbers are accepted and written out (ids often come as either). */
export function strAt(value, path) {
  const found = at(value, path);
  if (typeof found === 'string') return found;
  if (typeof found === 'number') {
    // JavaScript numbers are doubles: an id past 2^53 has already lost digits.
    if (Number.isInteger(found) && !Number.isSafeInteger(found)) {
      throw new FieldError(path, 'is a number too large to read exactly; send it as a string');
    }
    return String(found);
  }
  throw new FieldError(path, `must be a string, not ${kind(found)}`);
}

/** Like strAt, but a missing field or a blank string is null. */
export function optStrAt(value, path) {
  let found;
  try {
    found = strAt(value, path);
  } catch (e) {
    if (e instanceof FieldError && e.problem === 'is missing') return null;
    throw e;
  }
  return found.trim() ? found : null;
}

/** An object at `path`; missing or null is {}. */
export function objAt(value, path) {
  let found;
  try {
    found = at(value, path);
  } catch {
    return {};
  }
  if (typeof found !== 'object' || Array.isArray(found)) {
    throw new FieldError(path, `must be an object, not ${kind(found)}`);
  }
  return found;
}
