/**
 * The kernel conformance suite, shared by every backend and every place it runs: the native tiers in Node
 * (test/kernels.conformance.test.ts), the WebGPU kernels in headless Chromium (test/webgpu/page.ts, driven by
 * test/webgpu.conformance.test.ts) and through the `webgpu` package in Node (test/webgpu.node.test.ts). It imports
 * nothing from Node, so the browser loads the same compiled module as plain ESM.
 *
 * Each case compares one op of a backend against the ReferenceBackend (float64 oracle) on random, odd shapes. Error
 * metric: max|Δ| / max|ref| over the compared elements (NaN anywhere counts as a failure). Tolerances:
 *   - f32 paths (f32 matmul, attention, rmsnorm, rope, siluMul, add): 1e-5;
 *   - bf16 matmul with activations that are already bf16 values: 1e-5 (products are exact, only summation differs);
 *   - bf16 matmul with arbitrary f32 activations: 1e-2 — the native kernels round activations to bf16 (RNE, relative
 *     error <= 2^-9 per element) before the dot products, the reference does not.
 *   - logitStats: per backend (`SuiteTolerances`): the host backends compute float64 statistics (argmax exact; p1
 *     1e-12 relative, p2 1e-12 absolute as in test/invariants/logit-stats.test.ts; negEntropy 1e-9 relative + 1e-12
 *     absolute — the absolute part is the entropy's share of the p1 tolerance, which matters on near-certain rows
 *     where |negEntropy| is tiny and the reference's own sequential sum is the larger error). WebGPU has no float64:
 *     see WEBGPU_TOLERANCES.
 * Every output buffer is a subarray view with a nonzero byteOffset and NaN-filled guard elements on both sides: an
 * unwritten element is NaN (fails the metric) and a write past the view changes a guard (fails the guard check).
 * The SABOTAGE cases run the same checks against deliberately broken backends and require them to fail.
 *
 * Backends may be synchronous (KernelBackend) or asynchronous (every op returns a Promise: the WebGPU host
 * backend); the checks await every op.
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../../src/kernels/backend.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';

export const TOL_F32 = 1e-5;
export const TOL_BF16_EXACT_INPUT = 1e-5;
export const TOL_BF16 = 1e-2;

/** logitStats tolerances: p1 relative, p2 absolute, negEntropy relative + absolute. */
export interface SuiteTolerances {
  readonly p1Rel: number;
  readonly p2Abs: number;
  readonly entropyRel: number;
  readonly entropyAbs: number;
}

/** Float64 statistics (reference, native). */
export const HOST_TOLERANCES: SuiteTolerances = { p1Rel: 1e-12, p2Abs: 1e-12, entropyRel: 1e-9, entropyAbs: 1e-12 };

/**
 * WebGPU computes the statistics in f32 (WGSL has no float64): each e^x and log(x) carries a few ulp of error (WGSL
 * bounds them by 3 + 2·|x| ulp and by 3 ulp or 2^-21 absolute near 1) and the row sums round in f32, where the host
 * backends sum in float64. Largest errors measured on SwiftShader over the suite's rows (V up to 151,936; plus
 * V = 32,000 and 126,464): p1 1.4e-7 relative, p2 1.0e-7 absolute, negEntropy 7.6e-7 relative on ordinary rows and
 * 1.6e-7 absolute on near-certain rows (|negEntropy| ~ 1e-3, where the relative error is large). The bounds leave a
 * factor of 6 to 13 over those. The argmax stays exact: it compares the f32 logits themselves.
 */
export const WEBGPU_TOLERANCES: SuiteTolerances = { p1Rel: 1e-6, p2Abs: 1e-6, entropyRel: 1e-5, entropyAbs: 1e-6 };

// ---- backends the suite accepts -----------------------------------------------------------------------------------

type Ops = Exclude<keyof KernelBackend, 'name' | 'prepareWeight'>;

/** A KernelBackend whose ops may also return Promises. */
export type SuiteBackend = { readonly name: string; prepareWeight(w: HostWeight): PreparedWeight } & {
  [K in Ops]: (...args: Parameters<KernelBackend[K]>) => void | Promise<void>;
};

// ---- assertions (no node:assert in the browser) ------------------------------------------------------------------

export class CheckFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

function ok(cond: unknown, message: string): asserts cond {
  if (!cond) throw new CheckFailure(message);
}

function equal(got: unknown, want: unknown, message: string): void {
  if (!Object.is(got, want)) throw new CheckFailure(`${message}: ${String(got)} !== ${String(want)}`);
}

/** The promise (or call) must fail: the suite detects a broken kernel. */
async function rejects(run: () => Promise<unknown>, what: string): Promise<void> {
  try {
    await run();
  } catch {
    return;
  }
  throw new CheckFailure(`the suite did not detect: ${what}`);
}

// ---- helpers ------------------------------------------------------------------------------------------------------

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const GUARD = 5;

/** A Float32Array view of n elements at a nonzero byteOffset inside a larger buffer; guards are NaN. */
export function view(n: number, fill?: (i: number) => number): Float32Array {
  const buf = new Float32Array(n + 2 * GUARD + 3).fill(NaN);
  const v = buf.subarray(GUARD + 3, GUARD + 3 + n);
  if (fill) for (let i = 0; i < n; i++) v[i] = fill(i);
  return v;
}

export function randView(n: number, rnd: () => number, scale = 1): Float32Array {
  return view(n, () => (rnd() * 2 - 1) * scale);
}

export function assertGuards(v: Float32Array, what: string): void {
  const whole = new Float32Array(v.buffer);
  const start = v.byteOffset / 4;
  for (let i = 0; i < start; i++) ok(Number.isNaN(whole[i]), `${what}: wrote before the view (element ${i - start})`);
  for (let i = start + v.length; i < whole.length; i++) ok(Number.isNaN(whole[i]), `${what}: wrote past the view (+${i - start - v.length})`);
}

/** max|a-b| / max|b| over n elements; NaN/Infinity mismatches give Infinity. Exact infinities must match. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, n = b.length): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (!Number.isFinite(y)) {
      if (x !== y) return Infinity;
      continue;
    }
    if (!Number.isFinite(x)) return Infinity;
    maxDiff = Math.max(maxDiff, Math.abs(x - y));
    maxRef = Math.max(maxRef, Math.abs(y));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  ok(e <= tol, `${what}: max|Δ|/max|ref| = ${e.toExponential(3)} > ${tol.toExponential(1)}`);
}

export function f32ToBf16(f: number): number {
  const u = new Uint32Array(new Float32Array([f]).buffer)[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function bf16ToF32(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0];
}
/** Rounds every element to the nearest bf16 value (in place). */
export function roundToBf16(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) x[i] = bf16ToF32(f32ToBf16(x[i]));
  return x;
}

export function makeWeight(dtype: 'bf16' | 'f32', N: number, K: number, rnd: () => number): HostWeight {
  const scale = 1 / Math.sqrt(K);
  if (dtype === 'f32') {
    const data = new Float32Array(N * K);
    for (let i = 0; i < data.length; i++) data[i] = (rnd() * 2 - 1) * scale;
    return { dtype, data, outFeatures: N, inFeatures: K };
  }
  const data = new Uint16Array(N * K);
  for (let i = 0; i < data.length; i++) data[i] = f32ToBf16((rnd() * 2 - 1) * scale);
  return { dtype, data, outFeatures: N, inFeatures: K };
}

// ---- checks (each throws a CheckFailure on mismatch; also used by the sabotage cases) ----------------------------

const ref = new ReferenceBackend();

export interface MatmulCase {
  M: number; K: number; N: number; dtype: 'bf16' | 'f32'; bias: boolean; gather: boolean; bf16Input?: boolean; seed: number;
}

export async function checkMatmul(be: SuiteBackend, c: MatmulCase): Promise<void> {
  const rnd = mulberry32(c.seed);
  const hw = makeWeight(c.dtype, c.N, c.K, rnd);
  const wRef = ref.prepareWeight(hw);
  const wBe = be.prepareWeight({ ...hw, data: hw.dtype === 'bf16' ? new Uint16Array(hw.data as Uint16Array) : new Float32Array(hw.data as Float32Array) });
  equal(wBe.outFeatures, c.N, 'outFeatures');
  equal(wBe.inFeatures, c.K, 'inFeatures');
  equal(wBe.dtype, c.dtype, 'dtype');
  const bytesPer = c.dtype === 'bf16' ? 2 : 4;
  ok(wBe.nbytes >= c.N * c.K * bytesPer, 'nbytes covers the weight');
  const xRowsTotal = c.gather ? c.M + 5 : c.M;
  const x = randView(xRowsTotal * c.K, rnd, 2);
  if (c.bf16Input) roundToBf16(x);
  let xRows: Int32Array | null = null;
  if (c.gather) {
    const rowsBuf = new Int32Array(c.M + 4).fill(-1);
    xRows = rowsBuf.subarray(2, 2 + c.M);
    for (let m = 0; m < c.M; m++) xRows[m] = Math.floor(rnd() * xRowsTotal);
    if (c.M > 1) xRows[c.M - 1] = xRows[0]; // repeated row
  }
  const bias = c.bias ? randView(c.N, rnd) : null;
  const want = new Float32Array(c.M * c.N);
  ref.matmul(x, c.M, wRef, want, bias, xRows);
  const out = view(c.M * c.N);
  await be.matmul(x, c.M, wBe, out, bias, xRows);
  assertGuards(out, 'matmul out');
  const tol = c.dtype === 'f32' ? TOL_F32 : c.bf16Input ? TOL_BF16_EXACT_INPUT : TOL_BF16;
  assertClose(out, want, tol, `matmul ${c.dtype} M=${c.M} K=${c.K} N=${c.N} bias=${c.bias} gather=${c.gather}`);
}

export interface AttnCase {
  Mq: number; Mk: number; H: number; Hkv: number; Dh: number;
  mask: 'none' | 'some' | 'block' | 'first-block' | 'all'; lse: boolean; seed: number; qScale?: number; probs?: boolean;
}

export async function checkAttention(be: SuiteBackend, c: AttnCase): Promise<void> {
  const rnd = mulberry32(c.seed);
  const q = randView(c.Mq * c.H * c.Dh, rnd, c.qScale ?? 1);
  const k = randView(c.Mk * c.Hkv * c.Dh, rnd, 1);
  // Later keys get larger scores for some rows so the online max moves between blocks.
  for (let j = 0; j < c.Mk; j++) for (let d = 0; d < c.Hkv * c.Dh; d++) k[j * c.Hkv * c.Dh + d] *= 1 + (2 * j) / c.Mk;
  const v = randView(c.Mk * c.Hkv * c.Dh, rnd, 1);
  let keyMask: Uint8Array | null = null;
  if (c.mask !== 'none') {
    const mb = new Uint8Array(c.Mk + 3).fill(1);
    keyMask = mb.subarray(1, 1 + c.Mk);
    for (let j = 0; j < c.Mk; j++) {
      if (c.mask === 'some') keyMask[j] = rnd() < 0.3 ? 0 : 1;
      else if (c.mask === 'block') keyMask[j] = j >= 64 && j < 128 ? 0 : rnd() < 0.2 ? 0 : 1;
      else if (c.mask === 'first-block') keyMask[j] = j < 64 ? 0 : 1;
      else keyMask[j] = 0;
    }
  }
  const n = c.Mq * c.H * c.Dh;
  const want = new Float32Array(n);
  const wantLse = new Float32Array(c.Mq * c.H);
  ref.attention(q, c.Mq, k, v, c.Mk, c.H, c.Hkv, c.Dh, keyMask, want, wantLse);
  const out = view(n);
  const lse = c.lse ? view(c.Mq * c.H) : null;
  await be.attention(q, c.Mq, k, v, c.Mk, c.H, c.Hkv, c.Dh, keyMask, out, lse);
  const what = `attention Mq=${c.Mq} Mk=${c.Mk} H=${c.H} Hkv=${c.Hkv} Dh=${c.Dh} mask=${c.mask}`;
  assertGuards(out, `${what} out`);
  assertClose(out, want, TOL_F32, `${what} out`);
  if (lse) {
    assertGuards(lse, `${what} lse`);
    assertClose(lse, wantLse, TOL_F32, `${what} lse`);
  }
  if (c.mask === 'all') {
    for (let i = 0; i < n; i++) equal(out[i], 0, `${what}: fully masked output must be 0`);
    if (lse) for (let i = 0; i < lse.length; i++) equal(lse[i], -Infinity, `${what}: fully masked lse must be -Infinity`);
  }
}

export async function checkAttentionDelta(be: SuiteBackend, c: AttnCase & { nc: number }): Promise<void> {
  const rnd = mulberry32(c.seed);
  const q = randView(c.Mq * c.H * c.Dh, rnd, c.qScale ?? 1);
  const k = randView(c.Mk * c.Hkv * c.Dh, rnd, 1);
  let keyMask: Uint8Array | null = null;
  if (c.mask !== 'none') {
    keyMask = new Uint8Array(c.Mk + 2).subarray(2);
    for (let j = 0; j < c.Mk; j++) keyMask[j] = c.mask === 'all' ? 0 : rnd() < 0.3 ? 0 : 1;
  }
  const cols = new Int32Array(c.nc + 1).subarray(1);
  for (let i = 0; i < c.nc; i++) cols[i] = Math.floor(rnd() * c.Mk);
  const dv = randView(c.nc * c.Hkv * c.Dh, rnd, 1);
  const ctx = randView(c.Mq * c.H * c.Dh, rnd, 0.1);
  const want = new Float32Array(ctx);
  const np = c.Mq * c.H * c.nc;
  const wantProbs = new Float32Array(np);
  ref.attentionDelta(q, c.Mq, k, c.Mk, c.H, c.Hkv, c.Dh, keyMask, cols, dv, want, wantProbs);
  const probs = c.probs ? view(np, () => 7) : null; // stale values must be overwritten (hidden keys: 0)
  await be.attentionDelta(q, c.Mq, k, c.Mk, c.H, c.Hkv, c.Dh, keyMask, cols, dv, ctx, probs);
  const what = `attentionDelta Mq=${c.Mq} Mk=${c.Mk} H=${c.H} Hkv=${c.Hkv} Dh=${c.Dh} nc=${c.nc} mask=${c.mask}`;
  assertGuards(ctx, 'attentionDelta ctx');
  assertClose(ctx, want, TOL_F32, what);
  if (probs) {
    assertGuards(probs, 'attentionDelta probs');
    assertClose(probs, wantProbs, TOL_F32, `${what} probs`);
    if (c.mask === 'all') for (let i = 0; i < np; i++) equal(probs[i], 0, `${what}: hidden keys have probability 0`);
  }
}

export interface RescaleCase { Mq: number; Mk: number; H: number; Hkv: number; Dh: number; nc: number; mask: 'none' | 'some'; incremental: boolean; drift: boolean; seed: number }

/**
 * attentionRescale as the cached forward uses it: C_old and lse from an attention over the old keys, then nc
 * columns of K and V change (a masked one among them when the mask is on); with `drift` the query moves a little
 * too (the rows DyLLM treats as unchanged). Compared with the reference's update of the same inputs.
 */
export async function checkAttentionRescale(be: SuiteBackend, c: RescaleCase): Promise<void> {
  const rnd = mulberry32(c.seed);
  const kv = c.Hkv * c.Dh;
  const qOld = randView(c.Mq * c.H * c.Dh, rnd, 2);
  const k = randView(c.Mk * kv, rnd, 2);
  const v = randView(c.Mk * kv, rnd, 1);
  let keyMask: Uint8Array | null = null;
  if (c.mask === 'some') {
    keyMask = new Uint8Array(c.Mk + 1).subarray(1);
    for (let j = 0; j < c.Mk; j++) keyMask[j] = rnd() < 0.25 ? 0 : 1;
  }
  const ctx = view(c.Mq * c.H * c.Dh);
  const lse = view(c.Mq * c.H);
  ref.attention(qOld, c.Mq, k, v, c.Mk, c.H, c.Hkv, c.Dh, keyMask, ctx, lse);
  const q = c.drift ? view(qOld.length, (i) => qOld[i] + (rnd() - 0.5) * 0.05) : qOld;
  const cols = new Int32Array(c.nc);
  const used = new Set<number>();
  for (let i = 0; i < c.nc; i++) {
    let j = Math.floor(rnd() * c.Mk);
    while (used.has(j)) j = (j + 1) % c.Mk;
    used.add(j);
    cols[i] = j;
  }
  const kOld = view(c.nc * kv);
  const vOld = view(c.nc * kv);
  const vNew = randView(c.nc * kv, rnd, 1);
  const kNew = k.slice();
  cols.forEach((j, i) => {
    kOld.set(k.subarray(j * kv, (j + 1) * kv), i * kv);
    vOld.set(v.subarray(j * kv, (j + 1) * kv), i * kv);
    for (let d = 0; d < kv; d++) kNew[j * kv + d] = k[j * kv + d] + (rnd() - 0.5);
  });
  const wantCtx = new Float32Array(ctx);
  const wantLse = new Float32Array(lse);
  ref.attentionRescale(q, c.Mq, kNew, c.Mk, c.H, c.Hkv, c.Dh, keyMask, cols, kOld, vOld, vNew, wantLse, wantCtx, c.incremental);
  await be.attentionRescale(q, c.Mq, kNew, c.Mk, c.H, c.Hkv, c.Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, c.incremental);
  const what = `attentionRescale Mq=${c.Mq} Mk=${c.Mk} H=${c.H} Hkv=${c.Hkv} Dh=${c.Dh} nc=${c.nc} mask=${c.mask} incremental=${c.incremental} drift=${c.drift}`;
  assertGuards(ctx, `${what} ctx`);
  assertGuards(lse, `${what} lse`);
  assertClose(ctx, wantCtx, TOL_F32, `${what} ctx`);
  assertClose(lse, wantLse, TOL_F32, `${what} lse`);
}

export interface ColsCase { M: number; K: number; N: number; k0: number; kLen: number; dtype: 'bf16' | 'f32'; bf16Input?: boolean; seed: number }

export async function checkMatmulCols(be: SuiteBackend, c: ColsCase): Promise<void> {
  const rnd = mulberry32(c.seed);
  const hw = makeWeight(c.dtype, c.N, c.K, rnd);
  const wRef = ref.prepareWeight(hw);
  const wBe = be.prepareWeight({ ...hw, data: hw.dtype === 'bf16' ? new Uint16Array(hw.data as Uint16Array) : new Float32Array(hw.data as Float32Array) });
  const x = randView(c.M * c.kLen, rnd, 2);
  if (c.bf16Input) roundToBf16(x);
  const want = new Float32Array(c.M * c.N);
  ref.matmulCols(x, c.M, wRef, c.k0, c.kLen, want);
  // The oracle itself: the same product through matmul with x widened to all K features (zeros outside the slice).
  const wide = new Float32Array(c.M * c.K);
  for (let m = 0; m < c.M; m++) wide.set(x.subarray(m * c.kLen, (m + 1) * c.kLen), m * c.K + c.k0);
  const viaMatmul = new Float32Array(c.M * c.N);
  ref.matmul(wide, c.M, wRef, viaMatmul);
  assertClose(want, viaMatmul, 1e-12, 'reference matmulCols vs matmul');
  const out = view(c.M * c.N);
  await be.matmulCols(x, c.M, wBe, c.k0, c.kLen, out);
  assertGuards(out, 'matmulCols out');
  const tol = c.dtype === 'f32' || c.bf16Input ? TOL_F32 : TOL_BF16;
  assertClose(out, want, tol, `matmulCols ${c.dtype} M=${c.M} K=${c.K} N=${c.N} cols [${c.k0}, ${c.k0 + c.kLen})`);
}

export async function checkGemm(be: SuiteBackend, M: number, K: number, N: number, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const a = randView(M * K, rnd, 1);
  const b = randView(K * N, rnd, 1);
  const want = new Float32Array(M * N);
  ref.gemm(a, M, K, b, N, want);
  const out = view(M * N);
  await be.gemm(a, M, K, b, N, out);
  assertGuards(out, 'gemm out');
  assertClose(out, want, TOL_F32, `gemm M=${M} K=${K} N=${N}`);
}

export async function checkCosineRows(be: SuiteBackend, M: number, D: number, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const a = randView(M * D, rnd, 1);
  const b = view(M * D, (i) => a[i] * 0.5 + (rnd() - 0.5) * 0.3); // correlated rows: cosines spread over (0, 1)
  if (M > 1) for (let d = 0; d < D; d++) a[D + d] = 0; // a zero row: clamped norm
  const want = new Float32Array(M);
  ref.cosineRows(a, b, M, D, want);
  const out = view(M);
  await be.cosineRows(a, b, M, D, out);
  assertGuards(out, 'cosineRows out');
  assertClose(out, want, TOL_F32, `cosineRows M=${M} D=${D}`);
}

export async function checkRmsnorm(be: SuiteBackend, M: number, D: number, alias: boolean, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const x = randView(M * D, rnd, 3);
  const w = randView(D, rnd, 1);
  const eps = 1e-6;
  const want = new Float32Array(M * D);
  ref.rmsnorm(x, M, D, w, eps, want);
  const out = alias ? x : view(M * D);
  await be.rmsnorm(x, M, D, w, eps, out);
  assertGuards(out, 'rmsnorm out');
  assertClose(out, want, TOL_F32, `rmsnorm M=${M} D=${D} alias=${alias}`);
}

function ropeTables(maxPos: number, Dh: number): { cos: Float32Array; sin: Float32Array } {
  const h = Dh / 2;
  const cos = view(maxPos * h);
  const sin = view(maxPos * h);
  for (let p = 0; p < maxPos; p++) {
    for (let j = 0; j < h; j++) {
      const a = p / Math.pow(10000, (2 * j) / Dh);
      cos[p * h + j] = Math.cos(a);
      sin[p * h + j] = Math.sin(a);
    }
  }
  return { cos, sin };
}

export async function checkRope(be: SuiteBackend, M: number, nHeads: number, Dh: number, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const maxPos = 97;
  const { cos, sin } = ropeTables(maxPos, Dh);
  const posBuf = new Int32Array(M + 2);
  const positions = posBuf.subarray(1, 1 + M);
  for (let m = 0; m < M; m++) positions[m] = Math.floor(rnd() * maxPos);
  positions[0] = maxPos - 1;
  const x = randView(M * nHeads * Dh, rnd, 2);
  const want = new Float32Array(x);
  ref.rope(want, M, nHeads, Dh, positions, cos, sin);
  await be.rope(x, M, nHeads, Dh, positions, cos, sin);
  assertGuards(x, 'rope x');
  assertClose(x, want, TOL_F32, `rope M=${M} nHeads=${nHeads} Dh=${Dh}`);
}

export async function checkSiluMul(be: SuiteBackend, n: number, alias: 'none' | 'gate' | 'up', seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const gate = randView(n, rnd, 12);
  if (n > 4) { gate[0] = -100; gate[1] = 100; gate[2] = 0; gate[3] = -30; }
  const up = randView(n, rnd, 2);
  const want = new Float32Array(n);
  ref.siluMul(gate, up, n, want);
  const out = alias === 'gate' ? gate : alias === 'up' ? up : view(n);
  await be.siluMul(gate, up, n, out);
  assertGuards(out, 'siluMul out');
  assertClose(out, want, TOL_F32, `siluMul n=${n} alias=${alias}`);
}

export async function checkAdd(be: SuiteBackend, n: number, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const dst = randView(n, rnd);
  const src = randView(n, rnd);
  const want = new Float32Array(dst);
  ref.add(want, src, n);
  await be.add(dst, src, n);
  assertGuards(dst, 'add dst');
  assertClose(dst, want, TOL_F32, `add n=${n}`);
}

/**
 * Logits rows for logitStats, one kind per row (m % 7): random; a tied maximum (lowest index must win) with the
 * second copy in another lane; −Infinity in every other entry; a huge dynamic range (±3e38 mixed with O(1) values,
 * the maximum at the last index); integer values (ties everywhere); a near-certain row (one logit 25 above the
 * rest); values at the float32 extremes of exp's range differences (−1000 … 0).
 */
export function logitRows(M: number, V: number, rnd: () => number): Float32Array {
  const x = view(M * V, () => (rnd() * 2 - 1) * 6);
  for (let m = 0; m < M; m++) {
    const o = m * V;
    const at = (f: number) => Math.min(V - 1, Math.floor(f * V));
    switch (m % 7) {
      case 1: if (V > 1) { const i = at(rnd() * 0.5); const j = Math.max(i + 1, at(0.5 + rnd() * 0.5)); x[o + i] = x[o + Math.min(j, V - 1)] = 20; } break;
      case 2: for (let v = 0; v < V; v += 2) x[o + v] = -Infinity; break;
      case 3: for (let v = 0; v < V; v++) if (rnd() < 0.5) x[o + v] = (rnd() * 2 - 1) * 3e38; x[o + V - 1] = 3.3e38; break;
      case 4: for (let v = 0; v < V; v++) x[o + v] = Math.round((rnd() * 2 - 1) * 3); break;
      case 5: x[o + at(rnd())] = 25; break;
      case 6: for (let v = 0; v < V; v++) x[o + v] = -1000 * rnd() ** 3; break;
    }
  }
  return x;
}

export interface LogitStatsOut { argmax: Int32Array; p1: Float64Array; p2: Float64Array; negEntropy: Float64Array | null }

async function runLogitStats(be: SuiteBackend, x: Float32Array, M: number, V: number, entropy: boolean): Promise<LogitStatsOut> {
  const o = { argmax: new Int32Array(M).fill(-7), p1: new Float64Array(M).fill(NaN), p2: new Float64Array(M).fill(NaN), negEntropy: entropy ? new Float64Array(M).fill(NaN) : null };
  await be.logitStats(x, M, V, o.argmax, o.p1, o.p2, o.negEntropy);
  return o;
}

/** NaN where the reference has NaN, else within tol(want). */
function closeOrNaN(got: number, want: number, tol: number): boolean {
  return Number.isNaN(want) ? Number.isNaN(got) : Math.abs(got - want) <= tol;
}

function assertLogitStats(got: LogitStatsOut, want: LogitStatsOut, M: number, what: string, tol: SuiteTolerances): void {
  ok([...got.argmax].join() === [...want.argmax].join(), `${what}: argmax [${[...got.argmax]}] vs [${[...want.argmax]}]`);
  for (let m = 0; m < M; m++) {
    ok(closeOrNaN(got.p1[m], want.p1[m], tol.p1Rel * Math.max(1, want.p1[m])), `${what} row ${m}: p1 ${got.p1[m]} vs ${want.p1[m]}`);
    ok(closeOrNaN(got.p2[m], want.p2[m], tol.p2Abs), `${what} row ${m}: p2 ${got.p2[m]} vs ${want.p2[m]}`);
    if (want.negEntropy) {
      const g = got.negEntropy![m], w = want.negEntropy[m];
      ok(closeOrNaN(g, w, tol.entropyRel * Math.abs(w) + tol.entropyAbs), `${what} row ${m}: negEntropy ${g} vs ${w}`);
    }
  }
}

export async function checkLogitStats(be: SuiteBackend, M: number, V: number, seed: number, tol: SuiteTolerances): Promise<void> {
  const x = logitRows(M, V, mulberry32(seed));
  const want = await runLogitStats(ref, x, M, V, true);
  assertLogitStats(await runLogitStats(be, x, M, V, true), want, M, `logitStats M=${M} V=${V}`, tol);
  const noEnt = await runLogitStats(be, x, M, V, false);
  assertLogitStats(noEnt, { ...want, negEntropy: null }, M, `logitStats M=${M} V=${V} without entropy`, tol);
}

/** Rows the reference turns into NaN probabilities (NaN entries, an infinite or absent maximum), and V = 1. */
export async function checkLogitStatsSpecial(be: SuiteBackend, tol: SuiteTolerances): Promise<void> {
  const rows: number[][] = [
    [5], [-Infinity], [NaN], [-3, NaN, 2, 2], [NaN, NaN, NaN], [-Infinity, -Infinity, -Infinity], [1, Infinity, 2],
    [Infinity, 0, Infinity], [0, -0, 0], [-0, 0, -0], [-Infinity, 7, -Infinity, 7], Array.from({ length: 37 }, (_, i) => (i === 33 ? NaN : i % 5)),
  ];
  for (const row of rows) {
    const x = view(row.length, (i) => row[i]);
    assertLogitStats(await runLogitStats(be, x, 1, row.length, true), await runLogitStats(ref, x, 1, row.length, true), 1, `logitStats [${row.join(', ')}]`, tol);
  }
}

// ---- the shared suite --------------------------------------------------------------------------------------------

export interface SuiteCase {
  readonly name: string;
  run(be: SuiteBackend, tol: SuiteTolerances): Promise<void>;
}

const MATMUL_MS = [1, 2, 3, 7, 13, 64, 67];
const MATMUL_KN: Array<[number, number]> = [[5, 3], [37, 77], [130, 45], [301, 290]];

export const KERNEL_SUITE: readonly SuiteCase[] = [
  {
    name: 'matmul f32 and bf16, odd shapes, bias, xRows gather',
    async run(be) {
      let seed = 1;
      for (const dtype of ['f32', 'bf16'] as const) {
        for (const M of MATMUL_MS) {
          for (const [K, N] of MATMUL_KN) {
            if (M * K * N > 2e6 && M !== 67) continue; // keep the float64 reference fast: big K,N only at M=67
            const variant = seed % 4;
            await checkMatmul(be, { M, K, N, dtype, bias: variant & 1 ? true : false, gather: variant & 2 ? true : false, seed: seed++ });
          }
        }
      }
      // K deeper than one cache block (native: 4096 bf16 / 2048 f32 k per block) with several row tiles
      await checkMatmul(be, { M: 13, K: 4500, N: 40, dtype: 'bf16', bias: true, gather: false, seed: seed++ });
      await checkMatmul(be, { M: 13, K: 4500, N: 40, dtype: 'bf16', bias: false, gather: true, bf16Input: true, seed: seed++ });
      await checkMatmul(be, { M: 14, K: 2100, N: 35, dtype: 'f32', bias: true, gather: true, seed: seed++ });
      // large K and N at several M (crosses panels, row tiles, and the threaded paths)
      for (const M of [1, 8, 13, 67]) {
        await checkMatmul(be, { M, K: 601, N: 333, dtype: 'bf16', bias: true, gather: M === 13, seed: seed++ });
        await checkMatmul(be, { M, K: 601, N: 333, dtype: 'f32', bias: M === 8, gather: M === 67, seed: seed++ });
      }
    },
  },
  {
    name: 'matmul bf16 with bf16-exact activations matches to f32 accuracy',
    async run(be) {
      let seed = 100;
      for (const M of [1, 3, 12, 13, 67]) {
        for (const [K, N] of [[37, 77], [301, 290]] as Array<[number, number]>) {
          await checkMatmul(be, { M, K, N, dtype: 'bf16', bias: true, gather: M === 3, bf16Input: true, seed: seed++ });
        }
      }
    },
  },
  {
    name: 'matmul edge cases: M=0, K=1, N=1',
    async run(be) {
      await checkMatmul(be, { M: 3, K: 1, N: 1, dtype: 'bf16', bias: true, gather: false, seed: 7 });
      await checkMatmul(be, { M: 3, K: 1, N: 33, dtype: 'f32', bias: false, gather: true, seed: 8 });
      const w = be.prepareWeight({ dtype: 'f32', data: new Float32Array(6), outFeatures: 2, inFeatures: 3 });
      await be.matmul(new Float32Array(0), 0, w, new Float32Array(0));
    },
  },
  {
    name: 'attention: GQA, Dh 16/64/128, key masks, lse',
    async run(be) {
      let seed = 200;
      const shapes: Array<[number, number, number, number, number]> = [
        // Mq, Mk, H, Hkv, Dh
        [1, 1, 4, 4, 16],
        [3, 5, 4, 4, 16],
        [7, 70, 6, 2, 64],
        [13, 150, 6, 2, 128],
        [2, 200, 4, 4, 24],
        [5, 129, 6, 2, 16],
      ];
      for (const [Mq, Mk, H, Hkv, Dh] of shapes) {
        for (const mask of ['none', 'some', 'block', 'first-block', 'all'] as const) {
          if ((mask === 'block' || mask === 'first-block') && Mk < 129) continue;
          await checkAttention(be, { Mq, Mk, H, Hkv, Dh, mask, lse: seed % 3 !== 0, seed: seed++, qScale: seed % 2 ? 4 : 1 });
        }
      }
    },
  },
  {
    name: 'attentionDelta (DyLLM context update) and cosineRows',
    async run(be) {
      let seed = 250;
      for (const [Mq, Mk, H, Hkv, Dh, nc] of [[1, 1, 4, 4, 16, 1], [3, 40, 6, 2, 64, 5], [13, 150, 4, 4, 128, 17], [2, 70, 6, 2, 16, 0]]) {
        for (const mask of ['none', 'some', 'all'] as const) {
          await checkAttentionDelta(be, { Mq, Mk, H, Hkv, Dh, nc, mask, lse: false, seed: seed++, qScale: seed % 2 ? 3 : 1, probs: seed % 3 !== 0 });
        }
      }
      for (const [M, D] of [[1, 1], [3, 7], [13, 4096], [40, 2050]]) await checkCosineRows(be, M, D, seed++);
    },
  },
  {
    name: 'attentionRescale (corrected update), exact and incremental normaliser, drifted queries',
    async run(be) {
      let seed = 700;
      for (const [Mq, Mk, H, Hkv, Dh, nc] of [[1, 1, 4, 4, 16, 1], [3, 40, 6, 2, 64, 5], [7, 130, 4, 4, 128, 17], [2, 70, 6, 2, 16, 0]]) {
        for (const incremental of [false, true]) {
          await checkAttentionRescale(be, { Mq, Mk, H, Hkv, Dh, nc, mask: seed % 2 ? 'some' : 'none', incremental, drift: seed % 3 === 0, seed: seed++ });
        }
      }
    },
  },
  {
    name: 'matmulCols (a slice of the input features, read in place) and gemm (two run-time operands)',
    async run(be) {
      let seed = 270;
      for (const dtype of ['f32', 'bf16'] as const) {
        for (const [M, K, N, k0, kLen] of [[1, 64, 33, 0, 16], [3, 64, 70, 16, 16], [13, 256, 96, 128, 128], [20, 320, 320, 256, 64], [5, 37, 9, 30, 7], [2, 8, 5, 2, 0]]) {
          await checkMatmulCols(be, { M, K, N, k0, kLen, dtype, seed: seed++ });
          if (dtype === 'bf16') await checkMatmulCols(be, { M, K, N, k0, kLen, dtype, bf16Input: true, seed: seed++ });
        }
      }
      for (const [M, K, N] of [[1, 1, 1], [3, 7, 33], [13, 96, 70], [67, 160, 257], [257, 640, 64]]) await checkGemm(be, M, K, N, seed++);
    },
  },
  {
    name: 'rmsnorm (also in place)',
    async run(be) {
      let seed = 300;
      for (const [M, D] of [[1, 1], [3, 7], [2, 64], [13, 100], [5, 4096], [64, 1027]]) {
        await checkRmsnorm(be, M, D, false, seed++);
        await checkRmsnorm(be, M, D, true, seed++);
      }
    },
  },
  {
    name: 'rope at arbitrary positions',
    async run(be) {
      let seed = 400;
      for (const Dh of [6, 16, 64, 128]) for (const [M, nH] of [[1, 1], [7, 3], [67, 4]]) await checkRope(be, M, nH, Dh, seed++);
    },
  },
  {
    name: 'siluMul (also aliased) and add',
    async run(be) {
      let seed = 500;
      for (const n of [1, 15, 16, 17, 1000, 200_003]) {
        await checkSiluMul(be, n, 'none', seed++);
        await checkSiluMul(be, n, n % 2 ? 'gate' : 'up', seed++);
        await checkAdd(be, n, seed++);
      }
    },
  },
  {
    name: 'logitStats: ties, −Infinity, huge ranges, V = 1 and odd V, NaN rows',
    async run(be, tol) {
      let seed = 600;
      for (const V of [1, 2, 15, 16, 17, 63, 64, 65, 100, 1031, 4099]) await checkLogitStats(be, 7, V, seed++, tol);
      await checkLogitStats(be, 14, 33, seed++, tol);
      await checkLogitStats(be, 7, 151_936, seed++, tol);
      await checkLogitStatsSpecial(be, tol);
    },
  },
];

// ---- the suite can fail: the same checks reject deliberately broken backends -----------------------------------

export function sabotaged(be: SuiteBackend, patch: Partial<SuiteBackend>): SuiteBackend {
  return Object.assign(Object.create(be) as SuiteBackend, patch);
}

export const SABOTAGE_SUITE: readonly SuiteCase[] = [
  {
    name: 'matmul: one perturbed element, a missing bias, an ignored xRows, an unwritten tail all fail',
    async run(be) {
      const c: MatmulCase = { M: 13, K: 130, N: 45, dtype: 'f32', bias: true, gather: true, seed: 9 };
      await checkMatmul(be, c); // sanity: the real one passes
      await rejects(() => checkMatmul(sabotaged(be, {
        matmul: async (x, M, w, out, bias, xRows) => { await be.matmul(x, M, w, out, bias, xRows); out[M * w.outFeatures - 1] *= 1.0001; },
      }), c), 'a perturbed element');
      await rejects(() => checkMatmul(sabotaged(be, { matmul: (x, M, w, out, _b, xRows) => be.matmul(x, M, w, out, null, xRows) }), c), 'a missing bias');
      await rejects(() => checkMatmul(sabotaged(be, { matmul: (x, M, w, out, bias) => be.matmul(x, M, w, out, bias, null) }), c), 'an ignored xRows');
      await rejects(() => checkMatmul(sabotaged(be, {
        matmul: (x, M, w, out, bias, xRows) => be.matmul(x, M - 1, w, out, bias, xRows),
      }), c), 'an unwritten tail');
      // bf16: the kernel must use every k (dropping the last one is caught even at the loose tolerance)
      const cb: MatmulCase = { M: 7, K: 37, N: 77, dtype: 'bf16', bias: false, gather: false, seed: 10 };
      await checkMatmul(be, cb);
      await rejects(() => checkMatmul(sabotaged(be, {
        prepareWeight: (w) => {
          const d = new Uint16Array(w.data as Uint16Array);
          for (let n = 0; n < w.outFeatures; n++) d[n * w.inFeatures + w.inFeatures - 1] = 0;
          return be.prepareWeight({ ...w, data: d });
        },
      }), cb), 'a dropped last k');
    },
  },
  {
    name: 'attention: an ignored mask, a wrong GQA head mapping and a bad lse fail',
    async run(be) {
      const c: AttnCase = { Mq: 3, Mk: 70, H: 6, Hkv: 2, Dh: 16, mask: 'some', lse: true, seed: 11 };
      await checkAttention(be, c);
      await rejects(() => checkAttention(sabotaged(be, {
        attention: (q, Mq, k, v, Mk, H, Hkv, Dh, _m, out, lse) => be.attention(q, Mq, k, v, Mk, H, Hkv, Dh, null, out, lse),
      }), c), 'an ignored mask');
      await rejects(() => checkAttention(sabotaged(be, {
        attention: (q, Mq, k, v, Mk, H, _Hkv, Dh, m, out, lse) => {
          // treat every query head as its own KV head over the first Hkv heads' data: wrong mapping
          const kk = new Float32Array(Mk * H * Dh); const vv = new Float32Array(Mk * H * Dh);
          for (let j = 0; j < Mk; j++) for (let h = 0; h < H; h++) for (let d = 0; d < Dh; d++) {
            kk[(j * H + h) * Dh + d] = k[(j * 2 + (h % 2)) * Dh + d]; vv[(j * H + h) * Dh + d] = v[(j * 2 + (h % 2)) * Dh + d];
          }
          return be.attention(q, Mq, kk, vv, Mk, H, H, Dh, m, out, lse);
        },
      }), c), 'a wrong GQA mapping');
      await rejects(() => checkAttention(sabotaged(be, {
        attention: async (q, Mq, k, v, Mk, H, Hkv, Dh, m, out, lse) => { await be.attention(q, Mq, k, v, Mk, H, Hkv, Dh, m, out, lse); if (lse) lse[1] += 1e-3; },
      }), c), 'a bad lse');
    },
  },
  {
    name: 'attentionDelta, attentionRescale, matmulCols, gemm and cosineRows: an ignored mask or a perturbed row fails',
    async run(be) {
      const c = { Mq: 3, Mk: 40, H: 6, Hkv: 2, Dh: 16, nc: 6, mask: 'some' as const, lse: false, seed: 12, qScale: 3 };
      await checkAttentionDelta(be, c);
      await rejects(() => checkAttentionDelta(sabotaged(be, {
        attentionDelta: (q, Mq, k, Mk, H, Hkv, Dh, _m, cols, dv, ctx) => be.attentionDelta(q, Mq, k, Mk, H, Hkv, Dh, null, cols, dv, ctx),
      }), c), 'attentionDelta with an ignored mask');
      const cp = { ...c, probs: true };
      await checkAttentionDelta(be, cp);
      await rejects(() => checkAttentionDelta(sabotaged(be, {
        attentionDelta: async (q, Mq, k, Mk, H, Hkv, Dh, m, cols, dv, ctx, probs) => { await be.attentionDelta(q, Mq, k, Mk, H, Hkv, Dh, m, cols, dv, ctx, probs); if (probs) probs[probs.length - 1] *= 1.001; },
      }), cp), 'a perturbed probability');
      const cr: RescaleCase = { Mq: 3, Mk: 40, H: 6, Hkv: 2, Dh: 16, nc: 4, mask: 'some', incremental: false, drift: true, seed: 16 };
      await checkAttentionRescale(be, cr);
      await rejects(() => checkAttentionRescale(sabotaged(be, {
        attentionRescale: (q, Mq, k, Mk, H, Hkv, Dh, m, cols, kOld, vOld, vNew, lse, ctx) => be.attentionRescale(q, Mq, k, Mk, H, Hkv, Dh, m, cols, kOld, vOld, vNew, lse, ctx, true),
      }), cr), 'the incremental normaliser where the exact one is asked for (drifted queries)');
      await rejects(() => checkAttentionRescale(sabotaged(be, {
        attentionRescale: (q, Mq, k, Mk, H, Hkv, Dh, m, cols, kOld, _vOld, vNew, lse, ctx, inc) => be.attentionRescale(q, Mq, k, Mk, H, Hkv, Dh, m, cols, kOld, vNew, vNew, lse, ctx, inc),
      }), cr), 'old values ignored');
      const cc: ColsCase = { M: 5, K: 64, N: 40, k0: 16, kLen: 16, dtype: 'bf16', bf16Input: true, seed: 14 };
      await checkMatmulCols(be, cc);
      await rejects(() => checkMatmulCols(sabotaged(be, { matmulCols: (x, M, w, k0, kLen, out) => be.matmulCols(x, M, w, k0 + 2, kLen, out) }), cc), 'shifted columns');
      await rejects(() => checkGemm(sabotaged(be, { gemm: (a, M, K, b, N, out) => be.gemm(a, M, K - 1, b, N, out) }), 5, 9, 40, 15), 'a gemm missing one k');
      await rejects(() => checkCosineRows(sabotaged(be, {
        cosineRows: async (a, b, M, D, out) => { await be.cosineRows(a, b, M, D, out); out[M - 1] *= 1.0001; },
      }), 13, 64, 13), 'a perturbed cosine');
    },
  },
  {
    name: 'logitStats: a wrong tie-break, a perturbed p1, p2 or entropy fails',
    async run(be, tol) {
      const M = 7, V = 65;
      await checkLogitStats(be, M, V, 14, tol);
      const x = logitRows(M, V, mulberry32(14));
      const tieLast = x.subarray(V, 2 * V).lastIndexOf(20);
      const patch = (f: (o: LogitStatsOut) => void): Partial<SuiteBackend> => ({
        logitStats: async (l, M2, V2, am, p1, p2, ne) => { await be.logitStats(l, M2, V2, am, p1, p2, ne); f({ argmax: am, p1, p2, negEntropy: ne }); },
      });
      // Perturbations of ten times the tolerance in use.
      await rejects(() => checkLogitStats(sabotaged(be, patch((o) => { o.argmax[1] = tieLast; })), M, V, 14, tol), 'a wrong tie-break');
      await rejects(() => checkLogitStats(sabotaged(be, patch((o) => { o.p1[0] *= 1 + 10 * tol.p1Rel; })), M, V, 14, tol), 'a perturbed p1');
      await rejects(() => checkLogitStats(sabotaged(be, patch((o) => { o.p2[4] += 10 * tol.p2Abs; })), M, V, 14, tol), 'a perturbed p2');
      await rejects(() => checkLogitStats(sabotaged(be, patch((o) => { if (o.negEntropy) o.negEntropy[0] += 10 * (tol.entropyRel * Math.abs(o.negEntropy[0]) + tol.entropyAbs); })), M, V, 14, tol), 'a perturbed entropy');
    },
  },
  {
    name: 'rmsnorm, rope, siluMul, add: small errors fail',
    async run(be) {
      await rejects(() => checkRmsnorm(sabotaged(be, {
        rmsnorm: (x, M, D, w, eps, out) => be.rmsnorm(x, M, D, w, eps * 1e5 + 1e-3, out),
      }), 3, 64, false, 1), 'a wrong eps');
      await rejects(() => checkRope(sabotaged(be, {
        rope: (x, M, nH, Dh, pos, cos, sin) => be.rope(x, M, nH, Dh, pos.map((p) => Math.max(0, p - 1)), cos, sin),
      }), 7, 3, 16, 2), 'shifted positions');
      await rejects(() => checkSiluMul(sabotaged(be, {
        siluMul: async (g, u, n, out) => { await be.siluMul(g, u, n, out); out[n - 1] += 1e-2; /* ~5e-5 of max|ref| with |gate| <= 100, |up| <= 2 */ },
      }), 1000, 'none', 3), 'a perturbed silu');
      await rejects(() => checkAdd(sabotaged(be, { add: (d, s, n) => be.add(d, s, n - 1) }), 17, 4), 'a short add');
    },
  },
];
