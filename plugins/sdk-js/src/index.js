// Portico's guest library for adapters written in JavaScript: the pure helpers
// (no host calls: unit-test them with `node --test`). `./host.js` and
// `./adapter.js` call the host and work inside a component.
export * from './signature.js';
export * from './fields.js';
export * from './http.js';
export { sha256 } from './sha256.js';
