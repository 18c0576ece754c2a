/**
 * Per-kernel times of the WebGPU kernels at small, forward-like shapes (bench/webgpu.ts runs them in the conformance
 * page, test/webgpu/page.ts). Each op is recorded once and finished (the first call: pipeline compile included),
 * then recorded `reps` times into one batch and finished once (one submit, one wait); the figure is the mean per op.
 * On SwiftShader these numbers describe the correctness path only, not a speed figure (docs/webgpu.md).
 * Browser-safe: no Node imports.
 */
import type { WebGpuKernels } from '../../src/kernels/webgpu/kernels.js';
import { mulberry32 } from './kernel-suite.js';

export interface KernelTiming {
  readonly op: string;
  readonly shape: string;
  /** The first call, pipeline compile included, in ms. */
  readonly firstMs: number;
  /** Mean per op of `reps` ops in one batch, in ms. */
  readonly meanMs: number;
}

function rand(n: number, rnd: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd() * 2 - 1;
  return a;
}

function bf16Weight(N: number, K: number, rnd: () => number): Uint16Array {
  const f = rand(N * K, rnd);
  const u = new Uint32Array(f.buffer);
  const w = new Uint16Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = u[i] >>> 16;
  return w;
}

export async function timeKernels(k: WebGpuKernels, reps: number): Promise<KernelTiming[]> {
  const rnd = mulberry32(7);
  const [D, F, H, Hkv, Dh, L, V] = [256, 512, 4, 2, 64, 64, 32_000];
  const out: KernelTiming[] = [];
  const time = async (op: string, shape: string, run: () => void): Promise<void> => {
    await k.finish();
    let t = performance.now();
    run();
    await k.finish();
    const firstMs = performance.now() - t;
    t = performance.now();
    for (let i = 0; i < reps; i++) run();
    await k.finish();
    out.push({ op, shape, firstMs, meanMs: (performance.now() - t) / reps });
  };
  const w = k.prepareWeight({ dtype: 'bf16', data: bf16Weight(F, D, rnd), outFeatures: F, inFeatures: D });
  const wf = k.prepareWeight({ dtype: 'f32', data: rand(F * D, rnd), outFeatures: F, inFeatures: D });
  const x = k.upload(rand(L * D, rnd));
  const y = k.tensor('f32', L * F);
  await time('matmul bf16 (skinny)', `M=1 K=${D} N=${F}`, () => k.matmul(x, 1, w, y));
  await time('matmul bf16 (tiled)', `M=${L} K=${D} N=${F}`, () => k.matmul(x, L, w, y));
  await time('matmul f32 (tiled)', `M=${L} K=${D} N=${F}`, () => k.matmul(x, L, wf, y));
  const q = k.upload(rand(L * H * Dh, rnd));
  const kk = k.upload(rand(L * Hkv * Dh, rnd));
  const v = k.upload(rand(L * Hkv * Dh, rnd));
  const mask = k.upload(Uint8Array.from({ length: L }, (_, i) => (i < L - 5 ? 1 : 0)));
  const ctx = k.tensor('f32', L * H * Dh);
  const lse = k.tensor('f32', L * H);
  await time('attention', `Mq=Mk=${L} H=${H} Hkv=${Hkv} Dh=${Dh}, key mask`, () => k.attention(q, L, kk, v, L, H, Hkv, Dh, mask, ctx, lse));
  const nc = 4;
  const cols = k.upload(Int32Array.from([3, 17, 40, 41]));
  const dv = k.upload(rand(nc * Hkv * Dh, rnd));
  await time('attentionDelta', `Mq=Mk=${L} H=${H} Dh=${Dh} nc=${nc}`, () => k.attentionDelta(q, L, kk, L, H, Hkv, Dh, mask, cols, dv, ctx));
  const kOld = k.upload(rand(nc * Hkv * Dh, rnd));
  const vOld = k.upload(rand(nc * Hkv * Dh, rnd));
  await time('attentionRescale', `Mq=Mk=${L} H=${H} Dh=${Dh} nc=${nc}`, () => k.attentionRescale(q, L, kk, L, H, Hkv, Dh, mask, cols, kOld, vOld, dv, lse, ctx, true));
  const nw = k.upload(rand(D, rnd));
  const h = k.tensor('f32', L * D);
  await time('rmsnorm', `M=${L} D=${D}`, () => k.rmsnorm(x, L, D, nw, 1e-6, h));
  const pos = k.upload(Int32Array.from({ length: L }, (_, i) => i));
  const cos = k.upload(rand(L * Dh / 2, rnd));
  const sin = k.upload(rand(L * Dh / 2, rnd));
  await time('rope', `M=${L} heads=${H} Dh=${Dh}`, () => k.rope(q, L, H, Dh, pos, cos, sin));
  const g = k.upload(rand(L * F, rnd));
  await time('siluMul', `n=${L * F}`, () => k.siluMul(g, y, L * F, g));
  await time('add', `n=${L * D}`, () => k.add(h, x, L * D));
  const cs = k.tensor('f32', L);
  await time('cosineRows', `M=${L} D=${H * Dh}`, () => k.cosineRows(q, ctx, L, H * Dh, cs));
  const rows = k.upload(Int32Array.from({ length: 16 }, (_, i) => (i * 5) % L));
  const gath = k.tensor('f32', 16 * D);
  await time('gatherRows', `16 rows of ${D}`, () => k.gatherRows(gath, x, rows, D));
  await time('scatterRows', `16 rows of ${D}`, () => k.scatterRows(h, gath, rows, D));
  const M = 8;
  const logits = k.upload(rand(M * V, rnd));
  const stats = k.tensor('u32', M * 4);
  await time('logitStats', `M=${M} V=${V}, entropy`, () => k.logitStats(logits, M, V, stats, true));
  for (const t of [x, y, q, kk, v, mask, ctx, lse, cols, dv, kOld, vOld, nw, h, pos, cos, sin, g, cs, rows, gath, logits, stats]) t.destroy();
  k.destroyWeight(w);
  k.destroyWeight(wf);
  return out;
}
