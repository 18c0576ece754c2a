// Stands in for Node built-ins (node:fs, node:module, …) in the browser bundle (scripts/build-web.mjs). The browser
// path (models loaded from bytes, load/bytes.ts) never calls them; a call is a bug and says so in one line. Every
// name resolves (through the prototype, which esbuild's ESM interop keeps) to a function that throws when called.
'use strict';
const unavailable = (name) => function () { throw new Error(`${name} is not available in the browser (dyllm's /local page loads models from bytes)`); };
module.exports = Object.create(new Proxy({}, { get: (_, key) => (key === '__esModule' || typeof key === 'symbol' ? undefined : unavailable(key)) }));
