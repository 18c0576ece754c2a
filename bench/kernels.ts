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
 * products per product). Env: DYLLM_ISA, DYLLM_THREADS.
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
try {
  bf16Peak1 = peak('bf16', 1);
  bf16Peak = peak('bf16', threads);
} catch {
  /* tier without vdpbf16ps */
}
const fmaPeak1 = peak('fma', 1);
const fmaPeak = peak('fma', threads);
let streamBw = NaN;
let streamRuns: number[] = [];
try {
  streamRuns = tier.streamRead(1 << 30, threads, 7);
  streamBw = median(streamRuns.slice(1));
} catch {
  /* portable tier: no stream kernel */
}
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
console.log('');
console.log(`| peak (microbenchmark) | 1 thread | ${threads} thread(s) |`);
console.log('|---|---|---|');
console.log(`| bf16 vdpbf16ps zmm, 24 chains (GFLOP/s, best of 7) | ${f1(bf16Peak1)} | **${f1(bf16Peak)}** |`);
console.log(`| fp32 FMA zmm, 12 chains (GFLOP/s, best of 7) | ${f1(fmaPeak1)} | **${f1(fmaPeak)}** |`);
console.log(`| stream read, 1 GiB, 4 MiB chunks claimed dynamically (GB/s, median of ${Math.max(0, streamRuns.length - 1)} after 1 warm-up; runs ${streamRuns.map((x) => x.toFixed(1)).join(', ')}) | | **${f1(streamBw)}** |`);

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
for (const [dtype, mode] of [['bf16', 'round'], ['bf16', 'split'], ['f32', '']] as const) {
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
