/**
 * The package as a user gets it: `npm pack` this checkout, install the tarball offline into an empty project, then
 * run the README's library example (the ```ts block of its "Library" section, type-checked against the installed
 * package's .d.ts and executed) and `npx dyllm generate` there, both on the native kernels. Then the same install
 * without a compiler (failing g++, cc, make and node-gyp first in PATH): the prebuilt addon is used; and without the
 * prebuilt addon either: one notice line at install, one warning line with the fix at run, the reference backend.
 *
 * The install is `npm install --offline` from npm's cache (filled by `npm ci` in this checkout). The project gets a
 * lockfile with the versions of this checkout's package-lock.json: npm resolves a lockfile-less install from full
 * registry documents, which `npm ci` does not fetch, so an offline install needs the versions pinned. A dependency
 * missing from the cache fails the test with its name.
 *
 * Slow by nature (pack, install, three Node processes, a type-check): about 40 s on a loaded 2-core machine.
 *
 * A second test runs the prebuilt addon under qemu-user on emulated CPUs without AVX-512 and without AVX
 * (scripts/check-prebuild-cpus.mjs, about 20 s); it is skipped, with the reason, where qemu-x86_64 is missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NATIVE_FIX } from '../../src/kernels/native.js';
import { nativeStatus, needsNative } from '../helpers/native.js';
import { repoRoot } from '../helpers/paths.js';

const QUESTION = 'Tom has 12 apples. He buys 7 more. How many apples does Tom have now?';
const ANSWER = '12+7=19. #### 19';
const PREBUILD = 'prebuilds/linux-x64/dyllm.glibc.node';

/** The files a package may hold: what runs (and the notices and docs it points to). */
const SHIPPED = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^THIRD_PARTY_NOTICES\.md$/, /^docs\/[\w-]+\.md$/,
  /^bin\/dyllm\.js$/, /^dist\/src\/.+\.(js|d\.ts)$/, /^dist\/web\/(local|template)-worker\.js$/, /^scripts\/install\.mjs$/, /^binding\.gyp$/, /^src\/kernels\/native\/\w+\.(cc|h)$/,
  /^prebuilds\/linux-x64\/(dyllm\.glibc\.node|native-sources\.sha256)$/, /^models\/dyllm-demo\/[\w.]+$/, /^src\/server\/static\/[\w.]+$/,
];
const REQUIRED = [
  'package.json', 'README.md', 'LICENSE', 'THIRD_PARTY_NOTICES.md', 'bin/dyllm.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/api.js',
  'scripts/install.mjs', 'binding.gyp', 'src/kernels/native/module.cc', PREBUILD, 'models/dyllm-demo/model.safetensors', 'src/server/static/index.html',
  'src/server/static/local.html', 'src/server/static/dyllm.css', 'dist/web/local-worker.js', 'dist/web/template-worker.js',
];

/** Why the test cannot run here (platform, or no native addon at all), or null. */
function skipReason(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `the package's prebuilt addon is made for linux-x64, this is ${process.platform}-${process.arch}`;
  return null;
}

/** The environment of a user's shell: none of the npm variables of the `npm test` running us, no dyllm switches. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|INIT_CWD$|DYLLM_NATIVE$|DYLLM_ISA$)/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = userEnv()): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000, maxBuffer: 64 << 20 });
}

function out(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}${r.error ? ` (${r.error.message})` : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** The README's library example: the first ```ts block of its "## Library" section. */
function readmeLibraryExample(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Library\n');
  assert.ok(start >= 0, 'README.md has a "## Library" section');
  const end = readme.indexOf('\n## ', start + 1);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(start, end < 0 ? undefined : end));
  assert.ok(block, 'the Library section has a ```ts code block');
  return block[1];
}

/**
 * package.json and package-lock.json of an empty project that depends on the tarball: the lockfile pins dyllm's
 * dependencies to this checkout's versions (its non-dev packages), so npm needs only their cached tarballs.
 */
function writeProject(dir: string, tarball: string): void {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8'));
  const spec = `file:${tarball}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'dyllm-user', version: '1.0.0', dependencies: { dyllm: spec } },
    'node_modules/dyllm': {
      version: pkg.version, resolved: spec, integrity, license: pkg.license, hasInstallScript: true, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) if (path !== '' && !entry.dev) packages[path] = entry;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'dyllm-user', version: '1.0.0', private: true, type: 'module', dependencies: { dyllm: spec } }, null, 2));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'dyllm-user', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
}

/** A folder of commands that fail like a missing toolchain: g++, gcc, cc, c++, make, node-gyp (also as npm_config_node_gyp, the node-gyp that npm runs). */
function noCompilerEnv(dir: string): NodeJS.ProcessEnv {
  const bin = join(dir, 'no-compiler-bin');
  mkdirSync(bin, { recursive: true });
  for (const tool of ['g++', 'gcc', 'cc', 'c++', 'make', 'node-gyp']) {
    writeFileSync(join(bin, tool), `#!/bin/sh\necho "${tool}: not installed (pack test)" >&2\nexit 127\n`);
    chmodSync(join(bin, tool), 0o755);
  }
  const nodeGyp = join(bin, 'node-gyp.cjs');
  writeFileSync(nodeGyp, 'console.error("node-gyp: no compiler (pack test)"); process.exit(1);\n');
  return userEnv({ PATH: `${bin}:${process.env.PATH ?? ''}`, npm_config_node_gyp: nodeGyp });
}

/** `npx dyllm generate … --json` in the project: the parsed answer and the stderr lines. */
function cliGenerate(dir: string, env: NodeJS.ProcessEnv, args: string[]): { json: { text: string; stats: { backend: string } }; stderr: string[] } {
  const r = run('npx', ['--offline', 'dyllm', 'generate', '--json', ...args], dir, env);
  assert.equal(r.status, 0, out(r));
  return { json: JSON.parse(r.stdout), stderr: r.stderr.split('\n').filter(Boolean) };
}

const skip = skipReason();
test('the packed package installs offline into an empty project and runs the README example and the CLI on the prebuilt native addon',
  skip !== null ? { skip } : { ...needsNative('the installed package is checked on the native kernels'), timeout: 600_000 }, async (t) => {
    // The prebuilt addon this checkout ships must be compiled from its sources (what `npm pack`'s prepack checks).
    const check = await import(pathToFileURL(join(repoRoot, 'scripts', 'prebuild-check.mjs')).href) as { prebuildProblem(root: string): string | null };
    const problem = check.prebuildProblem(repoRoot);
    assert.equal(problem, null, `${problem}: run \`npm run prebuild\` (native addon now: ${nativeStatus().name ?? nativeStatus().reason})`);

    const tmp = realpathSync(mkdtempSync(join(tmpdir(), 'dyllm-pack-')));
    t.after(() => rmSync(tmp, { recursive: true, force: true }));
    const project = join(tmp, 'project');
    mkdirSync(project);
    const installed = join(project, 'node_modules', 'dyllm');

    let tarball = '';
    await t.test('npm pack: only what runs, with LICENSE, notices and the prebuilt addon', () => {
      // --ignore-scripts: `npm test` compiled dist/ already (prepare), and the prepack check ran above.
      const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], repoRoot);
      assert.equal(r.status, 0, out(r));
      const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
      tarball = join(tmp, info.filename);
      const files = info.files.map((f) => f.path);
      const stray = files.filter((f) => !SHIPPED.some((re) => re.test(f)));
      assert.deepEqual(stray, [], 'files outside what runs');
      assert.deepEqual(files.filter((f) => /\.test\.|(^|\/)test\//.test(f)), [], 'compiled tests');
      assert.deepEqual(REQUIRED.filter((f) => !files.includes(f)), [], 'missing files');
      assert.ok(files.some((f) => f === 'dist/src/api.d.ts'), 'type declarations ship');
    });

    await t.test('npm install --offline of the tarball in an empty project', () => {
      writeProject(project, tarball);
      const r = run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball], project);
      if (r.status !== 0 && /ENOTCACHED/.test(r.stderr)) {
        const url = /request to (\S+) failed/.exec(r.stderr)?.[1] ?? '(see below)';
        assert.fail(`npm install --offline: a dependency is not in the npm cache: ${url}; run \`npm ci\` in this checkout (online) to fill the cache\n${out(r)}`);
      }
      assert.equal(r.status, 0, out(r));
      assert.match(r.stdout + r.stderr, new RegExp(`^dyllm: native kernels: ${PREBUILD}$`, 'm'), `the install script chose the prebuilt addon\n${out(r)}`);
      assert.equal(existsSync(join(installed, 'build')), false, 'nothing was compiled');
      assert.equal(existsSync(join(installed, PREBUILD)), true);
    });

    await t.test("the README's library example type-checks against the installed package and runs on native", () => {
      writeFileSync(join(project, 'example.ts'), readmeLibraryExample());
      const tsc = run(process.execPath, [
        join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), 'example.ts', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
        '--target', 'es2022', '--types', 'node', '--typeRoots', join(repoRoot, 'node_modules', '@types'), '--skipLibCheck',
      ], project);
      assert.equal(tsc.status, 0, `tsc: ${out(tsc)}`);
      const r = run(process.execPath, ['example.js'], project);
      assert.equal(r.status, 0, out(r));
      assert.equal(r.stderr, '', 'no warning (the native kernels loaded)');
      assert.ok(r.stdout.includes(ANSWER), `the example prints the answer\n${out(r)}`);
      assert.match(r.stdout, /^native-\w+ /m, `the example prints stats.backend, the native kernels\n${out(r)}`);
    });

    await t.test('npx dyllm generate answers on the native kernels', () => {
      const { json, stderr } = cliGenerate(project, userEnv(), [QUESTION]);
      assert.equal(json.text, ANSWER);
      assert.match(json.stats.backend, /^native-/);
      assert.deepEqual(stderr, []);
    });

    await t.test('without a compiler the prebuilt addon is used: install succeeds, nothing compiles, native at run time', () => {
      const env = noCompilerEnv(tmp);
      assert.notEqual(run('g++', ['--version'], project, env).status, 0, 'the compilers fail in this environment');
      const r = run('npm', ['rebuild', 'dyllm', '--offline', '--foreground-scripts'], project, env);
      assert.equal(r.status, 0, out(r));
      assert.match(r.stdout + r.stderr, new RegExp(`^dyllm: native kernels: ${PREBUILD}$`, 'm'), out(r));
      assert.equal(existsSync(join(installed, 'build')), false, 'nothing was compiled');
      const { json, stderr } = cliGenerate(project, env, [QUESTION]);
      assert.equal(json.text, ANSWER);
      assert.match(json.stats.backend, /^native-/);
      assert.deepEqual(stderr, []);
    });

    await t.test('without a prebuilt addon and a compiler: one notice at install, one warning with the fix at run, the reference backend', () => {
      const env = noCompilerEnv(join(tmp, 'again'));
      renameSync(join(installed, 'prebuilds'), join(tmp, 'prebuilds-aside'));
      const r = run('npm', ['rebuild', 'dyllm', '--offline', '--foreground-scripts'], project, env);
      assert.equal(r.status, 0, `the install succeeds without the addon\n${out(r)}`);
      const notice = `dyllm: notice: no native kernel addon for linux-x64 (no prebuilt binary loads here, and compiling it failed); ` +
        `dyllm will run on the TypeScript reference backend, 100-200x slower. To fix: ${NATIVE_FIX}`;
      assert.deepEqual((r.stdout + r.stderr).split('\n').filter((l) => l.startsWith('dyllm: ')), [notice]);
      const { json, stderr } = cliGenerate(project, env, ['--gen-length', '2', '--steps', '2', QUESTION]);
      assert.equal(json.stats.backend, 'reference');
      assert.deepEqual(stderr, [
        `dyllm: warning: native kernels unavailable (no native addon for linux-x64: none compiled in ${join(installed, 'build', 'Release')}, ` +
        `no prebuilt binary for this platform in ${join(installed, 'prebuilds')}; ${NATIVE_FIX}); using the slow TypeScript reference backend`,
      ]);
    });
  });

/** Whether qemu-x86_64 (Debian's qemu-user) runs here. */
function hasQemu(): boolean {
  return spawnSync('qemu-x86_64', ['-version'], { encoding: 'utf8' }).status === 0;
}

test('the prebuilt addon on emulated older x64 CPUs: the best tier each has, no instruction it lacks, the same tokens (scripts/check-prebuild-cpus.mjs)',
  skip !== null ? { skip } : !hasQemu() ? { skip: 'qemu-x86_64 is not installed (apt-get install qemu-user; .ci/run installs it)' } : { ...needsNative('it runs the prebuilt addon'), timeout: 600_000 }, () => {
    const r = run(process.execPath, [join(repoRoot, 'scripts', 'check-prebuild-cpus.mjs')], repoRoot, process.env);
    assert.equal(r.status, 0, out(r));
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, out(r));
    assert.match(lines[0], /^Nehalem: ok: native-portable \(tiers portable\), dense and DyLLM tokens equal to native-portable here/);
    assert.match(lines[1], /^Haswell: ok: native-avx2 \(tiers avx2, portable\), dense and DyLLM tokens equal to native-avx2 here/);
  });
