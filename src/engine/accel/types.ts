/**
 * The contract between the denoising loop and an acceleration method. A method is one file in this folder, listed
 * once in registry.ts: it declares its knobs (the option schema's OptionSpecs), resolves them over its defaults, and
 * creates per request a StepForward — the object that computes each step's logits (through the model's planned
 * forward, a forward of its own, or the plain dense model) and reports what it recomputed.
 *
 * May import: load/, models/, cache/, families/ (types), engine/schema and engine/options (types). Imported by
 * every method file, the registry and the loop; never the other way round.
 */
import type { RecomputePlan, StepCounts } from '../../cache/plan.js';
import type { DiffusionFamily } from '../../families/types.js';
import type { ModelConfig } from '../../load/config.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from '../../models/types.js';
import type { GenerateOptions } from '../options.js';
import type { OptionContext, OptionSpec } from '../schema.js';

/** How sequences sit in the model's rows: each owns [start, start + length) with its generation at genStart. */
export interface CanvasLayout {
  readonly lengths: readonly number[];
  /** Offset of the generated region inside each sequence. */
  readonly genStart: readonly number[];
  readonly genLength: number;
  /** Attention mask per sequence (left-pad layout) or null. */
  readonly masks: readonly (Uint8Array | null)[];
}

/**
 * One request's step as a RecomputePlan, for a caller that runs several requests' plans in ONE planned forward
 * (engine/canvas.ts `forwardMergedPlanned`: salient rows of all requests in one GEMM per projection, attention per
 * sequence against its own caches).
 */
export interface PlannedPart {
  /** Parts with equal keys may share a forward: same saliency policy, context update and o_proj reuse. */
  readonly key: string;
  /** This request's sequences, in batch order. */
  readonly plan: RecomputePlan;
  /** Takes this request's counts of the step (its sequences only) as its telemetry. */
  done(counts: StepCounts): void;
}

/** What a step computes logits with: the dense model, or an accelerated forward holding per-request caches. */
export interface StepForward {
  /** Logits [logitRows, V] for `batch`; `active` are the request's sequence indices in batch order. */
  forward(batch: ForwardBatch, active: readonly number[], step: number): Float32Array;
  /**
   * Instead of `forward` (exactly one of the two per step): the step's plan, for a merged planned forward. Methods
   * whose steps are all RecomputePlans offer it; the result must equal `forward`'s.
   */
  plan?(batch: ForwardBatch, active: readonly number[], step: number): PlannedPart;
  /**
   * An asynchronous step (a device-resident model: models/forward/gpu.ts): when present, `generate()` awaits it
   * instead of calling `forward`. With `stats` (the sampler reads only row statistics: greedy, no top-p/top-k, no
   * logprobs, no guidance) it may return those rows' statistics instead of their logits.
   */
  forwardAsync?(batch: ForwardBatch, active: readonly number[], step: number, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats>;
  /** Per-step acceleration telemetry (null for dense). */
  telemetry(): AccelTelemetry | null;
}

/** Recompute counts reported by accelerated forwards; dense steps report null. */
export interface AccelTelemetry {
  readonly method: string;
  /** Salient (FFN-recomputed) rows per layer this step. */
  readonly salientPerLayer: readonly number[];
  /** FFN rows recomputed ÷ the rows a dense step computes, this step. */
  readonly ffnFraction: number;
  /** K/V rows recomputed ÷ dense, this step. */
  readonly kvFraction: number;
  /** Absolute positions per sequence whose FFN was recomputed in the last layer (for visualisation). */
  readonly recomputed?: readonly Int32Array[];
  readonly ffnRows: number;
  readonly kvRows: number;
  /** Rows a dense step computes in all layers (Σ sequence lengths × layers). */
  readonly denseFfnRows: number;
  /** (sequence, layer) pairs whose o_proj outputs were updated through the projected ΔV instead of recomputed. */
  readonly oProjReused?: number;
  /** DyLLM qkvTol: query rows (Σ over layers) whose Q, and A_in rows whose K/V, came from the cache. */
  readonly qReused?: number;
  readonly kvReused?: number;
  /** DyLLM headTol: logits rows copied from the head cache, of headRows returned. */
  readonly headReused?: number;
  readonly headRows?: number;
}

/** A method's resolved options: its name and its knobs over their defaults (frozen). */
export interface AccelOptions {
  readonly method: string;
  readonly [knob: string]: unknown;
}

/** Acceleration options as callers give them: the method and any declared knobs (unset ones take defaults). */
export interface AccelOptionsInput {
  method?: string;
  [knob: string]: unknown;
}

/** One request as a method's `create` sees it. */
export interface AccelRequest {
  readonly model: DiffusionModel;
  readonly layout: CanvasLayout;
  /** The request's resolved generation options. */
  readonly gen: GenerateOptions;
  /** The model's diffusion family (which rows predict which positions, whether it denoises in blocks). */
  readonly family: DiffusionFamily;
}

/** A row of `dyllm bench`'s comparison matrix that a method contributes. */
export interface BenchRow {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** Its colour in the accuracy-vs-throughput plot. */
  readonly color: string;
}

export interface AccelMethod<O extends AccelOptions = AccelOptions> {
  /** The `accel` value that selects it (`--accel NAME`, `"dyllm": {"accel": NAME}`). */
  readonly name: string;
  /** What it is, for help ("DyLLM", "Fast-dLLM"); an empty string leaves it out of the help line. */
  readonly source: string;
  /** Its knobs, declared once: CLI flags, HTTP fields, ranges and help derive from them. Methods may share one. */
  readonly options: readonly OptionSpec[];
  /** Library-only knobs (testing hooks) that `resolve` accepts and checks itself. */
  readonly hooks?: readonly string[];
  /** Every step is the plain dense forward: requests may then share one merged forward (server/scheduler.ts). */
  readonly dense?: boolean;
  /** Its rows of `dyllm bench`'s matrix, in order (none: not benchmarked). */
  readonly benchRows?: readonly BenchRow[];
  /**
   * Its options over their defaults. `input` holds declared knobs already checked against their declarations (of
   * any method: each takes its own) and its hooks unchecked; `ctx` is the model and the resolved gen length.
   */
  resolve(input: Readonly<Record<string, unknown>>, ctx: OptionContext): O;
  /** One request's state: the StepForward computing each step. Checks what only the request reveals. */
  create(req: AccelRequest, opts: O): StepForward;
  /** Activation cache bytes per token it keeps (0: none). */
  cacheBytesPerToken(cfg: ModelConfig, opts: O): number;
  /** A short name for tables and logs ("dyllm τ=0.99"). */
  label(opts: O): string;
  /** Method-specific fields of `dyllm generate --json` stats (e.g. DyLLM's threshold). */
  stats?(opts: O): Readonly<Record<string, unknown>>;
}
