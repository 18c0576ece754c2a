/**
 * The transformer core every forward pass runs on (dense.ts, planned.ts, dllm-cache.ts): the weights and padding
 * rules of a LLaMA-style bidirectional transformer, RoPE tables, the batch geometry, and the blocks each pass applies
 * to the rows it chooses — embedding, the SwiGLU FFN, final norm + LM head. Everything goes through the kernel
 * backend. It owns no per-request state; the passes own their caches' use, the caller owns the caches.
 *
 * Legend: B batch, L sequence length, T = Σ L rows, R query rows of a cached step, D hidden, H query heads, Hkv KV
 * heads, Dh head dim, F FFN inner size, V vocabulary (logit width).
 *
 * May import: kernels/backend, load/ (types), tensor/, models/types. Imported by the forward passes and models/.
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../../kernels/backend.js';
import type { ModelConfig } from '../../load/config.js';
import type { Scratch } from '../../tensor/scratch.js';
import type { ForwardBatch } from '../types.js';

export interface LayerWeights {
  readonly attnNorm: Float32Array; // [D]
  readonly wq: PreparedWeight; // [H·Dh, D]
  readonly wk: PreparedWeight; // [Hkv·Dh, D]
  readonly wv: PreparedWeight; // [Hkv·Dh, D]
  readonly bq: Float32Array | null; // [H·Dh]
  readonly bk: Float32Array | null; // [Hkv·Dh]
  readonly bv: Float32Array | null; // [Hkv·Dh]
  readonly wo: PreparedWeight; // [D, H·Dh]
  readonly ffnNorm: Float32Array; // [D]
  readonly gate: PreparedWeight; // [F, D]
  readonly up: PreparedWeight; // [F, D]
  readonly down: PreparedWeight; // [D, F]
}

export interface TransformerWeights {
  readonly embed: HostWeight; // [V, D], kept on the host for row lookups
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: Float32Array; // [D]
  readonly head: PreparedWeight; // [V, D]
}

/** Per-architecture padding rules: the only place the architectures differ in the forward pass. */
export interface PaddingRules {
  /** RoPE positions of one sequence's rows, written into pos[0, L); mask is that sequence's [L] or null. */
  positions(mask: Uint8Array | null, L: number, pos: Int32Array): void;
  /** Key mask of one sequence (null = every key visible). */
  keyMask(mask: Uint8Array | null): Uint8Array | null; // [L]
  /** Whether padded query rows get a zero attention output (Dream) or attend normally (LLaDA). */
  readonly zeroPadQueries: boolean;
}

/** RoPE cos/sin tables [positions, Dh/2] in fp32, as torch computes inv_freq = 1/θ^(2j/Dh) and pos·inv_freq. */
export class RopeTable {
  cos = new Float32Array(0);
  sin = new Float32Array(0);
  private size = 0;
  private readonly invFreq: Float32Array;

  constructor(readonly headDim: number, theta: number) {
    const h = headDim / 2;
    this.invFreq = new Float32Array(h);
    for (let j = 0; j < h; j++) this.invFreq[j] = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * j) / headDim))));
  }

  /** Make sure positions [0, n) are tabulated. */
  ensure(n: number): void {
    if (n <= this.size) return;
    const size = Math.max(n, this.size * 2, 64);
    const h = this.headDim / 2;
    const cos = new Float32Array(size * h);
    const sin = new Float32Array(size * h);
    for (let p = 0; p < size; p++) {
      for (let j = 0; j < h; j++) {
        const a = Math.fround(p * this.invFreq[j]);
        cos[p * h + j] = Math.cos(a);
        sin[p * h + j] = Math.sin(a);
      }
    }
    this.cos = cos;
    this.sin = sin;
    this.size = size;
  }
}

/** What a forward pass needs of a model: its weights, rules, kernels and work buffers (models/transformer.ts). */
export interface TransformerCore {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  readonly weights: TransformerWeights;
  readonly padding: PaddingRules;
  readonly rope: RopeTable;
  /** Work buffers reused across steps (the passes are synchronous, so one set suffices). */
  readonly scratch: Scratch;
}

/** The sizes of the legend, from the config. */
export interface Dims {
  readonly D: number;
  readonly H: number;
  readonly Hkv: number;
  readonly Dh: number;
  readonly qDim: number; // H·Dh
  readonly kvDim: number; // Hkv·Dh
  readonly F: number;
}

export function dims(cfg: ModelConfig): Dims {
  return {
    D: cfg.hiddenSize, H: cfg.numHeads, Hkv: cfg.numKvHeads, Dh: cfg.headDim,
    qDim: cfg.numHeads * cfg.headDim, kvDim: cfg.numKvHeads * cfg.headDim, F: cfg.intermediateSize,
  };
}

/** Copy embedding rows for `tokens` into out[T, D] as float32. */
export function embedTokens(embed: HostWeight, tokens: Int32Array, out: Float32Array): void {
  const D = embed.inFeatures;
  const V = embed.outFeatures;
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} at row ${t} is outside the vocabulary [0, ${V})`);
    const src = id * D;
    const dst = t * D;
    if (embed.dtype === 'f32') {
      out.set((embed.data as Float32Array).subarray(src, src + D), dst);
    } else {
      const bits = embed.data as Uint16Array;
      const o32 = new Uint32Array(out.buffer, out.byteOffset + dst * 4, D);
      for (let d = 0; d < D; d++) o32[d] = bits[src + d] << 16;
    }
  }
}

/** Per-row RoPE positions and per-sequence key masks of a batch, by the architecture's padding rules. */
export interface BatchGeometry {
  readonly positions: Int32Array; // [T]
  readonly keyMasks: readonly (Uint8Array | null)[]; // [B]
}

/** Positions and key masks of every sequence of `batch`; makes sure RoPE covers them. */
export function geometry(core: TransformerCore, batch: ForwardBatch): BatchGeometry {
  const { seqStart, attentionMask: mask } = batch;
  const B = seqStart.length - 1;
  const T = batch.tokens.length;
  if (seqStart[0] !== 0 || seqStart[B] !== T) throw new RangeError(`forward: seqStart must run from 0 to ${T}`);
  if (mask && mask.length !== T) throw new RangeError(`forward: attention mask has ${mask.length} entries for ${T} rows`);
  const positions = new Int32Array(T);
  const keyMasks: (Uint8Array | null)[] = [];
  for (let b = 0; b < B; b++) {
    const s = seqStart[b];
    const e = seqStart[b + 1];
    const m = mask ? mask.subarray(s, e) : null;
    core.padding.positions(m, e - s, positions.subarray(s, e));
    keyMasks.push(core.padding.keyMask(m));
  }
  let maxPos = 0;
  for (let i = 0; i < T; i++) if (positions[i] > maxPos) maxPos = positions[i];
  core.rope.ensure(maxPos + 1);
  return { positions, keyMasks };
}

/**
 * The SwiGLU FFN of n rows: out[n, D] = down(silu(gate(h)) · up(h)). `rows` gathers the n rows of h (no copy);
 * null takes rows 0..n.
 */
export function ffn(core: TransformerCore, w: LayerWeights, h: Float32Array, n: number, out: Float32Array, rows: Int32Array | null = null): void {
  const be = core.backend;
  const F = core.config.intermediateSize;
  const g = core.scratch.f32('g', n * F); // [n, F]
  const u = core.scratch.f32('u', n * F); // [n, F]
  be.matmul(h, n, w.gate, g, null, rows);
  be.matmul(h, n, w.up, u, null, rows);
  be.siluMul(g, u, n * F, g);
  be.matmul(g, n, w.down, out);
}

/** Zero the rows of `x` (width `width`) whose sequence positions `pos(i)` are padding under key mask `km`. */
export function zeroPaddedRows(x: Float32Array, n: number, width: number, km: Uint8Array, pos: (i: number) => number): void {
  for (let i = 0; i < n; i++) if (!km[pos(i)]) x.fill(0, i * width, (i + 1) * width);
}

/** Logits [n, V] of rows sel[0..n) of the residual stream x: final norm of just those rows, then the LM head. */
export function headLogits(core: TransformerCore, x: Float32Array, sel: ArrayLike<number>, n: number): Float32Array {
  const D = core.config.hiddenSize;
  const hn = core.scratch.f32('hn', n * D); // [n, D]
  for (let j = 0; j < n; j++) hn.set(x.subarray(sel[j] * D, (sel[j] + 1) * D), j * D);
  core.backend.rmsnorm(hn, n, D, core.weights.finalNorm, core.config.rmsNormEps, hn);
  const logits = new Float32Array(n * core.config.vocabSize);
  core.backend.matmul(hn, n, core.weights.head, logits);
  return logits;
}
