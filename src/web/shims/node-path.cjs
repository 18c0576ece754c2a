// node:path for the browser bundle (scripts/build-web.mjs): the POSIX join/basename/dirname the loaders use to name
// files in messages (a byte-source model's "folder" is a name, e.g. "dyllm-demo").
'use strict';
function normalize(p) {
  const abs = p.startsWith('/');
  const out = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && out.length && out[out.length - 1] !== '..') out.pop();
    else if (part !== '..' || !abs) out.push(part);
  }
  const s = (abs ? '/' : '') + out.join('/');
  return s === '' ? '.' : s;
}
const join = (...parts) => normalize(parts.filter((x) => x !== '').join('/'));
const basename = (p) => p.replace(/\/+$/, '').split('/').pop() ?? '';
const dirname = (p) => { const s = p.replace(/\/+$/, ''); const i = s.lastIndexOf('/'); return i < 0 ? '.' : i === 0 ? '/' : s.slice(0, i); };
const resolve = (...parts) => join(...parts);
module.exports = { join, basename, dirname, resolve, normalize, sep: '/', isAbsolute: (p) => p.startsWith('/'), relative: (a, b) => b };
