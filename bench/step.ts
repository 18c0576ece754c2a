/**
 * Roofline accounting of one denoising step (not a test):
 *
 *   npm run bench:step -- [--model DIR | --synthetic-8b] [--gen 256] [--prompt 64] [--layers 2] [--quant none|int8|q4]
 *
 * Runs a generation with dense and with DyLLM, and for a dense step and a typical sparse step reports the time
 * per phase (projections q/k/v/o, attention, FFN, LM head, norms/elementwise, sampler + JS overhead), the FLOPs
 * and weight bytes each phase had to move, and measured ÷ bound, where bound = max(FLOPs ÷ peak,
 * bytes ÷ bandwidth) with the machine's peaks measured in the same run (vdpbf16ps peak, stream read).
 * `--synthetic-8b` writes (once, under /tmp) a random bf16 checkpoint with LLaDA-8B's real layer shapes and full
 * vocabulary but `--layers` blocks, and also reports resident memory after loading it against the weight bytes and
 * the parameter count (bytes of RAM per parameter). `--quant` loads the weights quantised (docs/quantization.md).
 * `--e2e` also runs whole generations (all `--steps`, dense and DyLLM both ways) and reports tokens/s and their ratio.
 * `--qkv-tol E` / `--head-tol E` (comma lists) also profile the sparse step with DyLLM's beyond-the-paper options
 * (engine/accel/dyllm.ts: reuse Q/K/V, or logits rows, of rows whose input moved by at most E), each in `--rounds`
 * (default 3) pairs with the default sparse step, and report medians and how many rows they reused; with `--e2e`
 * their whole generations too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import type { HostWeight, KernelBackend, PreparedWeight } from '../src/kernels/backend.js';
import { bf16ActivationMode, loadNativeAddon, loadNativeBackend, loadNativeTier } from '../src/kernels/native.js';
import { loadModel } from '../src/models/load-model.js';
import { DenoiseRun } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { resolveAccel } from '../src/engine/accel.js';
import type { SpecialIds } from '../src/engine/pipeline.js';
import { bundledModelPath as BUNDLED_MODEL } from '../src/load/hub.js';
import { upstreamModelDir } from './upstream-path.js';
import { syntheticLladaDir, syntheticLladaReady, writeSyntheticLlada } from './synthetic-llada.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'synthetic-8b': { type: 'boolean', default: false },
    layers: { type: 'string', default: '2' },
    gen: { type: 'string', default: '256' },
    prompt: { type: 'string', default: '64' },
    steps: { type: 'string' },
    block: { type: 'string', default: '32' },
    e2e: { type: 'boolean', default: false },
    quant: { type: 'string', default: 'none' },
    'qkv-tol': { type: 'string' },
    'head-tol': { type: 'string' },
    rounds: { type: 'string', default: '3' },
  },
});
const rounds = Number(values.rounds);
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 100)) throw new Error(`--rounds: expected an integer in [1, 100], found "${values.rounds}"`);
const tolList = (v: string | undefined): number[] => (v ? v.split(',').map(Number) : []);
const variants: { name: string; knobs: Record<string, number> }[] = [
  ...tolList(values['qkv-tol']).map((e) => ({ name: `qkv-tol ${e}`, knobs: { qkvTol: e } })),
  ...tolList(values['head-tol']).map((e) => ({ name: `head-tol ${e}`, knobs: { headTol: e } })),
];
if (variants.some((v) => !Object.values(v.knobs).every((e) => e >= 0 && e <= 1))) throw new Error('--qkv-tol / --head-tol: expected numbers in [0, 1]');
const quant = values.quant as 'none' | 'int8' | 'q4';
if (!['none', 'int8', 'q4'].includes(quant)) throw new Error(`--quant: expected none, int8 or q4, found "${quant}"`);

// ---- machine peaks (same run) ----
const tier = loadNativeTier();
const threads = loadNativeAddon().threads(); // DYLLM_THREADS / --threads, default os.availableParallelism()
tier.peak('bf16', threads, 2e6);
const peakBf16 = Math.max(...[0, 1, 2].map(() => tier.peak('bf16', threads, 1e7))) * 1e9; // FLOP/s
const bw = Math.max(...tier.streamRead(1 << 30, threads, 3)) * 1e9; // B/s
const compensated = bf16ActivationMode() === 'split';
// The compensated bf16 GEMM does two dot products per activation: its compute peak is half.
const peakMatmul = compensated ? peakBf16 / 2 : peakBf16;

// ---- a synthetic checkpoint with LLaDA-8B layer shapes (bench/synthetic-llada.ts) ----
function syntheticLlada(layers: number): string {
  const dir = syntheticLladaDir(layers);
  if (syntheticLladaReady(dir)) return dir;
  const up = upstreamModelDir('llada-8b-instruct');
  return writeSyntheticLlada(dir, JSON.parse(readFileSync(join(up, 'config.json'), 'utf8')), readFileSync(join(up, 'generation_config.json')), layers);
}

// ---- a timing backend: every op timed and attributed to a phase ----
type Phase = 'projections' | 'attention' | 'ffn' | 'lm_head' | 'norms+elementwise' | 'logit stats';
const phaseOf = new Map<PreparedWeight, Phase>();
const acc = { ms: new Map<Phase, number>(), flops: new Map<Phase, number>(), bytes: new Map<Phase, number>() };
function add(ph: Phase, ms: number, flops: number, bytes: number) {
  acc.ms.set(ph, (acc.ms.get(ph) ?? 0) + ms);
  acc.flops.set(ph, (acc.flops.get(ph) ?? 0) + flops);
  acc.bytes.set(ph, (acc.bytes.get(ph) ?? 0) + bytes);
}
function timed(inner: KernelBackend): KernelBackend {
  const t = <A extends unknown[]>(ph: Phase, f: (...a: A) => void, flops: (...a: A) => number, bytes: (...a: A) => number) => (...a: A) => {
    const t0 = performance.now();
    f(...a);
    add(ph, performance.now() - t0, flops(...a), bytes(...a));
  };
  return {
    name: inner.name,
    prepareWeight: (w: HostWeight) => inner.prepareWeight(w),
    matmul: (x, M, w, out, bias, xRows) => {
      const t0 = performance.now();
      inner.matmul(x, M, w, out, bias, xRows);
      add(phaseOf.get(w) ?? 'projections', performance.now() - t0, 2 * M * w.inFeatures * w.outFeatures, w.nbytes);
    },
    matmulCols: (x, M, w, k0, kLen, out) => {
      const t0 = performance.now();
      inner.matmulCols(x, M, w, k0, kLen, out);
      add(phaseOf.get(w) ?? 'projections', performance.now() - t0, 2 * M * kLen * w.outFeatures, (w.nbytes * kLen) / w.inFeatures);
    },
    gemm: t('projections', inner.gemm.bind(inner), (_a, M, K, _b, N) => 2 * M * K * N, (_a, M, K, _b, N) => 4 * (M * K + K * N + M * N)),
    attention: t('attention', inner.attention.bind(inner), (_q, Mq, _k, _v, Mk, H, _Hkv, Dh) => 4 * Mq * Mk * H * Dh, (_q, Mq, _k, _v, Mk, H, Hkv, Dh) => 4 * (2 * Mk * Hkv * Dh + 2 * Mq * H * Dh)),
    attentionDelta: t('attention', inner.attentionDelta.bind(inner), (_q, Mq, _k, Mk, H, _Hkv, Dh, _m, cols) => 2 * Mq * H * Dh * (Mk + cols.length), (_q, Mq, _k, Mk, H, Hkv, Dh) => 4 * (Mk * Hkv * Dh + 2 * Mq * H * Dh)),
    attentionRescale: t('attention', inner.attentionRescale.bind(inner), (_q, Mq, _k, Mk, H, _Hkv, Dh, _m, cols) => 2 * Mq * H * Dh * (Mk + 3 * cols.length), (_q, Mq, _k, Mk, H, Hkv, Dh) => 4 * (Mk * Hkv * Dh + 2 * Mq * H * Dh)),
    logitStats: t('logit stats', inner.logitStats.bind(inner), (_l, M, V, _a, _p1, _p2, ne) => M * V * (ne ? 6 : 3), (_l, M, V) => 4 * M * V),
    cosineRows: t('norms+elementwise', inner.cosineRows.bind(inner), (_a, _b, M, D) => 6 * M * D, (_a, _b, M, D) => 8 * M * D),
    rmsnorm: t('norms+elementwise', inner.rmsnorm.bind(inner), (_x, M, D) => 4 * M * D, (_x, M, D) => 8 * M * D),
    rope: t('norms+elementwise', inner.rope.bind(inner), (_x, M, n, Dh) => 3 * M * n * Dh, (_x, M, n, Dh) => 8 * M * n * Dh),
    siluMul: t('norms+elementwise', inner.siluMul.bind(inner), (_g, _u, n) => 5 * n, (_g, _u, n) => 12 * n),
    add: t('norms+elementwise', inner.add.bind(inner), (_d, _s, n) => n, (_d, _s, n) => 12 * n),
  };
}

const dir = values['synthetic-8b'] ? syntheticLlada(Number(values.layers)) : values.model ?? BUNDLED_MODEL;
const rssBefore = process.memoryUsage().rss;
const backend = timed(loadNativeBackend());
const { model, config } = loadModel(dir, { backend, quant });
if (typeof globalThis.gc === 'function') globalThis.gc();
const rssAfter = process.memoryUsage().rss;
model.config; // loaded
const w = (model as unknown as { weights: { layers: { wq: PreparedWeight; wk: PreparedWeight; wv: PreparedWeight; wo: PreparedWeight; gate: PreparedWeight; up: PreparedWeight; down: PreparedWeight }[]; head: PreparedWeight } }).weights;
for (const l of w.layers) {
  for (const p of [l.wq, l.wk, l.wv, l.wo]) phaseOf.set(p, 'projections');
  for (const p of [l.gate, l.up, l.down]) phaseOf.set(p, 'ffn');
}
phaseOf.set(w.head, 'lm_head');

const G = Number(values.gen);
const P = Number(values.prompt);
const steps = Number(values.steps ?? G);
const ids: SpecialIds = { mask: config.maskTokenId, eos: config.eosTokenId, eot: null, bos: config.bosTokenId, pad: config.padTokenId };
const prompt = Array.from({ length: P }, (_, i) => (i * 7919 + 13) % Math.min(config.vocabSize, config.maskTokenId));
const options = resolveOptions(config, { genLength: G, steps, blockLength: Number(values.block) }, {});

interface StepTiming { ms: Map<Phase, number>; flops: Map<Phase, number>; bytes: Map<Phase, number>; total: number; sample: number; reused: Reused }
interface Reused { q: number; kv: number; kvRows: number; head: number; headRows: number }
function profile(oProj: 'reuse' | 'recompute' | null, maxSteps: number, knobs: Record<string, number> = {}): StepTiming[] {
  const accel = oProj ? resolveAccel(config, { method: 'dyllm', oProj, ...knobs }, options) : undefined;
  const run = new DenoiseRun(model, ids, { prompts: [prompt], options, accel });
  const out: StepTiming[] = [];
  for (let s = 0; s < maxSteps; s++) {
    acc.ms.clear(); acc.flops.clear(); acc.bytes.clear();
    const t0 = performance.now();
    const batch = run.prepare();
    if (!batch) break;
    const logits = run.forwardOwn(batch);
    const tf = performance.now();
    const ev = run.finish(logits, tf - t0);
    const a = ev.accel;
    const reused = { q: a?.qReused ?? 0, kv: a?.kvReused ?? 0, kvRows: a?.kvRows ?? 0, head: a?.headReused ?? 0, headRows: a?.headRows ?? 0 };
    out.push({ ms: new Map(acc.ms), flops: new Map(acc.flops), bytes: new Map(acc.bytes), total: performance.now() - t0, sample: ev.sampleMs, reused });
  }
  return out;
}

const nSteps = Math.min(steps, 12);
const dense = profile(null, 3).slice(1); // skip the first (allocation, JIT)
const sparseRecompute = profile('recompute', nSteps).slice(6); // after the 4 dense warm-up steps
const sparse = profile('reuse', nSteps).slice(6);
function average(xs: StepTiming[]): StepTiming {
  const r: StepTiming = { ms: new Map(), flops: new Map(), bytes: new Map(), total: 0, sample: 0, reused: { q: 0, kv: 0, kvRows: 0, head: 0, headRows: 0 } };
  for (const x of xs) {
    for (const k of Object.keys(r.reused) as (keyof Reused)[]) r.reused[k] += x.reused[k] / xs.length;
    for (const k of ['ms', 'flops', 'bytes'] as const) for (const [p, v] of x[k]) r[k].set(p, (r[k].get(p) ?? 0) + v / xs.length);
    r.total += x.total / xs.length;
    r.sample += x.sample / xs.length;
  }
  return r;
}

const phases: Phase[] = ['projections', 'attention', 'ffn', 'lm_head', 'norms+elementwise', 'logit stats'];
function table(name: string, t: StepTiming) {
  console.log(`\n${name}: ${t.total.toFixed(1)} ms per step`);
  console.log('| phase | ms | GFLOP | weight+act MB | bound ms | measured ÷ bound |');
  console.log('|---|---|---|---|---|---|');
  let kernel = 0;
  let boundSum = 0;
  for (const p of phases) {
    const ms = t.ms.get(p) ?? 0;
    const fl = t.flops.get(p) ?? 0;
    const by = t.bytes.get(p) ?? 0;
    const peak = p === 'attention' || p === 'norms+elementwise' || p === 'logit stats' ? peakBf16 / 2 : peakMatmul;
    const bound = Math.max(fl / peak, by / bw) * 1000;
    kernel += ms;
    boundSum += bound;
    console.log(`| ${p} | ${ms.toFixed(2)} | ${(fl / 1e9).toFixed(3)} | ${(by / 1e6).toFixed(1)} | ${bound.toFixed(2)} | ${bound > 0 ? (ms / bound).toFixed(2) : '-'} |`);
  }
  const other = t.total - kernel;
  const sampler = t.sample - (t.ms.get('logit stats') ?? 0); // the sampler's time includes the stats kernel
  console.log(`| sampler (JS) | ${sampler.toFixed(2)} | | | | |`);
  console.log(`| JS overhead (rest) | ${(other - sampler).toFixed(2)} | | | | |`);
  console.log(`| **step** | ${t.total.toFixed(2)} | | | ${boundSum.toFixed(2)} | ${(t.total / boundSum).toFixed(2)} |`);
  return t.total;
}

console.log(`# bench:step — ${dir} (${config.numLayers} layers, D ${config.hiddenSize}, V ${config.vocabSize}), prompt ${P}, gen ${G}, steps ${steps}, block ${values.block}`);
console.log(`machine: ${cpus()[0].model}, ${new Date().toISOString()}, backend ${backend.name}, --quant ${quant}, bf16 activations ${compensated ? 'split hi+lo' : 'rounded'}`);
console.log(`measured peaks: bf16 ${(peakBf16 / 1e9).toFixed(0)} GFLOP/s (matmul bound uses ${(peakMatmul / 1e9).toFixed(0)}), stream read ${(bw / 1e9).toFixed(1)} GB/s`);
if (values['synthetic-8b']) {
  const wbytes = model.weightBytes;
  console.log(`resident memory after load: ${(rssAfter / 2 ** 20).toFixed(0)} MiB (before ${(rssBefore / 2 ** 20).toFixed(0)} MiB) for ${(wbytes / 2 ** 20).toFixed(0)} MiB of weights: ${(rssAfter / (wbytes + 300 * 2 ** 20)).toFixed(2)} of (weights + 300 MiB)`);
  const c = config;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const params = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2) + c.hiddenSize
    + c.numLayers * (2 * c.hiddenSize * qDim + 2 * c.hiddenSize * kvDim + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize);
  console.log(`--quant ${quant}: ${(params / 1e9).toFixed(3)} B parameters; prepared weights ${(wbytes / params).toFixed(3)} bytes per parameter, resident memory after load ${(rssAfter / params).toFixed(3)} bytes per parameter (embedding dense bf16 in both)`);
}
const d = table('dense step', average(dense));
const sr = table('DyLLM sparse step (τ 0.99), o_proj recomputed for every query row (official)', average(sparseRecompute));
const s = table('DyLLM sparse step (τ 0.99), o_proj outputs reused (default)', average(sparse));
console.log(`\nDyLLM step ÷ dense step: ${(d / sr).toFixed(2)}x faster with o_proj recomputed, ${(d / s).toFixed(2)}x with o_proj reused`);
// Each variant is measured in `--rounds` pairs, the default sparse step right before it (so JIT warm-up and the
// shared machine's load hit both alike); medians of the pairs.
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const v of variants) {
  const base: number[] = [];
  const mine: number[] = [];
  let last: StepTiming | null = null;
  for (let r = 0; r < rounds; r++) {
    base.push(average(profile('reuse', nSteps).slice(6)).total);
    last = average(profile('reuse', nSteps, v.knobs).slice(6));
    mine.push(last.total);
  }
  table(`DyLLM sparse step (τ 0.99), o_proj reused, ${v.name} (last round)`, last!);
  const r = last!.reused;
  console.log(`${v.name}: median ${median(mine).toFixed(1)} ms vs default ${median(base).toFixed(1)} ms over ${rounds} paired rounds (${mine.map((x) => x.toFixed(1)).join(', ')} vs ${base.map((x) => x.toFixed(1)).join(', ')}): ${(median(base) / median(mine)).toFixed(2)}x; per step reused ${r.q.toFixed(1)} Q rows (Σ layers), ${r.kv.toFixed(1)} of ${r.kvRows.toFixed(1)} K/V rows, ${r.head.toFixed(1)} of ${r.headRows.toFixed(1)} logits rows`);
}

if (values.e2e) {
  // Whole generations, every step (the synthetic model never emits EOS): tokens/s and DyLLM ÷ dense.
  const whole = (oProj: 'reuse' | 'recompute' | null, knobs: Record<string, number> = {}): { ms: number; steps: number; salient: number } => {
    const accel = oProj ? resolveAccel(config, { method: 'dyllm', oProj, ...knobs }, options) : undefined;
    const run = new DenoiseRun(model, ids, { prompts: [prompt], options, accel });
    const t0 = performance.now();
    let n = 0;
    let ffn = 0;
    let denseFfn = 0;
    for (;;) {
      const batch = run.prepare();
      if (!batch) break;
      const logits = run.forwardOwn(batch);
      const ev = run.finish(logits, 0);
      ffn += ev.accel?.ffnRows ?? 0;
      denseFfn += ev.accel?.denseFfnRows ?? 0;
      n++;
    }
    return { ms: performance.now() - t0, steps: n, salient: denseFfn ? ffn / denseFfn : 1 };
  };
  const rD = whole(null);
  const rR = whole('recompute');
  const rU = whole('reuse');
  const tps = (r: { ms: number }) => (G / r.ms) * 1000;
  console.log(`\nwhole generation (prompt ${P}, gen ${G}, steps ${steps}, block ${values.block}):`);
  console.log('| method | steps | s | tokens/s | salient fraction | ÷ dense |');
  console.log('|---|---|---|---|---|---|');
  const rows: [string, { ms: number; steps: number; salient: number }][] = [['dense', rD], ['DyLLM τ 0.99, o_proj recomputed', rR], ['DyLLM τ 0.99, o_proj reused', rU]];
  for (const v of variants) rows.push([`DyLLM τ 0.99, o_proj reused, ${v.name}`, whole('reuse', v.knobs)]);
  for (const [name, r] of rows) {
    console.log(`| ${name} | ${r.steps} | ${(r.ms / 1000).toFixed(1)} | ${tps(r).toFixed(2)} | ${r.salient.toFixed(3)} | ${(tps(r) / tps(rD)).toFixed(2)}x |`);
  }
}
