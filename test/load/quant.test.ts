/**
 * Quantised model folders (docs/quantization.md): what `dyllm quantize` writes (the upstream layout, tensors equal to
 * the TypeScript quantisers' output, config.json's quantization_config, every other file copied), that loading it
 * computes bit for bit what load-time quantisation (`--quant`) computes on both backends and both families (tied
 * heads, sharded input and output included), and the one-line refusals of malformed quantised folders. A failed
 * quantisation leaves nothing behind.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { groups, quantizeInt8, quantizeQ4, type QuantFormat } from '../../src/kernels/quant.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { loadNativeBackend } from '../../src/kernels/native.js';
import { Checkpoint } from '../../src/load/safetensors.js';
import { HEAD_FORMAT, loadModel, matrixNames } from '../../src/models/load-model.js';
import { paddedBatch } from '../../src/models/types.js';
import { quantizeFolder } from '../../src/cli/quantize.js';
import { LoadError } from '../../src/load/errors.js';
import { fixturePath } from '../helpers/fixtures.js';
import { needsNative } from '../helpers/native.js';
import { repoRoot } from '../helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'dyllm-quant-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
let serial = 0;
const fresh = (tag: string): string => join(tmp, `${tag}-${serial++}`);

/** Logits of a fixed batch (two sequences, one padded) through model.forward. */
function logits(dir: string, backend: KernelBackend, quant: 'none' | QuantFormat = 'none'): Float32Array {
  const { model, config } = loadModel(dir, { backend, quant });
  const L = 12;
  const tokens = Int32Array.from({ length: 2 * L }, (_, i) => (i * 37 + 11) % Math.min(300, config.vocabSize));
  const mask = Uint8Array.from({ length: 2 * L }, (_, i) => (i >= L && i < L + 3 ? 0 : 1));
  return model.forward(paddedBatch(tokens, 2, L, mask));
}

/** A tensor's own bytes (a tensor may be a view into its file's mapping, so not its whole buffer). */
function bytesOf(t: ArrayBufferView): Buffer {
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength);
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) assert.fail(`${what}: logit ${i} is ${a[i]} vs ${b[i]}`);
}

const FIXTURES = ['llada-tiny', 'dream-tiny', 'llada-tiny-f32-sharded'] as const;

describe('dyllm quantize', () => {
  test('writes the upstream layout: each projection quantised with its scales, embeddings and norms as they were', () => {
    for (const format of ['int8', 'q4'] as const) {
      const inDir = fixturePath('dream-tiny');
      const out = fresh(`layout-${format}`);
      const summary = quantizeFolder(inDir, out, format, HEAD_FORMAT[format]);
      assert.match(summary, new RegExp(`15 matrices as ${format} \\(LM head int8\\)`)); // 2 layers × 7 + the head
      const src = new Checkpoint(inDir);
      const dst = new Checkpoint(out);
      const { loadConfig } = { loadConfig: (d: string) => JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown> };
      const cfgIn = loadConfig(inDir);
      const cfgOut = loadConfig(out);
      assert.deepEqual(cfgOut.quantization_config, { quant_method: 'dyllm', format, group_size: format === 'int8' ? -1 : 32, lm_head: 'int8' });
      delete cfgOut.quantization_config;
      assert.deepEqual(cfgOut, cfgIn);
      const names = matrixNames({ arch: 'dream', numLayers: 2, tieWordEmbeddings: false } as never);
      for (const name of src.names()) {
        const info = src.info(name)!;
        const f: QuantFormat | null = names.linear.includes(name) ? format : name === names.head ? 'int8' : null;
        if (!f) {
          assert.deepEqual(dst.info(name)!.shape, info.shape, name);
          assert.equal(dst.info(name)!.dtype, info.dtype, name);
          assert.deepEqual(bytesOf(dst.read(name)), bytesOf(src.read(name)), `${name} copied as it was`);
          continue;
        }
        const [N, K] = info.shape;
        const want = f === 'int8' ? quantizeInt8('bf16', src.read(name) as Uint16Array, N, K) : quantizeQ4('bf16', src.read(name) as Uint16Array, N, K);
        assert.equal(dst.info(name)!.dtype, f === 'int8' ? 'I8' : 'U8');
        assert.deepEqual(dst.info(name)!.shape, f === 'int8' ? [N, K] : [N, groups(K) * 16]);
        assert.equal(dst.info(`${name}_scale`)!.dtype, f === 'int8' ? 'F32' : 'BF16');
        assert.deepEqual(dst.info(`${name}_scale`)!.shape, f === 'int8' ? [N] : [N, groups(K)]);
        assert.deepEqual(bytesOf(dst.read(name)), bytesOf(want.q), `${name}: the oracle's values`);
        assert.deepEqual(bytesOf(dst.read(`${name}_scale`)), bytesOf(want.scales), `${name}: the oracle's scales`);
      }
      assert.equal(dst.names().length, src.names().length + 15);
      for (const f of readdirSync(inDir)) {
        if (f === 'config.json' || f.endsWith('.safetensors')) continue;
        assert.deepEqual(readFileSync(join(out, f)), readFileSync(join(inDir, f)), `${f} copied`);
      }
    }
  });

  for (const name of FIXTURES) {
    test(`${name}: the quantised folder computes bit for bit what --quant computes (reference backend)`, () => {
      for (const format of ['int8', 'q4'] as const) {
        const out = fresh(`${name}-${format}`);
        quantizeFolder(fixturePath(name), out, format, HEAD_FORMAT[format]);
        const be = new ReferenceBackend();
        const viaFile = logits(out, be);
        const atLoad = logits(fixturePath(name), be, format);
        assertSameBits(viaFile, atLoad, `${name} ${format}`);
        assertSameBits(logits(out, be, format), viaFile, `${name} ${format}: --quant ${format} on the quantised folder is a no-op`);
        assert.deepEqual(loadModel(out, { backend: be }).unusedTensors, [], 'every tensor (scales included) is used');
        const dense = logits(fixturePath(name), be);
        let diff = 0;
        for (let i = 0; i < dense.length; i++) diff = Math.max(diff, Math.abs(dense[i] - viaFile[i]));
        assert.ok(diff > 0, 'quantisation changed the logits');
      }
    });
  }

  test('the same on the native backend (llada-tiny, dream-tiny)', needsNative(), () => {
    for (const name of ['llada-tiny', 'dream-tiny']) {
      for (const format of ['int8', 'q4'] as const) {
        const out = fresh(`native-${name}-${format}`);
        quantizeFolder(fixturePath(name), out, format, HEAD_FORMAT[format]);
        const be = loadNativeBackend();
        assertSameBits(logits(out, be), logits(fixturePath(name), be, format), `${name} ${format} native`);
      }
    }
  });

  test('a tied LM head is the dense embedding in the file and is quantised at load as lm_head says', () => {
    const tied = fresh('tied');
    cpSync(fixturePath('llada-tiny'), tied, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(tied, 'config.json'), 'utf8'));
    cfg.weight_tying = true;
    writeFileSync(join(tied, 'config.json'), JSON.stringify(cfg));
    for (const [format, head] of [['q4', 'int8'], ['int8', 'q4'], ['q4', null]] as const) {
      const out = fresh('tied-q');
      const summary = quantizeFolder(tied, out, format, head);
      assert.match(summary, head ? new RegExp(`LM head tied to the embedding: ${head} at load`) : /LM head dense/);
      const ck = new Checkpoint(out);
      assert.equal(ck.info('model.transformer.wte.weight')!.dtype, 'BF16', 'the embedding stays dense');
      assert.equal(ck.info('model.transformer.ff_out.weight')!.dtype, 'BF16', 'the unused head tensor is copied as it was');
      const be = new ReferenceBackend();
      const { model } = loadModel(out, { backend: be });
      const head0 = (model as unknown as { weights: { head: { dtype: string } } }).weights.head;
      assert.equal(head0.dtype, head ?? 'bf16');
      if (head === HEAD_FORMAT[format]) assertSameBits(logits(out, be), logits(tied, be, format), 'tied head: file vs --quant');
    }
  });

  test('sharded output: several files and an index, loading to the same logits', () => {
    const one = fresh('one');
    const many = fresh('many');
    quantizeFolder(fixturePath('llada-tiny'), one, 'q4', 'int8');
    const summary = quantizeFolder(fixturePath('llada-tiny'), many, 'q4', 'int8', { shardBytes: 40_000 });
    assert.match(summary, /in \d+ files$/);
    const files = readdirSync(many).filter((f) => f.endsWith('.safetensors'));
    assert.ok(files.length > 2, `${files.length} shards`);
    assert.ok(existsSync(join(many, 'model.safetensors.index.json')));
    const be = new ReferenceBackend();
    assertSameBits(logits(many, be), logits(one, be), 'sharded vs single file');
  });

  test('a failure midway leaves nothing at OUT; an existing OUT and a quantised IN are refused', () => {
    const out = fresh('fail');
    let lines = 0;
    assert.throws(() => quantizeFolder(fixturePath('llada-tiny'), out, 'int8', 'int8', { log: () => { if (++lines === 1) throw new Error('disk full'); } }), /disk full/);
    assert.equal(existsSync(out), false, 'OUT absent');
    assert.deepEqual(readdirSync(tmp).filter((f) => f.includes('partial')), [], 'no temporary folder left');
    const done = fresh('done');
    quantizeFolder(fixturePath('llada-tiny'), done, 'int8', 'int8');
    assert.throws(() => quantizeFolder(fixturePath('llada-tiny'), done, 'int8', 'int8'), (e: Error) => e instanceof LoadError && /expected a new folder for the quantised model, found an existing file or folder/.test(e.message));
    assert.throws(() => quantizeFolder(done, fresh('again'), 'q4', 'int8'),
      (e: Error) => e.message === `${join(done, 'config.json')}: expected a dense (bf16 / f32) model folder, found one already quantised as int8 (quantization_config) (quantise the original folder)`);
  });
});

describe('loading quantised folders: refusals', () => {
  const base = fresh('base');
  quantizeFolder(fixturePath('llada-tiny'), base, 'q4', 'int8');

  /** A copy of the quantised folder with config.json edited and/or one tensor's header patched. */
  function variant(edit: (cfg: Record<string, unknown>) => void, patchHeader?: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): string {
    const d = fresh('variant');
    cpSync(base, d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    edit(cfg);
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    if (patchHeader) {
      const buf = readFileSync(join(d, 'model.safetensors'));
      const n = Number(buf.readBigUInt64LE(0));
      const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
      patchHeader(h);
      let json = JSON.stringify(h);
      while ((8 + json.length) % 8) json += ' ';
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      writeFileSync(join(d, 'model.safetensors'), Buffer.concat([len, Buffer.from(json), buf.subarray(8 + n)]));
    }
    return d;
  }
  const message = (dir: string, quant: 'none' | QuantFormat = 'none'): string => {
    try {
      loadModel(dir, { backend: new ReferenceBackend(), quant });
      return 'loaded';
    } catch (e) {
      return (e as Error).message;
    }
  };

  test('quantization_config: another method, a wrong group size, an unknown format', () => {
    const f = (d: string): string => join(d, 'config.json');
    let d = variant((c) => { (c.quantization_config as Record<string, unknown>).quant_method = 'gptq'; });
    assert.equal(message(d), `${f(d)}: "quantization_config": expected "quant_method": "dyllm" (the int8 / q4 format of \`dyllm quantize\`, docs/quantization.md), found "gptq" (other quantisation methods are not supported; quantise the original bf16 folder with dyllm quantize)`);
    d = variant((c) => { (c.quantization_config as Record<string, unknown>).group_size = 64; });
    assert.equal(message(d), `${f(d)}: "quantization_config": expected "group_size": 32 for format q4, found 64`);
    d = variant((c) => { (c.quantization_config as Record<string, unknown>).format = 'q3'; });
    assert.equal(message(d), `${f(d)}: "quantization_config": expected "format": "int8" or "q4", found "q3"`);
    assert.equal(message(base, 'int8'), `${f(base)}: expected --quant none or q4 for a folder quantised as q4 (quantization_config), found --quant int8 (quantise the original bf16 folder instead)`);
    assert.equal(message(base, 'q4'), 'loaded');
  });

  test('quantised tensors without quantization_config, with a wrong scale shape or dtype, as the embedding', () => {
    const file = (d: string): string => join(d, 'model.safetensors');
    let d = variant((c) => { delete c.quantization_config; });
    assert.match(message(d), /: expected tensor \S+ as BF16, F16 or F32, found U8 \(a quantised weight\) but \S+config\.json has no "quantization_config" \(a folder written by dyllm quantize has one/);
    d = variant(() => {}, (h) => { h['model.transformer.blocks.0.q_proj.weight_scale'].shape = [32, 4]; });
    assert.equal(message(d), `${file(d)}: expected tensor model.transformer.blocks.0.q_proj.weight_scale (one scale per 32 input features) with shape [64,2], found shape [32,4] (config.json does not match the weights)`);
    d = variant(() => {}, (h) => {
      const s = h['model.transformer.blocks.0.q_proj.weight_scale'];
      s.dtype = 'F16'; // same byte size as BF16
    });
    assert.equal(message(d), `${file(d)}: expected tensor model.transformer.blocks.0.q_proj.weight_scale as BF16 (q4 scales are bf16), found F16`);
    d = variant(() => {}, (h) => {
      const e = h['model.transformer.wte.weight'];
      e.dtype = 'U8';
      e.shape = [e.shape[0], e.shape[1] * 2]; // same byte size
    });
    assert.equal(message(d), `${file(d)}: expected tensor model.transformer.wte.weight (the token embedding, looked up row by row) as BF16, F16 or F32, found U8 (q4) (dyllm quantize keeps embeddings dense; quantise the original folder again)`);
    d = variant(() => {}, (h) => {
      const e = h['model.transformer.blocks.1.attn_norm.weight'];
      e.dtype = 'I8';
      e.data_offsets[1] = e.data_offsets[0] + 64; // 64 one-byte values
    });
    assert.equal(message(d), `${file(d)}: expected tensor model.transformer.blocks.1.attn_norm.weight as BF16, F16 or F32, found I8 (only linear layer weights are stored quantised)`);
  });
});

describe('closeness to bf16', () => {
  /** Row-wise log-softmax in f64. */
  const logSoftmax = (a: Float32Array): Float64Array => {
    let m = -Infinity;
    for (const x of a) m = Math.max(m, x);
    let s = 0;
    for (const x of a) s += Math.exp(x - m);
    const l = m + Math.log(s);
    return Float64Array.from(a, (x) => x - l);
  };

  test('the bundled model: mean KL(bf16 || quantised) per position under 0.005, argmax unchanged at >= 90 % of positions', () => {
    // Measured 2.8e-4 (int8) and 3.9e-4 (q4) on this batch (BENCHMARKS.md, "Quantised weights"); a wrong scale or a
    // lost group moves the KL by orders of magnitude.
    const dir = join(repoRoot, 'models', 'dyllm-demo');
    const be = new ReferenceBackend();
    const forward = (quant: 'none' | QuantFormat): { out: Float32Array; V: number } => {
      const { model, config } = loadModel(dir, { backend: be, quant });
      const L = 48;
      const tokens = Int32Array.from({ length: L }, (_, i) => (i < 24 ? (i * 37 + 11) % 400 : config.maskTokenId));
      return { out: model.forward(paddedBatch(tokens, 1, L, new Uint8Array(L).fill(1))), V: config.vocabSize };
    };
    const dense = forward('none');
    for (const format of ['int8', 'q4'] as const) {
      const q = forward(format).out;
      const rows = dense.out.length / dense.V;
      let kl = 0;
      let agree = 0;
      for (let r = 0; r < rows; r++) {
        const p = logSoftmax(dense.out.subarray(r * dense.V, (r + 1) * dense.V));
        const lq = logSoftmax(q.subarray(r * dense.V, (r + 1) * dense.V));
        let a = 0;
        let b = 0;
        for (let i = 0; i < dense.V; i++) {
          kl += Math.exp(p[i]) * (p[i] - lq[i]);
          if (p[i] > p[a]) a = i;
          if (lq[i] > lq[b]) b = i;
        }
        if (a === b) agree++;
      }
      assert.ok(kl / rows > 0 && kl / rows < 0.005, `${format}: mean KL ${kl / rows}`);
      assert.ok(agree >= 0.9 * rows, `${format}: argmax agrees at ${agree} of ${rows} positions`);
    }
  });
});
