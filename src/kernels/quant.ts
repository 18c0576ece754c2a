/**
 * Quantised weight formats and their exact rounding rules: the TypeScript definition every backend follows (the
 * reference backend computes with it; the native addon reproduces it bit for bit, checked by
 * test/kernels.conformance.test.ts). The formats are described for users in docs/quantization.md.
 *
 *   int8  W[N, K] as int8 q with one f32 scale per output row:  w ≈ d[n] · q[n, k],  q ∈ [−127, 127].
 *   q4    W[N, K] in groups of QK = 32 along K, one bf16 scale per group (llama.cpp's Q4_0):
 *         w ≈ d[n, g] · (q[n, k] − 8),  q ∈ [0, 15], two per byte (element 2j in the low nibble of byte j).
 *         K is padded with zero weights to a multiple of 32 (Kp = ceil(K / 32) · 32).
 *
 * Activations are quantised per row at matmul time in blocks of QK = 32 along K (llama.cpp's Q8_0): one f32 scale
 * per block, int8 values in [−127, 127]; the dot products are integer (exact) per block, then scaled in f32:
 *   out[m, n] = Σ_g dx[m, g] · I[m, n, g] · d[n]          (int8,  I = Σ_{k∈g} xq · q)
 *   out[m, n] = Σ_g dx[m, g] · d[n, g] · I[m, n, g]      (q4,    I = Σ_{k∈g} xq · (q − 8))
 *
 * Every rounding step is an IEEE binary32 operation (division, multiplication) followed by round-half-to-even, so
 * an implementation in C++ SIMD computes exactly the same integers and scales:
 *   activation block:  amax = max |x|;  id = f32(127 / amax);  id = +∞ (amax = 0 or amax tiny) → all q = 0, d = 0;
 *                      otherwise d = f32(amax / 127), q = rne(f32(x · id)) (|q| ≤ 127 by construction, clamped).
 *                      A NaN or ±∞ in the block: d = NaN, all q = 0 (the output of that row is NaN, as in bf16).
 *   int8 weight row:   amax over the row; d = f32(amax / 127); d = 0 → q = 0; else q = clamp(rne(f32(w / d)), ±127).
 *                      A NaN or ±∞ in the row: d = NaN, q = 0.
 *   q4 weight group:   m = the first element of largest |w| (padding counts as 0); d = bf16(f32(m / −8)) (RNE);
 *                      d = 0 → q = 8; else q = clamp(rne(f32(w / d)) + 8, 0, 15). A NaN or ±∞: d = NaN, q = 8.
 */
import { bf16ToF32, f32ToBf16 } from '../tensor/dtype.js';

export type QuantFormat = 'int8' | 'q4';
export const QUANT_FORMATS: readonly QuantFormat[] = ['int8', 'q4'];

/** Group size along K: q4 weight groups and activation blocks. */
export const QK = 32;

/** Input features padded to whole groups. */
export function paddedK(K: number): number {
  return Math.ceil(K / QK) * QK;
}

/** Groups per row. */
export function groups(K: number): number {
  return Math.ceil(K / QK);
}

/** Round half to even of a finite number (IEEE roundTiesToEven, what cvtps2dq does under the default MXCSR). */
export function rne(v: number): number {
  const f = Math.floor(v);
  const r = v - f;
  if (r > 0.5) return f + 1;
  if (r < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const F32_MAX = 3.4028234663852886e38;

/** The elements of a host-side int8 weight: q [N·K] int8 and one f32 scale per row. */
export interface Int8Host {
  readonly q: Int8Array;
  readonly scales: Float32Array;
}

/** The elements of a host-side q4 weight: q [N · Kp/2] bytes (two nibbles each) and bf16 scale bits [N · Kp/32]. */
export interface Q4Host {
  readonly q: Uint8Array;
  readonly scales: Uint16Array;
}

/** Bytes per row of a packed q4 weight. */
export function q4RowBytes(K: number): number {
  return groups(K) * (QK / 2);
}

/** One weight row w[0..K) as f32 values from the dense storage (bf16 bits or f32). */
type RowReader = (n: number, k: number) => number;

function reader(dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array, K: number): RowReader {
  if (dtype === 'f32') return (n, k) => data[n * K + k];
  return (n, k) => bf16ToF32(data[n * K + k]);
}

/** int8 quantisation of a dense [N, K] weight (the reference definition; see the header). */
export function quantizeInt8(dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array, N: number, K: number): Int8Host {
  const w = reader(dtype, data, K);
  const q = new Int8Array(N * K);
  const scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let amax = 0;
    let bad = false;
    for (let k = 0; k < K; k++) {
      const a = Math.abs(w(n, k));
      if (!(a <= F32_MAX)) bad = true;
      else if (a > amax) amax = a;
    }
    if (bad) {
      scales[n] = NaN;
      continue;
    }
    const d = Math.fround(amax / 127);
    scales[n] = d;
    if (d === 0) continue;
    for (let k = 0; k < K; k++) q[n * K + k] = Math.max(-127, Math.min(127, rne(Math.fround(w(n, k) / d))));
  }
  return { q, scales };
}

/** q4 quantisation of a dense [N, K] weight (the reference definition; see the header). */
export function quantizeQ4(dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array, N: number, K: number): Q4Host {
  const w = reader(dtype, data, K);
  const G = groups(K);
  const rowBytes = G * (QK / 2);
  const q = new Uint8Array(N * rowBytes);
  const scales = new Uint16Array(N * G);
  const nib = new Uint8Array(QK);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      let amax = 0;
      let m = 0;
      let bad = false;
      const k0 = g * QK;
      const k1 = Math.min(K, k0 + QK);
      for (let k = k0; k < k1; k++) {
        const v = w(n, k);
        const a = Math.abs(v);
        if (!(a <= F32_MAX)) bad = true;
        else if (a > amax) {
          amax = a;
          m = v;
        }
      }
      nib.fill(8);
      if (bad) {
        scales[n * G + g] = 0x7fc0; // NaN
      } else {
        const bits = f32ToBf16(Math.fround(m / -8));
        scales[n * G + g] = bits;
        const d = bf16ToF32(bits);
        if (d !== 0) for (let k = k0; k < k1; k++) nib[k - k0] = Math.max(0, Math.min(15, rne(Math.fround(w(n, k) / d)) + 8));
      }
      const o = n * rowBytes + g * (QK / 2);
      for (let j = 0; j < QK / 2; j++) q[o + j] = nib[2 * j] | (nib[2 * j + 1] << 4);
    }
  }
  return { q, scales };
}

/**
 * Activation quantisation of one logical row of G·32 values: `lead` zeros, then x[xo .. xo + n), then zeros (the
 * layout matmulCols needs: a slice of the input features placed at its column offset inside the weight's groups).
 * Writes q[qo .. qo + 32G) and d[dOff .. dOff + G).
 */
export function quantizeActivationRow(
  x: ArrayLike<number>, xo: number, lead: number, n: number, G: number, q: Int8Array, qo: number, d: Float32Array, dOff: number,
): void {
  const at = (j: number): number => (j >= lead && j < lead + n ? x[xo + j - lead] : 0);
  for (let g = 0; g < G; g++) {
    let amax = 0;
    let bad = false;
    for (let j = g * QK; j < (g + 1) * QK; j++) {
      const a = Math.abs(at(j));
      if (!(a <= F32_MAX)) bad = true;
      else if (a > amax) amax = a;
    }
    const id = Math.fround(127 / amax);
    if (bad) {
      d[dOff + g] = NaN;
      for (let j = g * QK; j < (g + 1) * QK; j++) q[qo + j] = 0;
    } else if (id === Infinity) {
      d[dOff + g] = 0;
      for (let j = g * QK; j < (g + 1) * QK; j++) q[qo + j] = 0;
    } else {
      d[dOff + g] = Math.fround(amax / 127);
      for (let j = g * QK; j < (g + 1) * QK; j++) q[qo + j] = Math.max(-127, Math.min(127, rne(Math.fround(at(j) * id))));
    }
  }
}

/**
 * Activation quantisation of rows x[M, K] (the test entry point): q [M · Kp] int8, d [M · G] f32.
 */
export function quantizeActivations(x: ArrayLike<number>, M: number, K: number): { q: Int8Array; d: Float32Array } {
  const G = groups(K);
  const q = new Int8Array(M * G * QK);
  const d = new Float32Array(M * G);
  for (let m = 0; m < M; m++) quantizeActivationRow(x, m * K, 0, K, G, q, m * G * QK, d, m * G);
  return { q, d };
}

/** Dequantised weight row n (for tests and reports): f32 values w[0..K). */
export function dequantizeRow(format: QuantFormat, q: Int8Array | Uint8Array, scales: Float32Array | Uint16Array, K: number, n: number): Float32Array {
  const out = new Float32Array(K);
  if (format === 'int8') {
    const d = scales[n];
    for (let k = 0; k < K; k++) out[k] = Math.fround(d * (q as Int8Array)[n * K + k]);
    return out;
  }
  const G = groups(K);
  const rb = G * (QK / 2);
  for (let k = 0; k < K; k++) {
    const b = (q as Uint8Array)[n * rb + (k >> 1)];
    const v = (k & 1 ? b >> 4 : b & 15) - 8;
    out[k] = Math.fround(bf16ToF32((scales as Uint16Array)[n * G + Math.floor(k / QK)]) * v);
  }
  return out;
}
