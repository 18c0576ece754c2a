/**
 * Kernel benchmark: `npm run bench:kernels` (= tsc -p . && node dist/bench/kernels.js).
 *
 * Prints the machine's measured peaks (vdpbf16ps, fp32 FMA, stream read over 1 GiB, all from microbenchmarks inside
 * the addon), then bf16 and f32 matmul GFLOP/s and GB/s of weights for M ∈ {1, 8, 64, 256} × 4096×4096 and
 * 256 × 4096×12288 (K = 4096), with % of the compute peak and, for the GEMV shapes (M = 1, 8), % of the stream
 * bandwidth. Method: 1 warm-up, then ≥ 5 timed calls and ≥ 0.5 s (≤ 50 calls); median. Weight copies are rotated so
 * that the weights streamed per call exceed the 32 MiB L3 (the GEMV numbers are DRAM numbers, not cache-hot).
 * Each result is spot-checked against float64 dot products. bf16 weights run in both activation modes: `round`
 * (the default: activations rounded to bf16 once) and `split` (hi + lo bf16 parts, fp32-accurate, two dot
 * products per product). Then the other kernels at LLaDA-8B shapes (H = 32, Dh = 128, D = 4096, V = 126464): attention,
 * DyLLM's attentionDelta / attentionRescale, logitStats, the row-wise kernels, gemm and matmulCols — median ms of
 * ≥ 5 calls and ≥ 0.3 s after a warm-up. Section `quant` (docs/quantization.md): int8 and q4 weights against bf16
 * (round) at M ∈ {1, 16, 64, 256} × the 8B shapes N×K 4096×4096, 12288×4096, 4096×12288, interleaved in
 * DYLLM_BENCH_ROUNDS rounds (default 3; each a median of ≥ 5 calls and ≥ 0.3 s, weights rotated past the L3), reported
 * as the median over rounds with the min–max spread, and the speed-up over bf16 of the same round. Env: DYLLM_ISA,
 * DYLLM_THREADS, DYLLM_BENCH_SECTIONS (comma list of `peaks`, `matmul`, `other`, `quant`; default the first three).
 */
import { loadNativeAddon, loadNativeBackend, loadNativeTier } from '../src/kernels/native.js';
import type { PreparedWeight } from '../src/kernels/backend.js';

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

const addon = loadNativeAddon();
const be = loadNativeBackend({ bf16Activations: 'round' });
const beSplit = loadNativeBackend({ bf16Activations: 'split' });
const tier = loadNativeTier(be.name.replace(/^native-/, ''));
const threads = addon.threads();
const sections = new Set((process.env.DYLLM_BENCH_SECTIONS || 'peaks,matmul,other').split(',').map((x) => x.trim()));
for (const x of sections) {
  if (x !== 'peaks' && x !== 'matmul' && x !== 'other' && x !== 'quant') {
    console.error(`DYLLM_BENCH_SECTIONS: unknown section '${x}' (expected a comma list of peaks, matmul, other, quant)`);
    process.exit(2);
  }
}

console.log(`dyllm kernel benchmark — backend ${be.name}, ${threads} thread(s), node ${process.version}`);

// ---- peaks ----
function peak(kind: 'bf16' | 'fma', nt: number): number {
  tier.peak(kind, nt, 2e6); // warm-up / clock ramp
  const runs: number[] = [];
  for (let i = 0; i < 7; i++) runs.push(tier.peak(kind, nt, kind === 'bf16' ? 1e7 : 2e7));
  return Math.max(...runs); // a peak: best of 7 (medians are used for the matmul timings)
}
let bf16Peak = NaN;
let bf16Peak1 = NaN;
let fmaPeak1 = NaN;
let fmaPeak = NaN;
let streamBw = NaN;
let streamRuns: number[] = [];
if (sections.has('peaks')) {
  try {
    bf16Peak1 = peak('bf16', 1);
    bf16Peak = peak('bf16', threads);
  } catch {
    /* tier without vdpbf16ps */
  }
  fmaPeak1 = peak('fma', 1);
  fmaPeak = peak('fma', threads);
  try {
    streamRuns = tier.streamRead(1 << 30, threads, 7);
    streamBw = median(streamRuns.slice(1));
  } catch {
    /* portable tier: no stream kernel */
  }
}
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
if (sections.has('peaks')) {
  console.log('');
  console.log(`| peak (microbenchmark) | 1 thread | ${threads} thread(s) |`);
  console.log('|---|---|---|');
  console.log(`| bf16 vdpbf16ps zmm, 24 chains (GFLOP/s, best of 7) | ${f1(bf16Peak1)} | **${f1(bf16Peak)}** |`);
  console.log(`| fp32 FMA zmm, 12 chains (GFLOP/s, best of 7) | ${f1(fmaPeak1)} | **${f1(fmaPeak)}** |`);
  console.log(`| stream read, 1 GiB, 4 MiB chunks claimed dynamically (GB/s, median of ${Math.max(0, streamRuns.length - 1)} after 1 warm-up; runs ${streamRuns.map((x) => x.toFixed(1)).join(', ')}) | | **${f1(streamBw)}** |`);
}

// ---- matmul ----
function randomWeight(dtype: 'bf16' | 'f32', N: number, K: number, seed: number): Uint16Array | Float32Array {
  const n = N * K;
  const tbl = new Float32Array(65536 + 7);
  let s = seed >>> 0;
  for (let i = 0; i < tbl.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    tbl[i] = (s / 4294967296 - 0.5) * (2 / Math.sqrt(K));
  }
  if (dtype === 'f32') {
    const d = new Float32Array(n);
    for (let i = 0; i < n; i += 65536) d.set(tbl.subarray(i % 7, (i % 7) + Math.min(65536, n - i)), i);
    return d;
  }
  const bits = new Uint16Array(tbl.buffer);
  const hi = new Uint16Array(tbl.length);
  for (let i = 0; i < tbl.length; i++) hi[i] = bits[2 * i + 1]; // truncated bf16 of the table
  const d = new Uint16Array(n);
  for (let i = 0; i < n; i += 65536) d.set(hi.subarray(i % 7, (i % 7) + Math.min(65536, n - i)), i);
  return d;
}

function valueAt(dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array, i: number): number {
  if (dtype === 'f32') return data[i];
  return new Float32Array(new Uint32Array([data[i] << 16]).buffer)[0];
}

interface Row { dtype: string; mode: string; M: number; K: number; N: number; ms: number; gflops: number; gbs: number; pctPeak: number; pctStream: number; err: number }
const rows: Row[] = [];
const shapes: Array<[number, number, number]> = [[1, 4096, 4096], [8, 4096, 4096], [64, 4096, 4096], [256, 4096, 4096], [256, 4096, 12288]];

const cache = new Map<string, { ws: PreparedWeight[]; host: Uint16Array | Float32Array }>();
for (const [dtype, mode] of sections.has('matmul') ? [['bf16', 'round'], ['bf16', 'split'], ['f32', '']] as const : []) {
  const bk = mode === 'split' ? beSplit : be;
  for (const [M, K, N] of shapes) {
    const key = `${dtype}:${N}x${K}`;
    const bytes = N * K * (dtype === 'bf16' ? 2 : 4);
    const copies = Math.max(1, Math.min(8, Math.ceil((256 << 20) / bytes))); // >= 256 MiB rotated: 8x the L3
    let entry = cache.get(key);
    if (!entry || entry.ws.length < copies) {
      const host = randomWeight(dtype, N, K, 42);
      const ws: PreparedWeight[] = [];
      for (let c = 0; c < copies; c++) ws.push(be.prepareWeight({ dtype, data: host, outFeatures: N, inFeatures: K }));
      entry = { ws, host };
      cache.set(key, entry);
    }
    const { ws, host } = entry;
    const x = new Float32Array(M * K);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) ;
    const out = new Float32Array(M * N);
    let c = 0;
    bk.matmul(x, M, ws[c++ % ws.length], out); // warm-up
    const times: number[] = [];
    const t0 = performance.now();
    while (times.length < 50 && (times.length < 5 || performance.now() - t0 < 500)) {
      const w = ws[c++ % ws.length];
      const t = performance.now();
      bk.matmul(x, M, w, out);
      times.push(performance.now() - t);
    }
    const ms = median(times);
    // spot check against float64 dot products (the kernel rounds x to bf16 for bf16 weights)
    let maxd = 0;
    let maxr = 0;
    for (let s = 0; s < 16; s++) {
      const m = (s * 7919) % M;
      const n = (s * 104729) % N;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k] * valueAt(dtype, host, n * K + k);
      maxd = Math.max(maxd, Math.abs(acc - out[m * N + n]));
      maxr = Math.max(maxr, Math.abs(acc));
    }
    const gflops = (2 * M * N * K) / (ms * 1e6);
    const gbs = bytes / (ms * 1e6);
    const pk = dtype === 'bf16' && Number.isFinite(bf16Peak) ? bf16Peak : fmaPeak;
    rows.push({ dtype, mode, M, K, N, ms, gflops, gbs, pctPeak: (100 * gflops) / pk, pctStream: (100 * gbs) / streamBw, err: maxd / maxr });
  }
}

if (sections.has('matmul')) {
  console.log('');
  console.log('| weights | M × K × N | ms (median) | GFLOP/s | GB/s of weights | % of compute peak | % of stream BW | spot err |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const gemv = r.M <= 8;
    const pk = r.dtype === 'bf16' && Number.isFinite(bf16Peak) ? 'bf16' : 'fp32';
    console.log(
      `| ${r.dtype}${r.mode ? ` (${r.mode})` : ''} | ${r.M} × ${r.K} × ${r.N} | ${r.ms.toFixed(2)} | ${r.gflops.toFixed(1)} | ${r.gbs.toFixed(1)} | ` +
        `${gemv ? `(${r.pctPeak.toFixed(0)} %)` : `**${r.pctPeak.toFixed(0)} %** of ${pk}`} | ${gemv ? `**${r.pctStream.toFixed(0)} %**` : `(${r.pctStream.toFixed(0)} %)`} | ${r.err.toExponential(1)} |`,
    );
}
console.log('');
console.log(`Peaks used: bf16 ${f1(bf16Peak)} GFLOP/s, fp32 ${f1(fmaPeak)} GFLOP/s, stream ${f1(streamBw)} GB/s (${threads} threads).`);
}

// ---- quantised weights against bf16 ----
if (sections.has('quant')) {
  const rounds = Number(process.env.DYLLM_BENCH_ROUNDS ?? 3);
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 20) {
    console.error(`DYLLM_BENCH_ROUNDS: expected an integer 1..20, found '${process.env.DYLLM_BENCH_ROUNDS}'`);
    process.exit(2);
  }
  const formats = ['bf16', 'int8', 'q4'] as const;
  const bytesPer = { bf16: 2, int8: 1 + 4 / 4096, q4: 0.5 + 2 / 32 } as const;
  const nk: Array<[number, number]> = [[4096, 4096], [12288, 4096], [4096, 12288]];
  const Ms = [1, 16, 64, 256];
  // ms[format][shape][M] = one median per round
  const ms = new Map<string, number[]>();
  const errs = new Map<string, number>();
  for (const [N, K] of nk) {
    const host = randomWeight('bf16', N, K, 42) as Uint16Array;
    const ws = new Map<string, PreparedWeight[]>();
    for (const f of formats) {
      const copies = Math.max(1, Math.min(8, Math.ceil((256 << 20) / (N * K * bytesPer[f]))));
      const list: PreparedWeight[] = [];
      for (let c = 0; c < copies; c++) list.push(be.prepareWeight({ dtype: 'bf16', data: host, outFeatures: N, inFeatures: K, quant: f === 'bf16' ? null : f }));
      ws.set(f, list);
    }
    for (let r = 0; r < rounds; r++) {
      for (const M of Ms) {
        const x = new Float32Array(M * K);
        for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
        const out = new Float32Array(M * N);
        for (const f of formats) {
          const list = ws.get(f)!;
          let c = 0;
          const t = timeMs(() => be.matmul(x, M, list[c++ % list.length], out));
          const key = `${f}:${N}x${K}:${M}`;
          ms.set(key, [...(ms.get(key) ?? []), t]);
          if (r === 0) {
            // relative error against float64 dot products with the bf16 weights, 16 spot values
            let maxd = 0;
            let maxr = 0;
            for (let s = 0; s < 16; s++) {
              const m = (s * 7919) % M;
              const n = (s * 104729) % N;
              let acc = 0;
              for (let k = 0; k < K; k++) acc += x[m * K + k] * valueAt('bf16', host, n * K + k);
              maxd = Math.max(maxd, Math.abs(acc - out[m * N + n]));
              maxr = Math.max(maxr, Math.abs(acc));
            }
            errs.set(key, maxd / maxr);
          }
        }
      }
    }
  }
  console.log('');
  console.log(`Quantised weights vs bf16 (round), ${rounds} interleaved rounds: median GFLOP/s [min–max], speed-up over bf16 (median of per-round ratios), spot error vs f64 with the bf16 weights`);
  console.log('');
  console.log('| N × K | M | bf16 GFLOP/s | int8 GFLOP/s | q4 GFLOP/s | int8 ÷ bf16 | q4 ÷ bf16 | err bf16 / int8 / q4 |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const [N, K] of nk) {
    for (const M of Ms) {
      const g = (f: string): number[] => ms.get(`${f}:${N}x${K}:${M}`)!.map((t) => (2 * M * N * K) / (t * 1e6));
      const cell = (f: string): string => {
        const v = g(f);
        return `${median(v).toFixed(1)} [${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}]`;
      };
      const ratio = (f: string): string => median(g(f).map((v, i) => v / g('bf16')[i])).toFixed(2) + 'x';
      const e = formats.map((f) => errs.get(`${f}:${N}x${K}:${M}`)!.toExponential(1)).join(' / ');
      console.log(`| ${N} × ${K} | ${M} | ${cell('bf16')} | ${cell('int8')} | ${cell('q4')} | ${ratio('int8')} | ${ratio('q4')} | ${e} |`);
    }
  }
}

// ---- the other kernels ----
/** Median ms of fn() over ≥ 5 calls and ≥ 0.3 s (≤ 200 calls), after one warm-up call. */
function timeMs(fn: () => void): number {
  fn();
  const times: number[] = [];
  const t0 = performance.now();
  while (times.length < 200 && (times.length < 5 || performance.now() - t0 < 300)) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

if (sections.has('other')) {
  let seed = 12345;
  const rnd = (n: number, scale = 1): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      a[i] = (seed / 4294967296 - 0.5) * 2 * scale;
    }
    return a;
  };
  const H = 32, Dh = 128, D = H * Dh, Mq = 257, Mk = 320, nc = 32, V = 126464;
  const q = rnd(Mq * D), k = rnd(Mk * D), v = rnd(Mk * D), ctx = new Float32Array(Mq * D), lse = new Float32Array(Mq * H);
  const cols = Int32Array.from({ length: nc }, (_, i) => (i * 7) % Mk);
  const dv = rnd(nc * D, 0.1), kOld = rnd(nc * D), vOld = rnd(nc * D);
  const probs = new Float32Array(Mq * H * nc);
  const logits = rnd(32 * V, 8);
  const am = new Int32Array(32), p1 = new Float64Array(32), p2 = new Float64Array(32), ne = new Float64Array(32);
  const M = 256, FF = 12288;
  const x = rnd(M * D), wn = rnd(D), y = new Float32Array(M * D);
  const theta = rnd(1024 * (Dh / 2), Math.PI), cs = theta.map(Math.cos), sn = theta.map(Math.sin); // rotations: rope keeps norms
  const pos = Int32Array.from({ length: M }, (_, i) => i);
  const g = rnd(64 * FF), u = rnd(64 * FF), gu = new Float32Array(64 * FF), cosOut = new Float32Array(M);
  const gb = rnd(4096 * 256), gOut = new Float32Array(M * 256);
  const wo = be.prepareWeight({ dtype: 'bf16', data: randomWeight('bf16', D, D, 7) as Uint16Array, outFeatures: D, inFeatures: D });
  const xc = rnd(nc * Dh), oc = new Float32Array(nc * D);
  be.attention(q, Mq, k, v, Mk, H, H, Dh, null, ctx, lse);
  const base = ctx.slice(), baseLse = lse.slice();
  const cases: Array<[string, string, () => void]> = [
    ['attention', `${Mq} q × ${Mk} k × ${H} heads × Dh ${Dh}, lse`, () => be.attention(q, Mq, k, v, Mk, H, H, Dh, null, ctx, lse)],
    ['attentionDelta', `${Mq} × ${Mk} × ${H} heads, ${nc} columns, probs`, () => be.attentionDelta(q, Mq, k, Mk, H, H, Dh, null, cols, dv, ctx, probs)],
    ['attentionRescale (exact Z)', `${Mq} × ${Mk} × ${H} heads, ${nc} columns`, () => {
      ctx.set(base);
      lse.set(baseLse);
      be.attentionRescale(q, Mq, k, Mk, H, H, Dh, null, cols, kOld, vOld, v, lse, ctx, false);
    }],
    ['logitStats', `32 × ${V}`, () => be.logitStats(logits, 32, V, am, p1, p2, null)],
    ['logitStats + entropy', `32 × ${V}`, () => be.logitStats(logits, 32, V, am, p1, p2, ne)],
    ['rmsnorm', `${M} × ${D}`, () => be.rmsnorm(x, M, D, wn, 1e-5, y)],
    ['rope', `${M} × ${H} heads × ${Dh}`, () => be.rope(y, M, H, Dh, pos, cs, sn)],
    ['siluMul', `64 × ${FF}`, () => be.siluMul(g, u, 64 * FF, gu)],
    ['add', `${M} × ${D}`, () => be.add(y, x, M * D)],
    ['cosineRows', `${M} × ${D}`, () => be.cosineRows(x, y, M, D, cosOut)],
    ['gemm (fp32 operands)', `${M} × 4096 × 256`, () => be.gemm(x, M, 4096, gb, 256, gOut)],
    ['matmulCols (bf16)', `${nc} × ${Dh} of ${D} × ${D}`, () => be.matmulCols(xc, nc, wo, 2 * Dh, Dh, oc)],
  ];
  console.log('');
  console.log('| kernel | shape | ms (median) |');
  console.log('|---|---|---|');
  for (const [name, shape, fn] of cases) console.log(`| ${name} | ${shape} | ${timeMs(fn).toFixed(3)} |`);
}
