/**
 * The model contract. A model is a pure function of its weights and the inputs the caller passes: token ids,
 * the padding mask and which rows need logits. It holds no per-request state; caches belong to the caller.
 */
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';

/**
 * A batch of sequences packed row after row (varlen): sequence b owns rows [seqStart[b], seqStart[b+1]).
 * Sequences never attend to each other, so packing without padding makes a batch compute exactly what each
 * sequence computes alone. Official-style left padding is expressed with `attentionMask` inside a sequence.
 */
export interface ForwardBatch {
  readonly tokens: Int32Array; // [T]
  readonly seqStart: Int32Array; // [B+1], seqStart[0] = 0, seqStart[B] = T
  /** 1 = real token, 0 = padding; null = no padding anywhere. */
  readonly attentionMask: Uint8Array | null; // [T]
  /** Rows whose logits are wanted, in output order; null = every row. */
  readonly logitRows?: Int32Array | null;
}

/** Pack equal-length rows [B, L] (as the official samplers build them) into a ForwardBatch. */
export function paddedBatch(tokens: Int32Array, B: number, L: number, attentionMask: Uint8Array | null = null, logitRows: Int32Array | null = null): ForwardBatch {
  const seqStart = new Int32Array(B + 1);
  for (let b = 0; b <= B; b++) seqStart[b] = b * L;
  return { tokens, seqStart, attentionMask, logitRows };
}

/** Observes named intermediates (attn_norm, q, attn_ctx, attn_out, ffn_out, …) for parity tests. */
export type Trace = (name: string, layer: number, data: Float32Array, rows: number, width: number) => void;

/**
 * Row statistics of logits rows (the shape of sampler/confidence.ts RowStats, declared here so models/ need not
 * import the sampler): argmax, the largest and second-largest softmax probability, Dream's Σ p·log p (or null).
 */
export interface LogitRowStats {
  readonly argmax: Int32Array;
  readonly p1: Float64Array;
  readonly p2: Float64Array;
  readonly negEntropy: Float64Array | null;
}

/** What an asynchronous step may be asked for instead of logits: the rows' statistics (with the entropy or not). */
export interface StatsRequest {
  readonly entropy: boolean;
}

export interface DiffusionModel {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  /** Logits [rows, V] for the requested rows (all rows when logitRows is null), unshifted. */
  forward(batch: ForwardBatch, trace?: Trace): Float32Array;
  /**
   * A cached step under a RecomputePlan (DyLLM mechanism): reads/writes the plan's per-layer caches, recomputes
   * only what the plan and its policy select, and adds what it recomputed to `counts`. Logits for
   * batch.logitRows, which must be query rows of the plan.
   */
  forwardPlanned(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts): Float32Array;
  /** Bytes of weights held by the backend. */
  readonly weightBytes: number;
  /**
   * A device-resident model (WebGPU, models/forward/gpu.ts) computes its dense forward asynchronously: logits of
   * batch.logitRows, or, when `stats` is given, only those rows' statistics (what a greedy sampler reads). Absent on
   * host models; the denoising loop awaits it when the acceleration method's step offers it.
   */
  forwardAsync?(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats>;
  /**
   * A device-resident model's cached step (DyLLM on WebGPU, models/forward/gpu-planned.ts): `forwardPlanned`,
   * asynchronously, with the per-layer caches on the device; logits of batch.logitRows or, with `stats`, their row
   * statistics. A plan it cannot run is refused with a RangeError (one line) before anything runs.
   */
  forwardPlannedAsync?(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats>;
}
