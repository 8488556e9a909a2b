// Reading requests: headers and query parameters.

/** A header's value (names matched case-insensitively), or null. `req.headers`
 *  is the host's list of [name, value]. */
export function header(req, name) {
  const wanted = name.toLowerCase();
  for (const [key, value] of req.headers) {
    if (key.toLowerCase() === wanted) return value;
  }
  return null;
}

/** Percent-decode; a malformed escape is kept as written, the rest decoded. */
function decode(part) {
  const text = part.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(text);
  } catch {
    return text.replace(/(%[0-9a-fA-F]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

/** A query parameter, percent-decoded, or null. */
export function queryParam(query, name) {
  for (const pair of (query ?? '').split('&')) {
    if (!pair) continue;
    const at = pair.indexOf('=');
    const key = decode(at < 0 ? pair : pair.slice(0, at));
    if (key === name) return at < 0 ? '' : decode(pair.slice(at + 1));
  }
  return null;
}
