#!/usr/bin/env node
// The native kernel addon at install (package.json "install") and the prebuilt binary (`npm run prebuild`).
//
// `node scripts/install.mjs` (npm runs it when it installs or rebuilds dyllm):
//   - an installed package uses the addon node-gyp-build finds — one compiled on this machine (build/Release), else
//     the prebuilt binary shipped for this platform (prebuilds/<platform>-<arch>/) — once a fresh Node has loaded it;
//   - otherwise, and always in a git checkout (its C++ may have changed) or with npm_config_build_from_source=true
//     (`npm rebuild dyllm --build-from-source`), it compiles the addon: with prebuildify in a checkout (which leaves
//     the binary `npm pack` ships in prebuilds/), else with node-gyp;
//   - when nothing loads it prints one notice line (the slow TypeScript backend will be used, and how to fix that)
//     and exits 0: dyllm works without the addon. The engine prints the same advice at every run
//     (src/kernels/native.ts, NATIVE_FIX).
// `node scripts/install.mjs --prebuild` (`npm run prebuild`): compile with prebuildify into
//   prebuilds/<platform>-<arch>/dyllm.napi.<libc>.node; exits 1 if that fails.
//
// The addon is a Node-API module (NAPI_VERSION in binding.gyp), so one binary serves every Node >= 20; its ISA tiers
// are picked at run time by CPUID, so one x64 binary serves every x64 CPU.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
/** prebuildify's flags: Node-API (one binary for every Node), stripped, tagged with the C library (glibc / musl). */
const PREBUILDIFY_ARGS = ['--napi', '--strip', '--tag-libc'];
/** Keep in step with NATIVE_FIX in src/kernels/native.ts. */
const FIX = 'install a C++ compiler, make and python3 and run `npm rebuild dyllm` (in a dyllm checkout: `npm rebuild`), or use a platform with prebuilt binaries (linux-x64 glibc)';
const platform = `${process.platform}-${process.arch}`;

const say = (line) => process.stderr.write(`dyllm: ${line}\n`);

/** The addon node-gyp-build would load (compiled first, then the prebuilt one for this platform), or null. */
function findAddon() {
  try {
    return require('node-gyp-build').path(root);
  } catch {
    return null;
  }
}

/** null when `file` loads in a fresh Node and lists its ISA tiers, else why not (one line). */
function loadError(file) {
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(file)}).tiers().join(','))`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.length > 0) return null;
  const lines = `${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /Error/.test(l)) ?? lines[0] ?? (r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`);
}

function prebuildifyBin() {
  try {
    return join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
  } catch {
    return null;
  }
}

/** Compile the addon; true when the compiler run succeeded. */
function compile(prebuildify) {
  let cmd;
  let args;
  if (prebuildify) {
    [cmd, args] = [process.execPath, [prebuildify, ...PREBUILDIFY_ARGS]];
  } else if (process.env.npm_config_node_gyp) {
    // npm's own node-gyp (npm sets this when it runs a package's scripts).
    [cmd, args] = [process.execPath, [process.env.npm_config_node_gyp, 'rebuild']];
  } else {
    [cmd, args] = ['node-gyp', ['rebuild']];
  }
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: cmd === 'node-gyp' && process.platform === 'win32' });
  if (r.error) say(`could not run ${cmd}: ${r.error.message}`);
  return r.status === 0;
}

const prebuildOnly = process.argv.includes('--prebuild');
const checkout = existsSync(join(root, '.git'));
const fromSource = prebuildOnly || checkout || process.env.npm_config_build_from_source === 'true';

if (!fromSource) {
  const file = findAddon();
  if (file !== null) {
    const err = loadError(file);
    if (err === null) {
      say(`native kernels: ${relative(root, file)}`);
      process.exit(0);
    }
    say(`${relative(root, file)} does not load on this machine (${err}); compiling the addon`);
  }
}

const prebuildify = checkout || prebuildOnly ? prebuildifyBin() : null;
if (prebuildOnly && prebuildify === null) {
  say('error: npm run prebuild needs the prebuildify devDependency; run `npm ci` first');
  process.exit(1);
}
const compiled = compile(prebuildify);
const file = compiled ? findAddon() : null;
if (compiled && prebuildify !== null) {
  // Name the sources the prebuilt binary comes from (`npm pack` checks it: scripts/prebuild-check.mjs).
  const { DIGEST_FILE, nativeSourcesDigest } = await import('./prebuild-check.mjs');
  writeFileSync(join(root, 'prebuilds', platform, DIGEST_FILE), nativeSourcesDigest(root) + '\n');
}
const err = file === null ? 'compiling it failed' : loadError(file);
if (err === null) {
  say(`native kernels: ${relative(root, file)}`);
  process.exit(0);
}
if (prebuildOnly) {
  say(`error: npm run prebuild: ${err}`);
  process.exit(1);
}
say(`notice: no native kernel addon for ${platform} (no prebuilt binary loads here, and ${err}); dyllm will run on the TypeScript reference backend, 100-200x slower. To fix: ${FIX}`);
process.exit(0);
