/**
 * The packed-weight cache file (src/load/pack-cache.ts, docs/loading.md): a model loaded from the cache computes
 * bit for bit what it computes packed afresh (bf16, --quant int8 and q4, a sharded f32 checkpoint with a tied
 * head); a stale, corrupt or truncated file is one warning and the weights are packed (and the file rewritten); a
 * cache directory that cannot be written is a warning and the load goes on; `dyllm pack` writes the file ahead.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeAddon, loadNativeBackend } from '../../src/kernels/native.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { packCacheEnabled, packCacheDir, PACK_ALIGN } from '../../src/load/pack-cache.js';
import { loadModel, type LoadedModel, type QuantOption } from '../../src/models/load-model.js';
import { paddedBatch } from '../../src/models/types.js';
import { fixturePath } from '../helpers/fixtures.js';
import { needsNative } from '../helpers/native.js';
import { repoRoot } from '../helpers/paths.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const tmp = mkdtempSync(join(tmpdir(), 'dyllm-pack-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
let serial = 0;
const fresh = (tag: string): string => join(tmp, `${tag}-${serial++}`);

/** Logits of a fixed two-sequence batch (one padded). */
function logits(m: LoadedModel): Float32Array {
  const L = 12;
  const V = Math.min(300, m.config.vocabSize);
  const tokens = Int32Array.from({ length: 2 * L }, (_, i) => (i * 37 + 11) % V);
  const mask = Uint8Array.from({ length: 2 * L }, (_, i) => (i >= L && i < L + 3 ? 0 : 1));
  return m.model.forward(paddedBatch(tokens, 2, L, mask));
}

/** A load with the cache in `dir`; the lines it logged. */
function cached(model: string, dir: string, quant: QuantOption = 'none', backend: KernelBackend = loadNativeBackend()): { m: LoadedModel; lines: string[] } {
  const lines: string[] = [];
  const m = loadModel(model, { backend, quant, packCache: { dir, log: (l) => lines.push(l) } });
  return { m, lines };
}

/** The one cache file in `dir`. */
function cacheFile(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.dyllmpack'));
  assert.equal(files.length, 1, `one cache file in ${dir}: ${files.join(', ')}`);
  return join(dir, files[0]);
}

/** The header of a cache file and where its regions start. */
function header(file: string): { weights: { name: string; offset: number; bytes: number }[]; dataStart: number } {
  const b = readFileSync(file);
  const len = b.readUInt32LE(12);
  const h = JSON.parse(b.toString('utf8', 16, 16 + len)) as { weights: { name: string; offset: number; bytes: number }[] };
  return { weights: h.weights, dataStart: Math.ceil((16 + len) / PACK_ALIGN) * PACK_ALIGN };
}

describe('packed-weight cache', needsNative(), () => {
  for (const [model, quant] of [[DEMO, 'none'], [DEMO, 'int8'], [DEMO, 'q4'], [fixturePath('dream-tiny-f32-sharded'), 'none'], [fixturePath('llada-tiny'), 'q4']] as const) {
    test(`logits from the cache file equal packing afresh: ${model.split('/').pop()} --quant ${quant}`, () => {
      const want = logits(loadModel(model, { backend: loadNativeBackend(), quant, packCache: false }));
      const dir = fresh('parity');
      const first = cached(model, dir, quant);
      assert.equal(first.m.packCache?.written, true);
      assert.equal(first.m.packCache?.mapped, 0);
      assert.ok(first.m.packCache!.packed > 0);
      assert.equal(first.lines.length, 1, first.lines.join('\n'));
      assert.match(first.lines[0], /^packed-weight cache: wrote .*\.dyllmpack \(\d+ MiB, \d+ weights\); later loads with --pack-cache map it$/);
      assert.deepEqual(logits(first.m), want);
      const second = cached(model, dir, quant);
      assert.deepEqual(second.lines, []);
      assert.deepEqual({ ...second.m.packCache, path: '' }, { path: '', mapped: first.m.packCache!.packed, packed: 0, written: false, bytes: first.m.packCache!.bytes });
      assert.deepEqual(logits(second.m), want);
      assert.equal(second.m.model.weightBytes, first.m.model.weightBytes);
    });
  }

  test('the quantisation and the model folder each have their own file', () => {
    const dir = fresh('keys');
    cached(DEMO, dir, 'none');
    cached(DEMO, dir, 'q4');
    assert.equal(readdirSync(dir).filter((f) => f.endsWith('.dyllmpack')).length, 2);
  });

  test('a stale file (the checkpoint touched) is reported, repacked and rewritten', () => {
    const model = fresh('model');
    cpSync(DEMO, model, { recursive: true });
    const want = logits(loadModel(model, { backend: loadNativeBackend(), packCache: false }));
    const dir = fresh('stale');
    cached(model, dir);
    const later = new Date(statSync(join(model, 'model.safetensors')).mtimeMs + 5000);
    utimesSync(join(model, 'model.safetensors'), later, later);
    const { m, lines } = cached(model, dir);
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0], /^warning: packed-weight cache .*\.dyllmpack: stale: .*model\.safetensors changed since it was written \(mtimeNs \d+, now \d+\); ignoring it and packing the weights$/);
    assert.match(lines[1], /^packed-weight cache: wrote /);
    assert.equal(m.packCache?.mapped, 0);
    assert.deepEqual(logits(m), want);
    const again = cached(model, dir);
    assert.deepEqual(again.lines, []);
    assert.equal(again.m.packCache?.packed, 0);
    assert.deepEqual(logits(again.m), want);
  });

  const damage: [string, (file: string) => void, RegExp][] = [
    ['a flipped byte in a weight', (f) => {
      // the sixth weight: the five before it map, it and the rest are packed
      const { weights, dataStart } = header(f);
      const b = readFileSync(f);
      b[dataStart + weights[5].offset + 1000] ^= 0x40;
      writeFileSync(f, b);
    }, /: weight model\.transformer\.blocks\.0\.up_proj\.weight: checksum [0-9a-f]{16}, the header says [0-9a-f]{16} \(corrupt\); ignoring it/],
    ['truncated', (f) => truncateSync(f, statSync(f).size - 100), /ends past the file's \d+ bytes \(truncated\); ignoring it/],
    ['truncated inside the header', (f) => truncateSync(f, 40), /a header of \d+ bytes in a 40-byte file \(truncated or corrupt/],
    ['not a cache file', (f) => writeFileSync(f, 'hello, world, not a cache'), /not a packed-weight cache file \(magic "hello, w", expected "DYLLMPAK"\)/],
    ['a wrong size in the header', (f) => {
      const b = readFileSync(f);
      const s = b.toString('latin1');
      const i = s.indexOf('"bytes":');
      const j = s.indexOf(',', i);
      const n = Number(s.slice(i + 8, j));
      // the same digit count, so the header keeps its length
      const m = String(n - 1).padStart(String(n).length, '0');
      b.write(m, i + 8, 'latin1');
      writeFileSync(f, b);
    }, /: weight ".*": \d+ bytes, but a prepared \d+x\d+ bf16 weight is \d+; ignoring it/],
    ['a FIFO in its place', (f) => {
      rmSync(f);
      assert.equal(spawnSync('mkfifo', [f]).status, 0, 'mkfifo');
    }, /: not a regular file; ignoring it/],
    ['another format version', (f) => {
      const b = readFileSync(f);
      b.writeUInt32LE(7, 8);
      writeFileSync(f, b);
    }, /format version 7, expected 1; ignoring it/],
  ];
  for (const [what, hurt, warning] of damage) {
    test(`a damaged cache file (${what}) is one warning, correct logits, and rewritten`, () => {
      const want = logits(loadModel(DEMO, { backend: loadNativeBackend(), packCache: false }));
      const dir = fresh('damage');
      cached(DEMO, dir);
      hurt(cacheFile(dir));
      const { m, lines } = cached(DEMO, dir);
      assert.equal(lines.length, 2, lines.join('\n'));
      assert.match(lines[0], /^warning: packed-weight cache /);
      assert.match(lines[0], warning);
      assert.match(lines[1], /^packed-weight cache: wrote /);
      assert.ok(m.packCache!.packed > 0);
      if (what === 'a flipped byte in a weight') assert.equal(m.packCache!.mapped, 5);
      assert.deepEqual(logits(m), want);
      const again = cached(DEMO, dir);
      assert.deepEqual(again.lines, []);
      assert.equal(again.m.packCache?.packed, 0);
      assert.deepEqual(logits(again.m), want);
    });
  }

  test('a cache directory that cannot be written is a warning; the model loads and computes the same', () => {
    const blocker = fresh('file');
    writeFileSync(blocker, 'a file where the cache directory should be');
    const want = logits(loadModel(DEMO, { backend: loadNativeBackend(), packCache: false }));
    const { m, lines } = cached(DEMO, join(blocker, 'packed'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /^warning: packed-weight cache: could not write .*\/packed\/dyllm-demo-none-[0-9a-f]{16}\.dyllmpack \(ENOTDIR: .*\); the model loaded without it$/);
    assert.equal(m.packCache?.written, false);
    assert.deepEqual(logits(m), want);
  });

  test('a write that fails midway (file size limit, as a full disk) is a warning, leaves no file, and the load goes on', () => {
    // RLIMIT_FSIZE with SIGXFSZ ignored: a write past 1 MiB fails with EFBIG, as one on a full disk fails with ENOSPC.
    const dir = fresh('full');
    const r = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 1024; exec "${process.execPath}" "${join(repoRoot, 'bin', 'dyllm.js')}" generate --prompt-ids 1,2,3 --gen-length 4 --steps 4 --block-length 4 --quiet --pack-cache`],
      { encoding: 'utf8', env: { ...process.env, DYLLM_CACHE_DIR: dir } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^dyllm: warning: packed-weight cache: could not write .*\/dyllm-demo-none-[0-9a-f]{16}\.dyllmpack \(EFBIG: file too large, write\); the model loaded without it$/m);
    assert.ok(r.stdout.length > 0, 'the answer was printed');
    assert.deepEqual(readdirSync(dir), [], 'neither the cache file nor its temporary file is left');
  });

  test('the packed layout is what kPackLayoutVersion 1 names (bump it when this fails)', () => {
    // A fixed 40x70 weight (two panels, an odd K, a part group) in each dtype, packed by the addon: the checksums of
    // its bytes. A change to prepare()'s output must come with a new kPackLayoutVersion (src/kernels/native/glue.h),
    // or cache files written before it would be mapped as the new layout.
    const addon = loadNativeAddon();
    assert.equal(addon.packLayout(), 1);
    const N = 40, K = 70;
    const bf16 = Uint16Array.from({ length: N * K }, (_, i) => 0x3f80 + ((i * 7919) % 251) - 125);
    const f32 = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.37));
    const i8 = Int8Array.from({ length: N * K }, (_, i) => ((i * 31) % 255) - 127);
    const q4 = Uint8Array.from({ length: N * 3 * 16 }, (_, i) => (i * 37) % 256);
    const s8 = Float32Array.from({ length: N }, (_, i) => 0.01 * (i + 1));
    const s4 = Uint16Array.from({ length: N * 3 }, (_, i) => 0x3c00 + i);
    const sums = [
      addon.prepare('bf16', bf16, N, K), addon.prepare('f32', f32, N, K), addon.prepare('int8', i8, N, K, s8), addon.prepare('q4', q4, N, K, s4),
    ].map((ab, i) => {
      assert.equal(ab.byteLength, addon.preparedBytes((['bf16', 'f32', 'int8', 'q4'] as const)[i], N, K));
      return addon.checksum(ab, 0, ab.byteLength);
    });
    assert.deepEqual(sums, LAYOUT_V1_SUMS);
  });

  test('the checksum is the same on any chunking of the work and sees every byte', () => {
    const addon = loadNativeAddon();
    const b = new Uint8Array(3 * 2 ** 20 + 13).map((_, i) => (i * 131) & 255);
    const s = addon.checksum(b.buffer, 0, b.length);
    assert.equal(addon.checksum(b.buffer, 0, b.length), s);
    b[b.length - 1] ^= 1;
    assert.notEqual(addon.checksum(b.buffer, 0, b.length), s);
    assert.notEqual(addon.checksum(b.buffer, 0, b.length - 1), addon.checksum(b.buffer, 1, b.length - 1));
    assert.throws(() => addon.checksum(b.buffer, 10, b.length), /checksum: range \[10, \d+\) is outside the \d+-byte buffer/);
  });

  test('the reference backend has no packed layout: said once, the model loads as without the cache', () => {
    const dir = fresh('reference');
    const { m, lines } = cached(fixturePath('llada-tiny'), dir, 'none', new ReferenceBackend());
    assert.deepEqual(lines, ['packed-weight cache: not used: the reference backend has no packed layout to cache (the native backend has)']);
    assert.equal(m.packCache, null);
  });

  test('dyllm pack writes the file that --pack-cache then maps', () => {
    const dir = fresh('cli');
    const env = { ...process.env, DYLLM_CACHE_DIR: dir, DYLLM_PACK_CACHE: undefined };
    const run = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin', 'dyllm.js'), ...args], { encoding: 'utf8', env });
    const a = run('pack', DEMO, '--quant', 'int8');
    assert.equal(a.status, 0, a.stderr);
    const path = a.stdout.trim();
    assert.match(path, new RegExp(`^${dir}/dyllm-demo-int8-[0-9a-f]{16}\\.dyllmpack$`));
    assert.match(a.stderr, /packed-weight cache: wrote .* \(\d+ MiB, 43 weights\)/);
    assert.match(a.stderr, /dyllm: pack: 43 weights packed and written in [\d.]+ s \(\d+ MiB\)\n$/);
    const b = run('pack', DEMO, '--quant', 'int8');
    assert.equal(b.status, 0, b.stderr);
    assert.equal(b.stdout.trim(), path);
    assert.match(b.stderr, /^dyllm: pack: up to date \(43 weights, \d+ MiB\)\n$/);
    const written = statSync(path).mtimeMs;
    const prompt = ['--prompt-ids', '1,2,3,4', '--gen-length', '8', '--steps', '8', '--block-length', '8', '--json', '--quant', 'int8'];
    const g = run('generate', ...prompt, '--pack-cache');
    const h = run('generate', ...prompt);
    assert.equal(g.status, 0, g.stderr);
    assert.equal(h.status, 0, h.stderr);
    assert.deepEqual(JSON.parse(g.stdout).tokens, JSON.parse(h.stdout).tokens);
    assert.equal(g.stderr, '', 'a load that maps the file says nothing');
    assert.equal(statSync(path).mtimeMs, written, 'nor writes it again');
    const bad = run('pack');
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr, 'dyllm: expected one MODEL (a folder, org/name or a bundled name), found 0 arguments\n');
    const q = run('generate', '--prompt', 'hi', '--pack-cache', '--queue', 'redis://localhost:1');
    assert.equal(q.status, 2);
    assert.equal(q.stderr, 'dyllm: --pack-cache: with --queue the workers load the model; start them with DYLLM_PACK_CACHE=1 instead\n');
  });
});

test('DYLLM_PACK_CACHE and the cache directory', () => {
  assert.equal(packCacheEnabled(undefined, {}), null);
  assert.equal(packCacheEnabled(undefined, { DYLLM_PACK_CACHE: '0' }), null);
  assert.deepEqual(packCacheEnabled(undefined, { DYLLM_PACK_CACHE: '1' }), {});
  assert.equal(packCacheEnabled(false, { DYLLM_PACK_CACHE: '1' }), null);
  assert.deepEqual(packCacheEnabled(true, {}), {});
  assert.throws(() => packCacheEnabled(undefined, { DYLLM_PACK_CACHE: 'yes' }), { message: 'DYLLM_PACK_CACHE: expected 1 (use the packed-weight cache) or 0, found "yes"' });
  assert.equal(packCacheDir({ DYLLM_CACHE_DIR: '/x/y' }), '/x/y');
  assert.equal(packCacheDir({ XDG_CACHE_HOME: '/c' }), '/c/dyllm/packed');
  assert.match(packCacheDir({}), /\/\.cache\/dyllm\/packed$/);
});

/** Checksums of the fixed weights of the layout test, packed by kPackLayoutVersion 1. */
const LAYOUT_V1_SUMS = ['d76cfb14611bfbf3', '382cbcbc7e5c487e', 'e7bd1d4c60a42271', '6bea495790f0f340'];
