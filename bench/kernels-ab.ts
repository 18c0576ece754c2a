/**
 * Paired kernel A/B: `npm run bench:kernels:ab -- <other checkout>` (= node dist/bench/kernels-ab.js <dir>).
 *
 * Loads this checkout's native backend and another built checkout's (its dist/ and build/Release/, e.g. the base
 * commit in a temporary clone) into one process and calls every kernel alternately through each (the order flips
 * every pair, ≥ 15 pairs and 1.5 s per kernel), printing each side's median ms and the median of the per-pair ratios
 * this/other. On a shared machine the load then hits both sides alike, where separate `bench:kernels` runs differ by
 * whatever else ran meanwhile. Kernels: matmul at M ∈ {1, 8, 64, 256} × 4096 × 4096 (bf16 round, bf16 split, f32)
 * and the other kernels of bench/kernels.ts at LLaDA-8B shapes. Measure the noise floor by pointing it at a copy of
 * the same build. Env: DYLLM_ISA, DYLLM_THREADS (both sides read them).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { KernelBackend, PreparedWeight } from '../src/kernels/backend.js';
import * as here from '../src/kernels/native.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node dist/bench/kernels-ab.js <other checkout, built (dist/ and build/Release/)>');
  process.exit(2);
}
const other = (await import(pathToFileURL(resolve(dir, 'dist', 'src', 'kernels', 'native.js')).href)) as typeof here;
const isa = process.env.DYLLM_ISA || undefined;
const mk = (m: typeof here, mode: 'round' | 'split'): KernelBackend => m.loadNativeBackend({ isa, bf16Activations: mode });
const A = { round: mk(other, 'round'), split: mk(other, 'split') }; // the other checkout
const B = { round: mk(here, 'round'), split: mk(here, 'split') }; // this checkout

let seed = 1;
const rnd = (n: number, scale = 1): Float32Array => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = (seed / 4294967296 - 0.5) * 2 * scale;
  }
  return a;
};
const bf16 = (n: number): Uint16Array => {
  const u = new Uint32Array(rnd(n, 0.02).buffer);
  return Uint16Array.from(u, (x) => x >>> 16);
};

type Case = [name: string, other: () => void, mine: () => void];
const cases: Case[] = [];
const weights = new Map<string, [PreparedWeight, PreparedWeight]>();
function weight(dtype: 'bf16' | 'f32', N: number, K: number): [PreparedWeight, PreparedWeight] {
  const key = `${dtype}:${N}x${K}`;
  let w = weights.get(key);
  if (!w) {
    const data = dtype === 'bf16' ? bf16(N * K) : rnd(N * K, 0.02);
    const host = { dtype, data, outFeatures: N, inFeatures: K };
    w = [A.round.prepareWeight(host), B.round.prepareWeight(host)];
    weights.set(key, w);
  }
  return w;
}
for (const [dtype, mode] of [['bf16', 'round'], ['bf16', 'split'], ['f32', 'round']] as const) {
  for (const M of [1, 8, 64, 256]) {
    const [wa, wb] = weight(dtype, 4096, 4096);
    const x = rnd(M * 4096), out = new Float32Array(M * 4096);
    cases.push([`matmul ${dtype}${dtype === 'bf16' ? ` (${mode})` : ''} ${M} × 4096 × 4096`,
      () => A[mode].matmul(x, M, wa, out), () => B[mode].matmul(x, M, wb, out)]);
  }
}
const H = 32, Dh = 128, D = H * Dh, Mq = 257, Mk = 320, nc = 32, V = 126464, M = 256, FF = 12288;
const q = rnd(Mq * D), k = rnd(Mk * D), v = rnd(Mk * D), ctx = new Float32Array(Mq * D), lse = new Float32Array(Mq * H);
const cols = Int32Array.from({ length: nc }, (_, i) => (i * 7) % Mk);
const dv = rnd(nc * D, 0.1), kOld = rnd(nc * D), vOld = rnd(nc * D), probs = new Float32Array(Mq * H * nc);
const logits = rnd(32 * V, 8), am = new Int32Array(32), p1 = new Float64Array(32), p2 = new Float64Array(32), ne = new Float64Array(32);
const x = rnd(M * D), wn = rnd(D), y = new Float32Array(M * D);
const theta = rnd(1024 * (Dh / 2), Math.PI), cs = theta.map(Math.cos), sn = theta.map(Math.sin); // rotations: rope keeps norms
const pos = Int32Array.from({ length: M }, (_, i) => i);
const g = rnd(64 * FF), u = rnd(64 * FF), gu = new Float32Array(64 * FF), cosOut = new Float32Array(M);
const gb = rnd(4096 * 256), gOut = new Float32Array(M * 256);
const [woA, woB] = weight('bf16', D, D);
const xc = rnd(nc * Dh), oc = new Float32Array(nc * D);
B.round.attention(q, Mq, k, v, Mk, H, H, Dh, null, ctx, lse);
const base = ctx.slice(), baseLse = lse.slice();
const both = (name: string, f: (be: KernelBackend, wo: PreparedWeight) => void): void => {
  cases.push([name, () => f(A.round, woA), () => f(B.round, woB)]);
};
both(`attention ${Mq} q × ${Mk} k × ${H} heads × Dh ${Dh}, lse`, (be) => be.attention(q, Mq, k, v, Mk, H, H, Dh, null, ctx, lse));
both(`attentionDelta, ${nc} columns, probs`, (be) => be.attentionDelta(q, Mq, k, Mk, H, H, Dh, null, cols, dv, ctx, probs));
both(`attentionRescale (exact Z), ${nc} columns`, (be) => {
  ctx.set(base);
  lse.set(baseLse);
  be.attentionRescale(q, Mq, k, Mk, H, H, Dh, null, cols, kOld, vOld, v, lse, ctx, false);
});
both(`logitStats 32 × ${V}`, (be) => be.logitStats(logits, 32, V, am, p1, p2, null));
both(`logitStats + entropy 32 × ${V}`, (be) => be.logitStats(logits, 32, V, am, p1, p2, ne));
both(`rmsnorm ${M} × ${D}`, (be) => be.rmsnorm(x, M, D, wn, 1e-5, y));
both(`rope ${M} × ${H} heads × ${Dh}`, (be) => be.rope(y, M, H, Dh, pos, cs, sn));
both(`siluMul 64 × ${FF}`, (be) => be.siluMul(g, u, 64 * FF, gu));
both(`add ${M} × ${D}`, (be) => be.add(y, x, M * D));
both(`cosineRows ${M} × ${D}`, (be) => be.cosineRows(x, y, M, D, cosOut));
both(`gemm ${M} × 4096 × 256`, (be) => be.gemm(x, M, 4096, gb, 256, gOut));
both(`matmulCols (bf16) ${nc} × ${Dh} of ${D} × ${D}`, (be, wo) => be.matmulCols(xc, nc, wo, 2 * Dh, Dh, oc));

const median = (a: number[]): number => {
  const s = [...a].sort((p, r) => p - r);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(`paired A/B: this checkout vs ${resolve(dir)} — backend ${B.round.name}, DYLLM_THREADS=${process.env.DYLLM_THREADS ?? '(all)'}`);
console.log('');
console.log('| kernel | other ms (median) | this ms (median) | this/other (median of pairs) |');
console.log('|---|---|---|---|');
const ratios: number[] = [];
for (const [name, fa, fb] of cases) {
  fa(); fb(); fa(); fb(); // warm-up
  const ta: number[] = [], tb: number[] = [], r: number[] = [];
  const t0 = performance.now();
  for (let i = 0; ta.length < 200 && (ta.length < 15 || performance.now() - t0 < 1500); i++) {
    const [f1, f2] = i % 2 === 0 ? [fa, fb] : [fb, fa];
    const a = performance.now();
    f1();
    const b = performance.now();
    f2();
    const c = performance.now();
    const [da, db] = i % 2 === 0 ? [b - a, c - b] : [c - b, b - a];
    ta.push(da);
    tb.push(db);
    r.push(db / da);
  }
  ratios.push(median(r));
  console.log(`| ${name} | ${median(ta).toFixed(3)} | ${median(tb).toFixed(3)} | ${median(r).toFixed(3)} |`);
}
const gm = Math.exp(ratios.reduce((s, t) => s + Math.log(t), 0) / ratios.length);
console.log('');
console.log(`Geometric mean of the ${ratios.length} per-kernel ratios this/other: ${gm.toFixed(3)}`);
