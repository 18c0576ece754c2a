/**
 * Shared transformer blocks of LLaDA and Dream: embedding, pre-norm attention with half-split RoPE, SwiGLU FFN,
 * final norm and LM head, all through the kernel backend. The architecture files (llada.ts, dream.ts) supply
 * the weight names and their own padding rules (positions, which keys and queries are masked).
 *
 * Legend: B batch, L sequence length, T = B·L rows, D hidden, H query heads, Hkv KV heads, Dh head dim,
 * F FFN inner size, V vocabulary (logit width).
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';
import type { WeightStore } from '../load/weights.js';
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import { forwardPlanned } from './sparse-forward.js';
import type { DiffusionModel, ForwardBatch, Trace } from './types.js';
import { Scratch } from '../tensor/scratch.js';

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

/** Checkpoint names of one architecture. */
export interface WeightNames {
  readonly embed: string;
  readonly finalNorm: string;
  readonly head: string;
  layer(i: number): {
    attnNorm: string; wq: string; wk: string; wv: string; wo: string;
    bq: string | null; bk: string | null; bv: string | null;
    ffnNorm: string; gate: string; up: string; down: string;
  };
}

/** Per-architecture padding rules: the only place LLaDA and Dream differ in the forward pass. */
export interface PaddingRules {
  /** RoPE positions of one sequence's rows, written into pos[0, L); mask is that sequence's [L] or null. */
  positions(mask: Uint8Array | null, L: number, pos: Int32Array): void;
  /** Key mask of one sequence (null = every key visible). */
  keyMask(mask: Uint8Array | null): Uint8Array | null; // [L]
  /** Whether padded query rows get a zero attention output (Dream) or attend normally (LLaDA). */
  readonly zeroPadQueries: boolean;
}

/** Read every tensor an architecture needs, strictly, and hand the matrices to the backend. */
export function loadWeights(store: WeightStore, cfg: ModelConfig, names: WeightNames, backend: KernelBackend): TransformerWeights {
  const D = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const F = cfg.intermediateSize;
  const prep = (name: string, out: number, inp: number) => backend.prepareWeight(store.matrix(name, out, inp));
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const n = names.layer(i);
    layers.push({
      attnNorm: store.vector(n.attnNorm, D),
      wq: prep(n.wq, qDim, D),
      wk: prep(n.wk, kvDim, D),
      wv: prep(n.wv, kvDim, D),
      bq: n.bq ? store.vector(n.bq, qDim) : null,
      bk: n.bk ? store.vector(n.bk, kvDim) : null,
      bv: n.bv ? store.vector(n.bv, kvDim) : null,
      wo: prep(n.wo, D, qDim),
      ffnNorm: store.vector(n.ffnNorm, D),
      gate: prep(n.gate, F, D),
      up: prep(n.up, F, D),
      down: prep(n.down, D, F),
    });
  }
  const embed = store.matrix(names.embed, cfg.vocabSize, D);
  const head = cfg.tieWordEmbeddings
    ? backend.prepareWeight({ ...embed, data: embed.data.slice() })
    : prep(names.head, cfg.vocabSize, D);
  return { embed, layers, finalNorm: store.vector(names.finalNorm, D), head };
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

/** Dense bidirectional transformer shared by both architectures. */
export class Transformer implements DiffusionModel {
  readonly rope: RopeTable;
  readonly weightBytes: number;
  /** Work buffers reused across steps (forward and forwardPlanned are synchronous, so one set suffices). */
  readonly scratch = new Scratch();

  constructor(
    readonly config: ModelConfig,
    readonly backend: KernelBackend,
    readonly weights: TransformerWeights,
    readonly padding: PaddingRules,
  ) {
    this.rope = new RopeTable(config.headDim, config.ropeTheta);
    let n = weights.embed.data.byteLength + weights.head.nbytes;
    for (const l of weights.layers) n += l.wq.nbytes + l.wk.nbytes + l.wv.nbytes + l.wo.nbytes + l.gate.nbytes + l.up.nbytes + l.down.nbytes;
    this.weightBytes = n;
  }

  /** Positions and key masks of every sequence of `batch`; makes sure RoPE covers them. */
  geometry(batch: ForwardBatch): BatchGeometry {
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
      this.padding.positions(m, e - s, positions.subarray(s, e));
      keyMasks.push(this.padding.keyMask(m));
    }
    let maxPos = 0;
    for (let i = 0; i < T; i++) if (positions[i] > maxPos) maxPos = positions[i];
    this.rope.ensure(maxPos + 1);
    return { positions, keyMasks };
  }

  forwardPlanned(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts): Float32Array {
    return forwardPlanned(this, batch, plan, counts);
  }

  forward(batch: ForwardBatch, trace?: Trace): Float32Array {
    const cfg = this.config;
    const be = this.backend;
    const { seqStart } = batch;
    const B = seqStart.length - 1;
    const T = batch.tokens.length;
    const D = cfg.hiddenSize;
    const H = cfg.numHeads;
    const Hkv = cfg.numKvHeads;
    const Dh = cfg.headDim;
    const qDim = H * Dh;
    const kvDim = Hkv * Dh;
    const F = cfg.intermediateSize;
    const { positions, keyMasks } = this.geometry(batch);

    const sc = this.scratch;
    const x = sc.f32('x', T * D); // [T, D] residual stream
    const h = sc.f32('h', T * D); // [T, D] normed
    const q = sc.f32('q', T * qDim); // [T, H·Dh]
    const k = sc.f32('k', T * kvDim); // [T, Hkv·Dh]
    const v = sc.f32('v', T * kvDim); // [T, Hkv·Dh]
    const ctx = sc.f32('ctx', T * qDim); // [T, H·Dh]
    const o = sc.f32('o', T * D); // [T, D]
    const g = sc.f32('g', T * F); // [T, F]
    const u = sc.f32('u', T * F); // [T, F]

    embedTokens(this.weights.embed, batch.tokens, x);
    trace?.('embed', -1, x, T, D);
    for (let li = 0; li < this.weights.layers.length; li++) {
      const w = this.weights.layers[li];
      be.rmsnorm(x, T, D, w.attnNorm, cfg.rmsNormEps, h);
      trace?.('attn_norm', li, h, T, D);
      be.matmul(h, T, w.wq, q, w.bq);
      be.matmul(h, T, w.wk, k, w.bk);
      be.matmul(h, T, w.wv, v, w.bv);
      be.rope(q, T, H, Dh, positions, this.rope.cos, this.rope.sin);
      be.rope(k, T, Hkv, Dh, positions, this.rope.cos, this.rope.sin);
      trace?.('q', li, q, T, qDim);
      trace?.('k', li, k, T, kvDim);
      for (let b = 0; b < B; b++) {
        const s = seqStart[b];
        const L = seqStart[b + 1] - s;
        const km = keyMasks[b];
        be.attention(
          q.subarray(s * qDim, (s + L) * qDim), L,
          k.subarray(s * kvDim, (s + L) * kvDim), v.subarray(s * kvDim, (s + L) * kvDim), L,
          H, Hkv, Dh, km, ctx.subarray(s * qDim, (s + L) * qDim),
        );
        if (this.padding.zeroPadQueries && km) {
          for (let i = 0; i < L; i++) if (!km[i]) ctx.fill(0, (s + i) * qDim, (s + i + 1) * qDim);
        }
      }
      trace?.('attn_ctx', li, ctx, T, qDim);
      be.matmul(ctx, T, w.wo, o);
      trace?.('attn_out', li, o, T, D);
      be.add(x, o, T * D);
      be.rmsnorm(x, T, D, w.ffnNorm, cfg.rmsNormEps, h);
      be.matmul(h, T, w.gate, g);
      be.matmul(h, T, w.up, u);
      be.siluMul(g, u, T * F, g);
      be.matmul(g, T, w.down, o);
      trace?.('ffn_out', li, o, T, D);
      be.add(x, o, T * D);
    }
    be.rmsnorm(x, T, D, this.weights.finalNorm, cfg.rmsNormEps, h);
    trace?.('final_norm', -1, h, T, D);
    const rows = batch.logitRows ?? null;
    const R = rows ? rows.length : T;
    const logits = new Float32Array(R * cfg.vocabSize);
    be.matmul(h, R, this.weights.head, logits, null, rows);
    return logits;
  }
}
