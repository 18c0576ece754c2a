// node:assert for the browser bundle (scripts/build-web.mjs): the samplers' invariant checks.
'use strict';
function assert(cond, message) { if (!cond) throw new Error(message === undefined ? 'assertion failed' : String(message)); }
assert.ok = assert;
assert.equal = (a, b, m) => assert(a == b, m ?? `${a} == ${b}`);
assert.strictEqual = (a, b, m) => assert(a === b, m ?? `${a} === ${b}`);
module.exports = assert;
