#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with node's built-in test runner (Node 20 has no glob support).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
if (!files.length) { console.error('run-tests: no test files found under dist/'); process.exit(1); }
const r = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
