/**
 * The kernel interface: the only compute the models use. Every backend (the TypeScript reference, the native
 * addon) implements exactly these ops, and every fast backend is checked against the reference by the shared
 * conformance suite (test/kernels.conformance.test.ts). Activations are always float32, row-major; weights keep
 * their checkpoint dtype (bf16 stays bf16) unless they are quantised (int8, q4: ./quant.ts), which matmul and
 * matmulCols take like any other prepared weight.
 *
 * Shape legend: M rows (tokens), K in-features, N out-features, H query heads, Hkv key/value heads, Dh head dim.
 * Arrays may be subarray views: backends honour byteOffset and never read past `length`.
 * Every op checks its arguments before touching memory (src/kernels/args.ts; the native addon again in C++): a wrong
 * array kind or a non-number size throws a TypeError, a size that is not a safe non-negative integer in its range,
 * an array shorter than the sizes need or an index out of range throws a RangeError — one line naming the op and
 * the argument — and nothing is written.
 */
import type { QuantFormat } from './quant.js';

/** How a prepared weight stores its values: dense ('bf16', 'f32') or quantised ('int8', 'q4'; see ./quant.ts). */
export type WeightDtype = 'bf16' | 'f32' | 'int8' | 'q4';

/**
 * A linear weight as PyTorch stores it: row-major [outFeatures, inFeatures], used as y = x·Wᵀ. Dense ('bf16' bits in
 * a Uint16Array, 'f32') or already quantised (docs/quantization.md, ./quant.ts):
 *   'int8': data Int8Array [N·K], scales Float32Array [N] (one per output row);
 *   'q4':   data Uint8Array [N · ceil(K/32)·16] (two 4-bit values per byte), scales Uint16Array [N · ceil(K/32)]
 *           (bf16 bits, one per group of 32 input features).
 */
export interface HostWeight {
  readonly dtype: WeightDtype;
  readonly data: Uint16Array | Float32Array | Int8Array | Uint8Array; // [N, K] (q4: packed)
  readonly outFeatures: number; // N
  readonly inFeatures: number; // K
  /** Quantised weights only: the scales. */
  readonly scales?: Float32Array | Uint16Array;
  /**
   * Dense weights only: have `prepareWeight` store the weight in this quantised format (quantised by the rounding
   * rules of ./quant.ts). Host uses of the weight (an embedding lookup) ignore it.
   */
  readonly quant?: QuantFormat | null;
}

/** A weight after `prepareWeight`: opaque to callers (a backend may repack it). */
export interface PreparedWeight {
  readonly dtype: WeightDtype;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Bytes the backend holds for this weight. */
  readonly nbytes: number;
}

export interface KernelBackend {
  readonly name: string;

  /**
   * Take ownership of a weight; the backend may repack it and drop the host copy. A dense weight with `quant` set is
   * quantised first (the prepared dtype is then that format).
   */
  prepareWeight(w: HostWeight): PreparedWeight;

  /**
   * out[M, N] = x[M, K] · Wᵀ (+ bias[N]).
   * `xRows` (optional): use rows xRows[0..M) of x instead of rows 0..M (gathered matmul, no copy).
   */
  matmul(x: Float32Array, M: number, w: PreparedWeight, out: Float32Array, bias?: Float32Array | null, xRows?: Int32Array | null): void;

  /**
   * out[M, N] = x[M, kLen] · W[:, k0 : k0+kLen]ᵀ: the product with one slice of a prepared weight's input features
   * (e.g. one attention head's block of o_proj), read in place. For bf16 weights k0 and kLen must be even (input
   * features are packed in pairs) unless the slice ends at the last feature. For quantised weights any slice is
   * allowed: the activations are quantised in the weight's groups of 32 features (the slice placed at column k0 of a
   * zero row), so the result is matmul's on that zero-padded row.
   */
  matmulCols(x: Float32Array, M: number, w: PreparedWeight, k0: number, kLen: number, out: Float32Array): void;

  /** out[M, N] = a[M, K] · b[K, N], fp32, both row-major: a product of two run-time operands (no prepared weight). */
  gemm(a: Float32Array, M: number, K: number, b: Float32Array, N: number, out: Float32Array): void;

  /** out[M, D] = x / sqrt(mean(x²) + eps) · weight (statistics in fp32 or wider). out may alias x. */
  rmsnorm(x: Float32Array, M: number, D: number, weight: Float32Array, eps: number, out: Float32Array): void;

  /**
   * Half-split (NeoX/HF) rotary embedding, in place, on x[M, nHeads·Dh]: for each head, with h = Dh/2,
   * (x1, x2) = (x[0..h), x[h..Dh)); out = (x1·c − x2·s, x2·c + x1·s), c/s = cos/sin[positions[m]·h + j].
   */
  rope(x: Float32Array, M: number, nHeads: number, Dh: number, positions: Int32Array, cos: Float32Array, sin: Float32Array): void;

  /**
   * Bidirectional scaled-dot-product attention of gathered query rows against a key/value set.
   * q[Mq, H·Dh] (post-RoPE), k/v[Mk, Hkv·Dh], out[Mq, H·Dh]; query head h uses KV head floor(h / (H/Hkv));
   * scale 1/sqrt(Dh). keyMask[Mk] (optional): 0 hides that key from every query.
   * lse (optional) [Mq, H]: receives the natural log-sum-exp of each row's scaled, masked scores.
   */
  attention(
    q: Float32Array, Mq: number, k: Float32Array, v: Float32Array, Mk: number,
    H: number, Hkv: number, Dh: number, keyMask: Uint8Array | null, out: Float32Array, lse?: Float32Array | null,
  ): void;

  /**
   * DyLLM's approximate context update for every query row: ctx[i] += Σ_c softmax(q_i·Kᵀ·scale)[cols[c]] · dv[c],
   * the softmax normalised over ALL Mk keys (current K, keyMask applied) but only the listed columns contributing.
   * q[Mq, H·Dh], k[Mk, Hkv·Dh], cols[nc] key indices, dv[nc, Hkv·Dh], ctx[Mq, H·Dh] updated in place.
   * probs (optional) [Mq, H, nc]: receives those softmax probabilities, 0 for hidden keys (the coefficients of the
   * update, so a caller can apply it to a projection of dv instead).
   */
  attentionDelta(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, dv: Float32Array, ctx: Float32Array, probs?: Float32Array | null,
  ): void;

  /**
   * The corrected update for rows whose query is treated as unchanged while the key/value columns `cols`
   * changed (our correction of the paper's delta update; docs in README's Design): with Z the softmax normaliser and l = q·k·scale (current q),
   *   C_new = (Z_old/Z_new)·C_old − Σ_c e^{l_old,c}/Z_new · vOld_c + Σ_c e^{l_new,c}/Z_new · vNew_c.
   * incremental = false: Z_new exact over all Mk current keys (the dense QKᵀ) and Z_old = Z_new − Σ_c (e^{l_new,c}
   * − e^{l_old,c}), i.e. the old normaliser under the current query (consistent when the query has drifted).
   * incremental = true: Z_old = exp(lse) cached from the query that produced C_old and Z_new = Z_old + Σ_c
   * (e^{l_new,c} − e^{l_old,c}) (no dense QKᵀ). `lse` [Mq, H] holds log Z_old on entry (read only when
   * incremental) and log Z_new on return; ctx [Mq, H·Dh] holds C_old on entry and C_new on return. k holds the
   * NEW keys (all Mk); kOld/vOld/vNew [nc, Hkv·Dh] the old and new rows of the changed columns.
   */
  attentionRescale(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, kOld: Float32Array, vOld: Float32Array, vNew: Float32Array,
    lse: Float32Array, ctx: Float32Array, incremental: boolean,
  ): void;

  /** out[m] = cos(a[m], b[m]) over D, fp32-or-wider statistics: dot·rsqrt(max(|a|²,1e-8))·rsqrt(max(|b|²,1e-8)). */
  cosineRows(a: Float32Array, b: Float32Array, M: number, D: number, out: Float32Array): void;

  /**
   * Per-row statistics of logits[M, V] that the samplers need, so no JS loop runs over the vocabulary: the argmax
   * (lowest index on ties), p1 = softmax probability of the argmax, p2 = the second largest probability, and
   * (when negEntropy is given) Σ_v p_v·log(p_v + 1e-10) — Dream's entropy confidence. float64 statistics.
   */
  logitStats(logits: Float32Array, M: number, V: number, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy: Float64Array | null): void;

  /** out[n] = silu(gate[n]) · up[n]. out may alias gate or up. */
  siluMul(gate: Float32Array, up: Float32Array, n: number, out: Float32Array): void;

  /** dst[n] += src[n]. */
  add(dst: Float32Array, src: Float32Array, n: number): void;
}
