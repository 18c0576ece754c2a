#!/usr/bin/env node
// `npm pack` / `npm publish` (package.json "prepack") refuse to pack a package without the linux-x64 prebuilt addon,
// or with one compiled from other C++ sources than these: a package without it compiles at install, and falls back
// to the 100-200x slower TypeScript backend where no compiler is installed.
//
// scripts/install.mjs writes prebuilds/<platform>-<arch>/native-sources.sha256 (nativeSourcesDigest) next to the
// binary it compiled with prebuildify; this check compares it with the sources now. DYLLM_PACK_WITHOUT_PREBUILD=1
// skips the check (a package that compiles at install).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The platforms whose prebuilt addon every package ships. */
export const SHIPPED_PREBUILDS = ['linux-x64'];
/** The file next to a prebuilt addon that names the sources it was compiled from. */
export const DIGEST_FILE = 'native-sources.sha256';

/** sha256 over binding.gyp and every file of src/kernels/native (names and contents, in name order). */
export function nativeSourcesDigest(root) {
  const dir = join('src', 'kernels', 'native');
  const files = ['binding.gyp', ...readdirSync(join(root, dir)).sort().map((f) => join(dir, f))];
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${f.split('\\').join('/')}\0`);
    h.update(readFileSync(join(root, f)));
    h.update('\0');
  }
  return h.digest('hex');
}

/** Why the package's prebuilt addons are not ready to ship, or null when they are. */
export function prebuildProblem(root) {
  const want = nativeSourcesDigest(root);
  for (const tuple of SHIPPED_PREBUILDS) {
    const dir = join(root, 'prebuilds', tuple);
    const binaries = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
    if (binaries.length === 0) return `no prebuilt addon in prebuilds/${tuple}/`;
    const digestFile = join(dir, DIGEST_FILE);
    const have = existsSync(digestFile) ? readFileSync(digestFile, 'utf8').trim() : null;
    if (have === null) return `prebuilds/${tuple}/${DIGEST_FILE} is missing, so prebuilds/${tuple}/${binaries[0]} may come from other sources`;
    if (have !== want) return `prebuilds/${tuple}/${binaries[0]} was compiled from other sources than binding.gyp and src/kernels/native/ now`;
  }
  return null;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  const problem = process.env.DYLLM_PACK_WITHOUT_PREBUILD === '1' ? null : prebuildProblem(root);
  if (problem !== null) {
    process.stderr.write(`dyllm: error: ${problem}; run \`npm run prebuild\` before packing (or set DYLLM_PACK_WITHOUT_PREBUILD=1 to ship a package that compiles at install)\n`);
    process.exit(1);
  }
}
