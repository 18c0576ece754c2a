/**
 * Quantised weights (int8, q4; src/kernels/quant.ts, docs/quantization.md): the rounding rules of the TypeScript
 * oracle on hand-computed values, the reference backend against an independent formula (dequantised weights times
 * dequantised activations), and every native ISA tier against the reference:
 *   - activation quantisation (the tier's quantizeRows) and weight quantisation (the addon's quantize): bit for bit,
 *     special values included (NaN, ±Infinity, zero and subnormal blocks, ties);
 *   - matmul / matmulCols where every product and partial sum is exactly representable (power-of-two scales, small
 *     integers): bit for bit, with K-blocking, tails, gathered rows and column slices;
 *   - random shapes: max|Δ| / max|ref| ≤ 1e-5 (only the order of the f32 accumulation over groups differs).
 * The sabotage tests run the same checks against deliberately broken backends and require them to fail.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostWeight, KernelBackend, PreparedWeight } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { loadNativeAddon, loadNativeBackend, nativeQuantize, type NativeTier } from '../src/kernels/native.js';
import {
  dequantizeRow, groups, QK, quantizeActivationRow, quantizeActivations, quantizeInt8, quantizeQ4, rne, type QuantFormat,
} from '../src/kernels/quant.js';
import { bf16ToF32, f32ToBf16 } from '../src/tensor/dtype.js';
import { needsNative, nativeStatus } from './helpers/native.js';

export const TOL_QUANT = 1e-5;

function mulberry32(seed: number): () => number {
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
/** A Float32Array view at a nonzero byteOffset whose guard elements are NaN. */
function view(n: number, fill?: (i: number) => number): Float32Array {
  const buf = new Float32Array(n + 2 * GUARD + 3).fill(NaN);
  const v = buf.subarray(GUARD + 3, GUARD + 3 + n);
  if (fill) for (let i = 0; i < n; i++) v[i] = fill(i);
  return v;
}
function assertGuards(v: Float32Array, what: string): void {
  const whole = new Float32Array(v.buffer);
  const start = v.byteOffset / 4;
  for (let i = 0; i < whole.length; i++) {
    if (i >= start && i < start + v.length) continue;
    assert.ok(Number.isNaN(whole[i]), `${what}: wrote outside the view (element ${i - start})`);
  }
}
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(b[i])) {
      if (!Object.is(a[i], b[i])) return Infinity;
      continue;
    }
    if (!Number.isFinite(a[i])) return Infinity;
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  assert.ok(e <= tol, `${what}: max|Δ|/max|ref| = ${e.toExponential(3)} > ${tol.toExponential(1)}`);
}
/** Every element identical (Object.is: NaN equals NaN, -0 differs from 0). */
function assertBitExact(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

const ref = new ReferenceBackend();

// ---- weights and activations ---------------------------------------------------------------------------------

/** A random dense bf16 weight ~ U(-1/sqrt(K), 1/sqrt(K)) with a few larger outliers. */
function denseWeight(N: number, K: number, rnd: () => number): HostWeight {
  const data = new Uint16Array(N * K);
  for (let i = 0; i < data.length; i++) data[i] = f32ToBf16((rnd() * 2 - 1) / Math.sqrt(K) * (rnd() < 0.01 ? 8 : 1));
  return { dtype: 'bf16', data, outFeatures: N, inFeatures: K };
}

/**
 * A host quantised weight whose dequantised values are exact: int8 rows with scale 2^e (one element ±127·2^e sets
 * it, the rest small integers), q4 groups with scale 2^e (one element −8·2^e). With activations built the same way
 * every product and partial sum below 2^24 units is exact in f32, so every correct kernel gives the same bits.
 */
function exactWeight(format: QuantFormat, N: number, K: number, rnd: () => number): HostWeight {
  const f32 = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    const e = 2 ** (Math.floor(rnd() * 3) - 1); // scales 1/2, 1, 2: with K <= 4160 every partial sum stays below 2^24 units

    if (format === 'int8') {
      for (let k = 0; k < K; k++) f32[n * K + k] = (Math.floor(rnd() * 7) - 3) * e;
      if (K > 0) f32[n * K + Math.floor(rnd() * K)] = (rnd() < 0.5 ? -127 : 127) * e;
    } else {
      for (let g = 0; g < groups(K); g++) {
        const k0 = g * QK;
        const k1 = Math.min(K, k0 + QK);
        for (let k = k0; k < k1; k++) f32[n * K + k] = (Math.floor(rnd() * 15) - 7) * e; // |v| <= 7·e < 8·e
        f32[n * K + k0 + Math.floor(rnd() * (k1 - k0))] = -8 * e; // the largest magnitude, negative: d = e
      }
    }
  }
  const h = format === 'int8' ? quantizeInt8('f32', f32, N, K) : quantizeQ4('f32', f32, N, K);
  return { dtype: format, data: h.q, scales: h.scales, outFeatures: N, inFeatures: K };
}

/**
 * Activation rows whose 32-blocks quantise exactly: per block scale 2^e (one element ±127·2^e), small integers; one
 * block in ten all zero. Only features [lo, hi) are filled (the rest 0), so a column slice keeps exact blocks.
 */
function exactActivations(rows: number, K: number, rnd: () => number, lo = 0, hi = K): Float32Array {
  const x = view(rows * K, () => 0);
  for (let m = 0; m < rows; m++) {
    for (let g = 0; g < groups(K); g++) {
      const e = 2 ** (Math.floor(rnd() * 3) - 1);
      const k0 = Math.max(lo, g * QK);
      const k1 = Math.min(hi, K, g * QK + QK);
      if (k1 <= k0 || rnd() < 0.1) continue;
      for (let k = k0; k < k1; k++) x[m * K + k] = (Math.floor(rnd() * 9) - 4) * e;
      x[m * K + k0 + Math.floor(rnd() * (k1 - k0))] = (rnd() < 0.5 ? -127 : 127) * e;
    }
  }
  return x;
}

function randView(n: number, rnd: () => number, scale = 1): Float32Array {
  return view(n, () => (rnd() * 2 - 1) * scale);
}

function prepareBoth(be: KernelBackend, w: HostWeight): [PreparedWeight, PreparedWeight] {
  const copy = (h: HostWeight): HostWeight => ({ ...h, data: h.data.slice(), scales: h.scales?.slice() });
  return [ref.prepareWeight(copy(w)), be.prepareWeight(copy(w))];
}

// ---- checks --------------------------------------------------------------------------------------------------

interface QMatmulCase { M: number; K: number; N: number; format: QuantFormat; bias: boolean; gather: boolean; exact: boolean; seed: number; viaRequest?: boolean }

function checkQuantMatmul(be: KernelBackend, c: QMatmulCase): void {
  const rnd = mulberry32(c.seed);
  let hw: HostWeight;
  if (c.exact) hw = exactWeight(c.format, c.N, c.K, rnd);
  else {
    const dense = denseWeight(c.N, c.K, rnd);
    hw = c.viaRequest ? { ...dense, quant: c.format } : (() => {
      const h = c.format === 'int8' ? quantizeInt8('bf16', dense.data as Uint16Array, c.N, c.K) : quantizeQ4('bf16', dense.data as Uint16Array, c.N, c.K);
      return { dtype: c.format, data: h.q, scales: h.scales, outFeatures: c.N, inFeatures: c.K };
    })();
  }
  const [wRef, wBe] = prepareBoth(be, hw);
  assert.equal(wBe.dtype, c.format);
  assert.equal(wBe.outFeatures, c.N);
  assert.equal(wBe.inFeatures, c.K);
  const xRowsTotal = c.gather ? c.M + 5 : c.M;
  const x = c.exact ? exactActivations(xRowsTotal, c.K, rnd) : randView(xRowsTotal * c.K, rnd, 3);
  let xRows: Int32Array | null = null;
  if (c.gather) {
    xRows = new Int32Array(c.M + 4).fill(-1).subarray(2, 2 + c.M);
    for (let m = 0; m < c.M; m++) xRows[m] = Math.floor(rnd() * xRowsTotal);
    if (c.M > 1) xRows[c.M - 1] = xRows[0];
  }
  const bias = c.bias ? view(c.N, () => (c.exact ? Math.floor(rnd() * 16) - 8 : rnd() * 2 - 1)) : null;
  const want = new Float32Array(c.M * c.N);
  ref.matmul(x, c.M, wRef, want, bias, xRows);
  const out = view(c.M * c.N);
  be.matmul(x, c.M, wBe, out, bias, xRows);
  assertGuards(out, 'matmul out');
  const what = `matmul ${c.format} M=${c.M} K=${c.K} N=${c.N} bias=${c.bias} gather=${c.gather}${c.exact ? ' (exact)' : ''}`;
  if (c.exact) assertBitExact(out, want, what);
  else assertClose(out, want, TOL_QUANT, what);
}

interface QColsCase { M: number; K: number; N: number; k0: number; kLen: number; format: QuantFormat; exact: boolean; seed: number }

function checkQuantCols(be: KernelBackend, c: QColsCase): void {
  const rnd = mulberry32(c.seed);
  const hw = c.exact ? exactWeight(c.format, c.N, c.K, rnd) : { ...denseWeight(c.N, c.K, rnd), quant: c.format };
  const [wRef, wBe] = prepareBoth(be, hw);
  let x: Float32Array;
  if (c.exact) {
    // Exact blocks relative to the weight's groups: build the zero-embedded rows, then cut the slice out.
    const wide = exactActivations(c.M, c.K, rnd, c.k0, c.k0 + c.kLen);
    x = view(c.M * c.kLen, (i) => wide[Math.floor(i / c.kLen) * c.K + c.k0 + (i % c.kLen)]);
  } else {
    x = randView(c.M * c.kLen, rnd, 2);
  }
  const want = new Float32Array(c.M * c.N);
  ref.matmulCols(x, c.M, wRef, c.k0, c.kLen, want);
  const out = view(c.M * c.N);
  be.matmulCols(x, c.M, wBe, c.k0, c.kLen, out);
  assertGuards(out, 'matmulCols out');
  const what = `matmulCols ${c.format} M=${c.M} K=${c.K} N=${c.N} cols [${c.k0}, ${c.k0 + c.kLen})${c.exact ? ' (exact)' : ''}`;
  if (c.exact) assertBitExact(out, want, what);
  else assertClose(out, want, TOL_QUANT, what);
}

/** Rows of every kind the activation rule distinguishes, K values each. */
function specialRows(K: number, rnd: () => number): Float32Array {
  const kinds = 9;
  const x = new Float32Array(kinds * K);
  for (let m = 0; m < kinds; m++) {
    for (let k = 0; k < K; k++) {
      const o = m * K + k;
      switch (m) {
        case 0: x[o] = (rnd() * 2 - 1) * 5; break; // random
        case 1: x[o] = k % 3 === 0 ? 127 : (k % 7) - 3.5 + ((k >> 3) % 2 ? 0 : 1); break; // ties at id = 1: .5 values
        case 2: x[o] = 0; break; // zero blocks
        case 3: x[o] = (rnd() * 2 - 1) * 1e-40; break; // subnormal blocks: 127 / amax overflows
        case 4: x[o] = k === 5 ? NaN : rnd(); break; // a NaN block
        case 5: x[o] = k === 40 ? -Infinity : rnd(); break; // an infinite block (if K > 40)
        case 6: x[o] = (rnd() * 2 - 1) * 3e38; break; // near the f32 maximum
        case 7: x[o] = rnd() < 0.5 ? 0 : (rnd() * 2 - 1) * 2 ** -120; break; // tiny normals and zeros
        default: x[o] = Math.fround((Math.floor(rnd() * 255) - 127) / 127 * 3.25); break; // values on the grid
      }
    }
  }
  return x;
}

/** Dense weights of every kind the weight rules distinguish (f32 storage). */
function specialWeight(N: number, K: number, rnd: () => number): Float32Array {
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const o = n * K + k;
      switch (n % 8) {
        case 0: w[o] = (rnd() * 2 - 1) * 0.05; break;
        case 1: w[o] = 0; break;
        case 2: w[o] = k === 3 ? NaN : rnd(); break;
        case 3: w[o] = k === 33 ? Infinity : rnd(); break;
        case 4: w[o] = (rnd() * 2 - 1) * 1e-41; break;
        case 5: w[o] = (k % 5) - 2.5; break; // ties: .5 steps
        case 6: w[o] = k % 32 === 7 ? 4 : k % 32 === 9 ? -4 : (rnd() * 2 - 1) * 4; break; // +4 and −4 in a group: the first wins
        default: w[o] = (rnd() * 2 - 1) * 3e38; break;
      }
    }
  }
  return w;
}

function checkQuantizeRows(tier: NativeTier, M: number, K: number, x: Float32Array, what: string): void {
  const G = groups(K);
  const want = quantizeActivations(x, M, K);
  const q = new Int8Array(M * G * QK).fill(99);
  const d = new Float32Array(M * G).fill(-7);
  tier.quantizeRows(x, M, K, q, d);
  assertBitExact(q, want.q, `${what} q`);
  assertBitExact(d, want.d, `${what} d`);
}

// ---- the oracle's own rules ----------------------------------------------------------------------------------

describe('quantisation rules (the TypeScript oracle)', () => {
  test('round half to even', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -3.5000001, 126.5, -126.5].map(rne), [0, 2, 2, 0, -2, -2, 2, -4, 126, -126]);
  });

  test('activation blocks: scale amax/127, values rne(x·127/amax), ties to even; zero, subnormal and non-finite blocks', () => {
    const x = new Float32Array(96);
    x[0] = 127; x[1] = 2.5; x[2] = -2.5; x[3] = 3.5; x[4] = 0.5; x[5] = -126.5; // block 0: id = 1 exactly
    // block 1 all zero; block 2: a NaN
    x[64] = NaN; x[65] = 1;
    const { q, d } = quantizeActivations(x, 1, 96);
    assert.deepEqual([...q.subarray(0, 6)], [127, 2, -2, 4, 0, -126]);
    assert.deepEqual([...d], [1, 0, NaN]);
    assert.ok(q.subarray(32).every((v) => v === 0), 'zero and NaN blocks quantise to zeros');
    const sub = quantizeActivations(Float32Array.of(1e-40, -2e-40), 1, 2);
    assert.deepEqual([...sub.d], [0], 'a block so small that 127/amax overflows has scale 0');
    assert.deepEqual([...sub.q.subarray(0, 2)], [0, 0]);
    const big = quantizeActivations(Float32Array.of(3e38, -1.4e38), 1, 2);
    assert.deepEqual([...big.q.subarray(0, 2)], [127, -59]); // -1.4e38 · 127/3e38 = -59.27
    assert.equal(big.d[0], Math.fround(Math.fround(3e38) / 127));
    // A row shorter than its block is zero padded; a lead places the slice inside the block (matmulCols).
    const qq = new Int8Array(64);
    const dd = new Float32Array(2);
    quantizeActivationRow(Float32Array.of(127, -127, 64), 0, 30, 3, 2, qq, 0, dd, 0);
    assert.deepEqual([...qq.subarray(28, 36)], [0, 0, 127, -127, 127, 0, 0, 0]); // group 1 holds 64 alone: its own scale
    assert.deepEqual([...dd], [1, Math.fround(64 / 127)]);
  });

  test('int8 weights: per-row scale amax/127, rne(w/d) within ±127; zero and non-finite rows', () => {
    const w = Float32Array.of(-254, 127, 1, 3, /* row 1 */ 0, 0, 0, 0, /* row 2 */ 1, NaN, 2, 3);
    const { q, scales } = quantizeInt8('f32', w, 3, 4);
    assert.deepEqual([...scales], [2, 0, NaN]);
    assert.deepEqual([...q], [-127, 64, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]); // 127/2 = 63.5 -> 64, 1/2 -> 0, 3/2 -> 2
    const bf = quantizeInt8('bf16', Uint16Array.of(f32ToBf16(-1), f32ToBf16(0.5)), 1, 2);
    assert.deepEqual([...bf.q], [-127, rne(Math.fround(0.5 / Math.fround(1 / 127)))]);
  });

  test('q4 weights: group scale bf16(m / −8) from the first largest element, rne(w/d) + 8 in [0, 15], zero padding', () => {
    // one row of 40 features: group 0 = [-8, 4, 7.5, 8.5, +8 (later, same |.|), 0...], group 1 = 8 features + padding
    const K = 40;
    const w = new Float32Array(K);
    w[0] = -8; w[1] = 4; w[2] = 7.5; w[3] = 2.5; w[4] = 8;
    w[32] = 3; w[33] = -1.5;
    const { q, scales } = quantizeQ4('f32', w, 1, K);
    assert.deepEqual([...scales].map(bf16ToF32), [1, -0.375]); // m = -8 -> d = 1; m = 3 -> d = -0.375
    const nib = (k: number): number => (k & 1 ? q[k >> 1] >> 4 : q[k >> 1] & 15);
    // group 0 (d = 1): -8 -> 0, 4 -> 12, 7.5 -> rne 8 -> 16 -> clamped 15, 2.5 -> 2 + 8 = 10, +8 -> clamped 15, 0 -> 8
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(nib), [0, 12, 15, 10, 15, 8]);
    // group 1 (d = -0.375): 3 -> -8 -> 0; -1.5 -> 4 -> 12; padding -> 8
    assert.deepEqual([32, 33, 34, 63].map(nib), [0, 12, 8, 8]);
    assert.equal(q.length, 32, 'two groups of 16 bytes');
    const deq = dequantizeRow('q4', q, scales, K, 0);
    assert.deepEqual([...deq.subarray(0, 5)], [-8, 4, 7, 2, 7]);
    // the scale itself is rounded to bf16 (RNE) before the values are divided by it
    const r = quantizeQ4('f32', Float32Array.of(-8.0625, 1), 1, 2);
    assert.equal(bf16ToF32(r.scales[0]), bf16ToF32(f32ToBf16(Math.fround(8.0625 / 8))));
    const bad = quantizeQ4('f32', Float32Array.of(1, Infinity), 1, 2);
    assert.ok(Number.isNaN(bf16ToF32(bad.scales[0])));
    assert.equal(bad.q[0], 0x88);
  });

  test('the reference product equals dequantised activations times dequantised weights (float64)', () => {
    const rnd = mulberry32(5);
    for (const format of ['int8', 'q4'] as const) {
      for (const [M, K, N] of [[3, 70, 9], [2, 64, 5], [1, 5, 3]]) {
        const dense = denseWeight(N, K, rnd);
        const w = ref.prepareWeight({ ...dense, quant: format });
        const x = randView(M * K, rnd, 2);
        const out = new Float32Array(M * N);
        ref.matmul(x, M, w, out);
        const h = format === 'int8' ? quantizeInt8('bf16', dense.data as Uint16Array, N, K) : quantizeQ4('bf16', dense.data as Uint16Array, N, K);
        const a = quantizeActivations(x, M, K);
        const G = groups(K);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            const wr = dequantizeRow(format, h.q, h.scales, K, n);
            let s = 0;
            for (let k = 0; k < K; k++) s += a.d[m * G + Math.floor(k / QK)] * a.q[m * G * QK + k] * wr[k];
            assert.ok(Math.abs(out[m * N + n] - s) <= 1e-6 * Math.abs(s) + 1e-7, `${format} ${M}x${K}x${N} [${m},${n}]: ${out[m * N + n]} vs ${s}`);
          }
        }
        // matmulCols: the slice at column k0 of a zero row, quantised in the weight's groups
        const k0 = Math.min(K - 1, 7);
        const kLen = K - k0 - 1;
        const xc = randView(M * kLen, rnd);
        const cols = new Float32Array(M * N);
        ref.matmulCols(xc, M, w, k0, kLen, cols);
        const wide = new Float32Array(M * K);
        for (let m = 0; m < M; m++) wide.set(xc.subarray(m * kLen, (m + 1) * kLen), m * K + k0);
        const viaMatmul = new Float32Array(M * N);
        ref.matmul(wide, M, w, viaMatmul);
        assertBitExact(cols, viaMatmul, `${format} reference matmulCols vs matmul on the zero-embedded rows`);
      }
    }
  });

  test('prepareWeight refuses malformed quantised weights with one line each', () => {
    const err = (w: unknown): string => {
      try {
        ref.prepareWeight(w as HostWeight);
        return 'returned';
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    };
    assert.equal(err({ dtype: 'int8', data: new Int8Array(6), outFeatures: 2, inFeatures: 3 }), 'TypeError: prepareWeight: scales must be a Float32Array, found undefined');
    assert.equal(err({ dtype: 'int8', data: new Int8Array(6), scales: new Float32Array(3), outFeatures: 2, inFeatures: 3 }),
      'RangeError: prepareWeight: scales has 3 elements, expected outFeatures = 2');
    assert.equal(err({ dtype: 'q4', data: new Uint8Array(6), scales: new Uint16Array(2), outFeatures: 2, inFeatures: 3 }),
      'RangeError: prepareWeight: data has 6 elements, expected 2x16 = 32 (two 4-bit values per byte, inFeatures padded to a multiple of 32)');
    assert.equal(err({ dtype: 'q4', data: new Uint8Array(32), scales: new Float32Array(2), outFeatures: 2, inFeatures: 3 }),
      'TypeError: prepareWeight: scales must be a Uint16Array, found a Float32Array');
    assert.equal(err({ dtype: 'q4', data: new Uint8Array(64), scales: new Uint16Array(2), outFeatures: 2, inFeatures: 33 }),
      'RangeError: prepareWeight: scales has 2 elements, expected 2x2 = 4 (one per 32 input features)');
    assert.equal(err({ dtype: 'bf16', data: new Uint16Array(6), outFeatures: 2, inFeatures: 3, quant: 'q3' }),
      "RangeError: prepareWeight: quant must be 'int8' or 'q4', found 'q3'");
    assert.equal(err({ dtype: 'int8', data: new Int8Array(6), scales: new Float32Array(2), outFeatures: 2, inFeatures: 3, quant: 'q4' }),
      "TypeError: prepareWeight: quant applies to dense weights only, found quant 'q4' on a weight of dtype int8");
    assert.equal(err({ dtype: 'int4', data: new Int8Array(6), outFeatures: 2, inFeatures: 3 }),
      "RangeError: prepareWeight: dtype must be 'bf16' or 'f32' or 'int8' or 'q4', found 'int4'");
  });
});

// ---- every native tier against the oracle ----------------------------------------------------------------------

export function runQuantSuite(label: string, makeBackend: () => KernelBackend, tier: () => NativeTier): void {
  describe(`${label}: quantised weights`, () => {
    const be = makeBackend();

    test('quantizeRows: activation quantisation bit for bit (random, ties, zero, subnormal, NaN, ±Infinity blocks)', () => {
      const rnd = mulberry32(21);
      for (const K of [1, 31, 32, 33, 100, 320]) {
        const x = specialRows(K, rnd);
        checkQuantizeRows(tier(), x.length / K, K, x, `quantizeRows K=${K}`);
      }
    });

    test('matmul int8 and q4: bit for bit where every sum is exact (tails, K-blocking, gathered rows, bias)', () => {
      const cases: Array<[number, number, number]> = [[1, 32, 32], [1, 320, 77], [6, 64, 33], [7, 100, 45], [13, 320, 77], [13, 4160, 40], [40, 96, 70], [3, 5, 1]];
      let seed = 100;
      for (const format of ['int8', 'q4'] as const) {
        for (const [M, K, N] of cases) {
          checkQuantMatmul(be, { M, K, N, format, bias: seed % 2 === 0, gather: seed % 3 === 0, exact: true, seed: seed++ });
        }
      }
    });

    test('matmul int8 and q4 on random weights and activations (from host arrays and quantised at prepare)', () => {
      let seed = 200;
      for (const format of ['int8', 'q4'] as const) {
        for (const [M, K, N] of [[1, 4096, 96], [2, 320, 448], [16, 896, 320], [37, 300, 77], [64, 512, 64], [5, 33, 31]] as const) {
          checkQuantMatmul(be, { M, K, N, format, bias: seed % 2 === 0, gather: seed % 3 === 0, exact: false, seed: seed++ });
          checkQuantMatmul(be, { M, K, N, format, bias: true, gather: false, exact: false, seed: seed++, viaRequest: true });
        }
      }
    });

    test('matmulCols int8 and q4: aligned head slices, unaligned slices, empty slices', () => {
      let seed = 300;
      for (const format of ['int8', 'q4'] as const) {
        for (const [M, K, N, k0, kLen] of [[5, 320, 64, 64, 64], [3, 320, 40, 0, 320], [4, 100, 33, 37, 50], [2, 96, 20, 95, 1], [2, 96, 20, 40, 0], [9, 4160, 33, 1, 4150]] as const) {
          checkQuantCols(be, { M, K, N, k0, kLen, format, exact: true, seed: seed++ });
          checkQuantCols(be, { M, K, N, k0, kLen, format, exact: false, seed: seed++ });
        }
      }
    });

    test('edge cases: M = 0, K = 0 (the bias), N = 0, a NaN activation poisons only its row', () => {
      for (const format of ['int8', 'q4'] as const) {
        const empty = be.prepareWeight({ dtype: 'bf16', data: new Uint16Array(0), outFeatures: 3, inFeatures: 0, quant: format });
        const out = view(6);
        be.matmul(new Float32Array(0), 2, empty, out, Float32Array.of(1, 2, 3));
        assert.deepEqual([...out], [1, 2, 3, 1, 2, 3]);
        const w = be.prepareWeight({ ...denseWeight(5, 70, mulberry32(1)), quant: format });
        const none = view(0);
        be.matmul(new Float32Array(0), 0, w, none);
        const x = randView(3 * 70, mulberry32(2));
        x[70 + 69] = NaN;
        const o = view(15);
        be.matmul(x, 3, w, o);
        for (let n = 0; n < 5; n++) {
          assert.ok(Number.isNaN(o[5 + n]), `${format}: row 1 is NaN`);
          assert.ok(Number.isFinite(o[n]) && Number.isFinite(o[10 + n]), `${format}: rows 0 and 2 are finite`);
        }
        const zero = be.prepareWeight({ dtype: 'f32', data: new Float32Array(0), outFeatures: 0, inFeatures: 9, quant: format });
        be.matmul(randView(18, mulberry32(3)), 2, zero, view(0));
      }
    });

    test('prepared sizes: int8 1088 bytes per 32 columns x 32 features (+128 per panel), q4 576', () => {
      const n8 = be.prepareWeight({ ...denseWeight(64, 96, mulberry32(4)), quant: 'int8' }).nbytes;
      const n4 = be.prepareWeight({ ...denseWeight(64, 96, mulberry32(4)), quant: 'q4' }).nbytes;
      assert.equal(n8, 2 * (3 * 1088 + 128) + 64); // + the 64-byte alignment slack
      assert.equal(n4, 2 * 3 * 576 + 64);
    });
  });
}

const native = nativeStatus();

test('the addon quantises weights bit for bit as the oracle (bf16 and f32; NaN, ±Infinity, zero, subnormal, ties)', needsNative(), () => {
  const addon = loadNativeAddon();
  const rnd = mulberry32(31);
  for (const [N, K] of [[16, 40], [9, 64], [3, 1], [8, 300], [0, 5], [4, 0]]) {
    const f32 = specialWeight(N, K, rnd);
    const bf = Uint16Array.from(f32, (v) => f32ToBf16(v));
    for (const [dtype, data] of [['f32', f32], ['bf16', bf]] as const) {
      for (const format of ['int8', 'q4'] as const) {
        const want = format === 'int8' ? quantizeInt8(dtype, data, N, K) : quantizeQ4(dtype, data, N, K);
        const got = nativeQuantize(addon, format, dtype, data, N, K);
        assertBitExact(got.q, want.q, `${format} from ${dtype} ${N}x${K}: q`);
        assertBitExact(got.scales, want.scales, `${format} from ${dtype} ${N}x${K}: scales`);
      }
    }
  }
});

if (native.reason !== null) {
  test('native quantised kernels (every ISA tier)', needsNative(), () => {
    loadNativeAddon();
  });
} else {
  for (const isa of native.tiers) runQuantSuite(`native-${isa}`, () => loadNativeBackend({ isa }), () => loadNativeAddon().bind(isa));

  describe('native: the quantised checks detect broken kernels', () => {
    const be = loadNativeBackend();
    const sabotaged = (patch: Partial<KernelBackend>): KernelBackend => Object.assign(Object.create(be) as KernelBackend, patch);
    test('one ulp off fails the bit-exact check; a product without activation quantisation fails the tolerance', () => {
      const exact: QMatmulCase = { M: 7, K: 100, N: 45, format: 'int8', bias: false, gather: false, exact: true, seed: 7 };
      checkQuantMatmul(be, exact);
      const ulp = sabotaged({
        matmul: (x, M, w, out, bias, xRows) => {
          be.matmul(x, M, w, out, bias, xRows);
          const u = new Float32Array([out[3]]);
          new Uint32Array(u.buffer)[0] += 1;
          out[3] = u[0];
        },
      });
      assert.throws(() => checkQuantMatmul(ulp, exact), /element 3/);
      // A kernel that multiplies unquantised activations by the dequantised weights (no activation rounding).
      type Wrapped = PreparedWeight & { inner: PreparedWeight };
      const noActQuant = sabotaged({
        matmul: (x, M, w, out, bias, xRows) => be.matmul(x, M, (w as Wrapped).inner ?? w, out, bias, xRows),
        prepareWeight: (w) => {
          const h = w.quant ? (w.quant === 'int8' ? quantizeInt8(w.dtype as 'bf16', w.data as Uint16Array, w.outFeatures, w.inFeatures) : quantizeQ4(w.dtype as 'bf16', w.data as Uint16Array, w.outFeatures, w.inFeatures)) : null;
          const fmt = (w.quant ?? w.dtype) as QuantFormat;
          const q = h ? h.q : w.data as Int8Array;
          const sc = h ? h.scales : w.scales!;
          const deq = new Float32Array(w.outFeatures * w.inFeatures);
          for (let n = 0; n < w.outFeatures; n++) deq.set(dequantizeRow(fmt, q, sc, w.inFeatures, n), n * w.inFeatures);
          const inner = be.prepareWeight({ dtype: 'f32', data: deq, outFeatures: w.outFeatures, inFeatures: w.inFeatures });
          const p: Wrapped = { dtype: fmt, outFeatures: w.outFeatures, inFeatures: w.inFeatures, nbytes: inner.nbytes, inner };
          return p;
        },
      });
      for (const format of ['int8', 'q4'] as const) {
        const c: QMatmulCase = { M: 9, K: 320, N: 64, format, bias: false, gather: false, exact: false, seed: 8, viaRequest: true };
        checkQuantMatmul(be, c);
        assert.throws(() => checkQuantMatmul(noActQuant, c), /max\|Δ\|\/max\|ref\|/);
      }
    });
    test('a dropped last group, an ignored gather and a shifted column slice fail', () => {
      const c: QMatmulCase = { M: 5, K: 96, N: 40, format: 'q4', bias: true, gather: true, exact: true, seed: 9 };
      checkQuantMatmul(be, c);
      assert.throws(() => checkQuantMatmul(sabotaged({
        prepareWeight: (w) => {
          const q = (w.data as Uint8Array).slice();
          for (let n = 0; n < w.outFeatures; n++) q.fill(0x88, n * 48 + 32, n * 48 + 48); // last group -> zero weights
          return be.prepareWeight({ ...w, data: q });
        },
      }), c));
      assert.throws(() => checkQuantMatmul(sabotaged({ matmul: (x, M, w, out, bias) => be.matmul(x, M, w, out, bias, null) }), c));
      const cc: QColsCase = { M: 3, K: 320, N: 40, k0: 64, kLen: 64, format: 'int8', exact: true, seed: 10 };
      checkQuantCols(be, cc);
      assert.throws(() => checkQuantCols(sabotaged({ matmulCols: (x, M, w, k0, kLen, out) => be.matmulCols(x, M, w, k0 + 1, kLen, out) }), cc));
    });
    test('a tier whose activation rounding is off by one in one value fails the quantizeRows check', () => {
      const t = loadNativeAddon().bind(native.tiers[0]);
      const broken: NativeTier = {
        ...t,
        quantizeRows: (x, M, K, q, d) => {
          t.quantizeRows(x, M, K, q, d);
          q[1] += q[1] < 127 ? 1 : -1;
        },
      };
      const x = specialRows(64, mulberry32(11));
      checkQuantizeRows(t, x.length / 64, 64, x, 'real');
      assert.throws(() => checkQuantizeRows(broken, x.length / 64, 64, x, 'broken'), /element 1/);
    });
  });
}
