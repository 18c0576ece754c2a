#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with node's built-in test runner (Node 20 has no glob support).
// First prints one line saying which kernel backends are under test (test/helpers/native.ts); with
// DYLLM_REQUIRE_NATIVE=1 a missing native addon stops the run here, with the reason, before any test.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filter = process.argv.slice(2);
let files = [...walk('dist/src', []), ...walk('dist/test', [])].sort();
if (filter.length) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (!files.length) { console.error(`run-tests: no compiled test file under dist/${filter.length ? ` matches ${filter.join(' or ')}` : ''}`); process.exit(1); }

const { nativeRequired, nativeStatus, nativeSummary } = await import(pathToFileURL(join('dist', 'test', 'helpers', 'native.js')).href);
console.log(nativeSummary());
if (nativeRequired && nativeStatus().reason !== null) {
  console.error('run-tests: error: DYLLM_REQUIRE_NATIVE=1 but the native addon is unavailable (see the line above); ' +
    'install a C++ toolchain (g++, make, python3) and run `npm rebuild`, or unset DYLLM_REQUIRE_NATIVE to run without it');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
