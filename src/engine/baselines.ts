/**
 * The paper's baselines as StepForwards (dyllm-algorithm.md §14), for comparison with DyLLM on the same engine,
 * kernels and sampler:
 *
 * - `prefix` / `dual`: Fast-dLLM PrefixCache and DualCache (NVlabs/Fast-dLLM llada/generate.py). A cache block
 *   [s, e) of `blockLength` positions; its first step is a dense step over the whole sequence that fills every
 *   layer's K/V; each later step of the block recomputes K/V, exact attention (against ALL keys: cached K/V for the
 *   other positions) and the FFN for query rows only — `[s, N)` for PrefixCache (block + masked suffix, the prefix
 *   stays as cached at block start), `[s, e)` for DualCache (prefix and suffix both stale). Expressed as
 *   RecomputePlans with the recompute-all policy on `model.forwardPlanned`.
 *   LLaDA: the current block is the one holding the first masked position of the response (so blocks that parallel
 *   decoding fills early advance early, as Fast-dLLM's `while` loop does). Dream has no sampler blocks here: the
 *   cache block advances every `steps · blockLength / G` steps, and rows whose logits the sampler reads are always
 *   query rows too (Dream may commit anywhere).
 * - `dllm-cache`: dLLM-Cache with V-verify (maomaocun/dLLM-cache), its own forward in models/dllm-cache-forward.ts:
 *   prompt refreshed every K_p steps, response every K_r steps, V-verify in between with ratio ρ.
 *
 * accel.ts (DyLLM) is the lead's; `resolveMethod` / `makeStepForward` are what it wires for these methods, and
 * until then callers pass `(layout) => makeStepForward(model, layout, opts)` as GenerateRequest.stepForward.
 */
import { SequenceCache } from '../cache/layer-cache.js';
import type { RecomputePlan, SequencePlan, StepCounts } from '../cache/plan.js';
import { recomputeAll } from '../cache/saliency.js';
import type { Architecture } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import { DllmSequenceCache, dllmCacheForward, type DllmCounts, type DllmSequencePlan } from '../models/dllm-cache-forward.js';
import { Transformer } from '../models/layers.js';
import type { DiffusionModel, ForwardBatch } from '../models/types.js';
import { accelTelemetry } from './telemetry.js';
import type { AccelTelemetry, CanvasLayout, StepForward } from './generate.js';
import type { GenerateOptions } from './options.js';

export type BaselineMethod = 'prefix' | 'dual' | 'dllm-cache';
export const BASELINE_METHODS: readonly BaselineMethod[] = ['prefix', 'dual', 'dllm-cache'];

export interface BaselineOptions {
  readonly method: BaselineMethod;
  /** Fast-dLLM cache block (LLaDA default: the generation block length; Dream: min(32, G)). */
  readonly blockLength: number;
  /** Denoising steps and generation length of the request (for Dream's step-based cache blocks). */
  readonly steps: number;
  readonly genLength: number;
  /** dLLM-Cache K_p: the prompt is refreshed when (s − 1) % K_p == 0 (1-based step s). */
  readonly promptInterval: number;
  /** dLLM-Cache K_r: the response is refreshed when (s − 1) % K_r == 0. */
  readonly genInterval: number;
  /** dLLM-Cache ρ: V-verify recomputes int(G·ρ) response rows per step between refreshes (0 = off). */
  readonly transferRatio: number;
}

export type BaselineOptionsInput = Partial<{
  method: string;
  blockLength: number;
  promptInterval: number;
  genInterval: number;
  transferRatio: number;
}>;

/** dLLM-Cache demo defaults (demo_LLaDA.py). */
export const DLLM_CACHE_DEFAULTS = Object.freeze({ promptInterval: 100, genInterval: 7, transferRatio: 0.25 });

export function isBaselineMethod(m: unknown): m is BaselineMethod {
  return typeof m === 'string' && (BASELINE_METHODS as readonly string[]).includes(m);
}

/** Validate a baseline request against the generation options it will run with. */
export function resolveMethod(arch: Architecture, input: BaselineOptionsInput, gen: GenerateOptions): BaselineOptions {
  const method = input.method;
  if (!isBaselineMethod(method)) throw new ConfigError(`accel: expected one of ${BASELINE_METHODS.join(', ')}, found ${JSON.stringify(method)}`);
  if (gen.cfgScale > 0) throw new ConfigError(`accel: classifier-free guidance with cached acceleration is not supported; use --accel none with --cfg-scale`);
  const G = gen.genLength;
  const blockLength = input.blockLength ?? (arch === 'dream' ? Math.min(32, G) : gen.blockLength);
  const int = (name: string, v: unknown, min: number) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new ConfigError(`${name}: expected an integer ≥ ${min}, found ${JSON.stringify(v)}`);
    return v;
  };
  int('cacheBlock', blockLength, 1);
  if (arch === 'llada' && (method === 'prefix' || method === 'dual') && gen.blockLength % blockLength !== 0) {
    throw new ConfigError(`cacheBlock: ${blockLength} must divide the generation block length ${gen.blockLength}`);
  }
  if (blockLength > G) throw new ConfigError(`cacheBlock: ${blockLength} is longer than the generation (${G})`);
  const promptInterval = int('promptInterval', input.promptInterval ?? DLLM_CACHE_DEFAULTS.promptInterval, 1);
  const genInterval = int('genInterval', input.genInterval ?? DLLM_CACHE_DEFAULTS.genInterval, 1);
  const transferRatio = input.transferRatio ?? DLLM_CACHE_DEFAULTS.transferRatio;
  if (typeof transferRatio !== 'number' || !Number.isFinite(transferRatio) || transferRatio < 0 || transferRatio > 1) {
    throw new ConfigError(`transferRatio: expected a number in [0, 1], found ${JSON.stringify(transferRatio)}`);
  }
  return Object.freeze({ method, blockLength, steps: gen.steps, genLength: G, promptInterval, genInterval, transferRatio });
}

/** The StepForward of a baseline for one request. */
export function makeStepForward(model: DiffusionModel, layout: CanvasLayout, opts: BaselineOptions): StepForward {
  if (opts.method === 'dllm-cache') return dllmCacheStepForward(model, layout, opts);
  return fastDllmStepForward(model, layout, opts);
}

/** Fast-dLLM PrefixCache / DualCache. */
function fastDllmStepForward(model: DiffusionModel, layout: CanvasLayout, opts: BaselineOptions): StepForward {
  const cfg = model.config;
  const dream = cfg.arch === 'dream';
  const caches = layout.lengths.map((n) => new SequenceCache(cfg, n));
  const lastBlock = layout.lengths.map(() => -1);
  const bl = opts.blockLength;
  const nBlocks = Math.ceil(layout.genLength / bl);
  const stepsPerBlock = Math.max(1, Math.floor((opts.steps * bl) / layout.genLength));
  let last: AccelTelemetry | null = null;

  return {
    forward(batch: ForwardBatch, active: readonly number[], step: number): Float32Array {
      const seqs: SequencePlan[] = [];
      let denseRows = 0;
      let refreshed = 0;
      active.forEach((b, ai) => {
        const s = batch.seqStart[ai];
        const N = batch.seqStart[ai + 1] - s;
        const tokens = batch.tokens.subarray(s, s + N);
        const g0 = layout.genStart[b];
        denseRows += N;
        let k: number;
        if (dream) {
          k = Math.min(nBlocks - 1, Math.floor(step / stepsPerBlock));
        } else {
          let first = -1;
          for (let i = g0; i < N; i++) if (tokens[i] === maskIdOf(model)) { first = i - g0; break; }
          k = first < 0 ? nBlocks - 1 : Math.floor(first / bl);
        }
        let rows: Int32Array;
        if (k !== lastBlock[b]) {
          // Block start: dense step over the whole sequence (fills every layer's K/V).
          lastBlock[b] = k;
          rows = iota(0, N);
          refreshed++;
        } else {
          const from = g0 + k * bl;
          const to = opts.method === 'prefix' ? N : Math.min(N, from + bl);
          const set = new Set<number>();
          for (let i = from; i < to; i++) set.add(i);
          // Rows whose logits the sampler reads must be query rows (Dream: anywhere, shifted by one).
          if (batch.logitRows) for (const r of batch.logitRows) if (r >= s && r < s + N) set.add(r - s);
          rows = Int32Array.from([...set].sort((x, y) => x - y));
        }
        seqs.push({ cache: caches[b], rows, salientIn: new Int32Array(0) });
      });
      const plan: RecomputePlan = { sequences: seqs, policy: recomputeAll };
      const counts: StepCounts = { salientPerLayer: new Array(cfg.numLayers).fill(0), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0, recomputed: [] };
      const logits = model.forwardPlanned(batch, plan, counts);
      last = accelTelemetry(refreshed === active.length ? `${opts.method}-refresh` : opts.method, counts, denseRows, cfg.numLayers, active, layout);
      return logits;
    },
    telemetry: () => last,
  };
}

/** dLLM-Cache with V-verify. */
function dllmCacheStepForward(model: DiffusionModel, layout: CanvasLayout, opts: BaselineOptions): StepForward {
  if (!(model instanceof Transformer)) throw new ConfigError('accel dllm-cache: needs the built-in Transformer model (its weights drive the dLLM-Cache forward)');
  const tf = model;
  const cfg = model.config;
  const caches = layout.lengths.map((n) => new DllmSequenceCache(cfg, n));
  let s = 0; // 1-based global step counter
  let last: AccelTelemetry | null = null;

  return {
    forward(batch: ForwardBatch, active: readonly number[]): Float32Array {
      s++;
      const refreshPrompt = (s - 1) % opts.promptInterval === 0;
      const refreshGen = (s - 1) % opts.genInterval === 0;
      const seqs: DllmSequencePlan[] = active.map((b) => ({ cache: caches[b], genStart: layout.genStart[b], refreshPrompt, refreshGen }));
      const counts: DllmCounts = { freshPerLayer: new Array(cfg.numLayers).fill(0), kvRows: 0, ffnRows: 0, verifyRows: 0, recomputed: [] };
      const logits = dllmCacheForward(tf, batch, { sequences: seqs, transferRatio: opts.transferRatio }, counts);
      let denseRows = 0;
      for (let ai = 0; ai < active.length; ai++) denseRows += batch.seqStart[ai + 1] - batch.seqStart[ai];
      last = accelTelemetry(refreshPrompt && refreshGen ? 'dllm-cache-refresh' : 'dllm-cache', { ...counts, salientPerLayer: counts.freshPerLayer }, denseRows, cfg.numLayers, active, layout);
      return logits;
    },
    telemetry: () => last,
  };
}

/** Cache bytes per token of a baseline (fp32): Fast-dLLM keeps the DyLLM-layout cache, dLLM-Cache K, V, AttnOut, FFNOut. */
export function baselineCacheBytesPerToken(model: DiffusionModel, method: BaselineMethod): number {
  const c = model.config;
  return method === 'dllm-cache' ? DllmSequenceCache.bytesPerToken(c) : c.numLayers * 2 * c.numKvHeads * c.headDim * 4;
}

function maskIdOf(model: DiffusionModel): number {
  return model.config.maskTokenId;
}


function iota(from: number, to: number): Int32Array {
  const a = new Int32Array(to - from);
  for (let i = 0; i < a.length; i++) a[i] = from + i;
  return a;
}
