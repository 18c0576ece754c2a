/**
 * The model contract. A model is a pure function of its weights and the inputs the caller passes: token ids,
 * the padding mask and which rows need logits. It holds no per-request state; caches belong to the caller.
 */
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';

/** A batch of equal-length sequences, left-padded. Shapes: B sequences × L positions, flattened row-major. */
export interface ForwardBatch {
  readonly tokens: Int32Array; // [B·L]
  readonly batch: number; // B
  readonly length: number; // L
  /** 1 = real token, 0 = padding; null = no padding anywhere. */
  readonly attentionMask: Uint8Array | null; // [B·L]
  /** Flattened rows (b·L + i) whose logits are wanted, in output order; null = every row. */
  readonly logitRows?: Int32Array | null;
}

/** Observes named intermediates (attn_norm, q, attn_ctx, attn_out, ffn_out, …) for parity tests. */
export type Trace = (name: string, layer: number, data: Float32Array, rows: number, width: number) => void;

export interface DiffusionModel {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  /** Logits [rows, V] for the requested rows (all rows when logitRows is null), unshifted. */
  forward(batch: ForwardBatch, trace?: Trace): Float32Array;
  /** Bytes of weights held by the backend. */
  readonly weightBytes: number;
}
