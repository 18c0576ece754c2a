/**
 * Acceleration as a StepForward: it owns a request's per-sequence caches and the step schedule, builds a
 * RecomputePlan each step and lets the model obey it. DyLLM (dyllm-algorithm.md §4): `fullSteps` dense warm-up
 * steps fill the caches; every later step is sparse, with response-only query rows except every
 * `promptPeriod`-th step, and layer 0's salient set = the positions committed in the previous step.
 */
import { cacheBytesPerToken, SequenceCache } from '../cache/layer-cache.js';
import type { AttnUpdate, RecomputePlan, SaliencyPolicy, SequencePlan, StepCounts } from '../cache/plan.js';
import { cosineThreshold, recomputeAll } from '../cache/saliency.js';
import type { Architecture, ModelConfig } from '../load/config.js';
import { BASELINE_METHODS, DLLM_CACHE_DEFAULTS, type BaselineMethod } from './baselines.js';
import { ConfigError } from '../load/errors.js';
import { optionContext, type GenerateOptions, type OptionModel } from './options.js';
import { checkOption, declareOptions, didYouMean, MAX_COUNT, type OptionContext, type OptionSpec } from './schema.js';
import type { DiffusionModel, ForwardBatch } from '../models/types.js';
import type { AccelTelemetry, CanvasLayout, StepForward } from './generate.js';
import { accelTelemetry } from './telemetry.js';

/** none = dense; dyllm = this project's subject; prefix/dual = Fast-dLLM; dllm-cache = dLLM-Cache (V-verify). */
export type AccelMethod = 'none' | 'dyllm' | BaselineMethod;

export interface AccelOptions {
  readonly method: AccelMethod;
  /** τ: a row is salient when cos(new, cached context) < τ. */
  readonly threshold: number;
  /** Dense warm-up steps (paper: T_full = 4). */
  readonly fullSteps: number;
  /** Every promptPeriod-th step also queries the prompt rows (official code: 4). */
  readonly promptPeriod: number;
  /** How non-salient rows' contexts follow the changed K/V columns (cache/plan.ts AttnUpdate). */
  readonly attnUpdate: AttnUpdate;
  /**
   * 'reuse' (default): with the delta update, update each non-salient row's cached o_proj output by the projected
   * ΔV columns when that is cheaper than projecting every row (exact up to fp32 rounding); 'recompute': o_proj of
   * every query row every step, as the official code does; 'reuse-always': reuse whatever it costs (testing hook).
   */
  readonly oProj: 'reuse' | 'recompute' | 'reuse-always';
  /** Testing hook: every position is a query row and salient in every layer (≡ dense). */
  readonly allSalient: boolean;
  /** Baselines (engine/baselines.ts): Fast-dLLM cache block; dLLM-Cache K_p, K_r and ρ. */
  readonly cacheBlock?: number;
  readonly promptInterval?: number;
  readonly genInterval?: number;
  readonly transferRatio?: number;
}

export type AccelOptionsInput = Partial<{ -readonly [K in keyof AccelOptions]: AccelOptions[K] }>;

/** The paper's fast settings: τ 0.99 for LLaDA, 0.995 for Dream. */
export const DEFAULT_THRESHOLD: Readonly<Record<Architecture, number>> = { llada: 0.99, dream: 0.995 };

export const ACCEL_METHODS: readonly AccelMethod[] = ['none', 'dyllm', ...BASELINE_METHODS];

/** Acceleration options, declared once (engine/schema.ts). */
export const ACCEL_OPTIONS: readonly OptionSpec[] = declareOptions([
  { key: 'method', flag: 'accel', field: 'dyllm.accel', type: 'enum', values: ACCEL_METHODS, metavar: 'M', help: 'dyllm (DyLLM), prefix / dual (Fast-dLLM), dllm-cache (dLLM-Cache)', defaultHelp: 'none' },
  { key: 'threshold', flag: 'threshold', field: 'dyllm.threshold', type: 'number', metavar: 'T', range: { min: -1, max: 1.5, minExclusive: true }, help: 'DyLLM cosine threshold τ: a row is salient when cos < τ', defaultHelp: '0.99 LLaDA, 0.995 Dream' },
  { key: 'fullSteps', flag: 'full-steps', field: 'dyllm.full_steps', type: 'int', metavar: 'N', range: { min: 1, max: MAX_COUNT }, help: 'DyLLM dense warm-up steps', defaultHelp: '4' },
  { key: 'promptPeriod', flag: 'prompt-period', field: 'dyllm.prompt_period', type: 'int', metavar: 'N', range: { min: 1, max: MAX_COUNT }, help: 'DyLLM: query the prompt rows every N-th step', defaultHelp: '4' },
  {
    key: 'attnUpdate', flag: 'attn-update', field: 'dyllm.attn_update', type: 'enum', values: ['delta', 'rescale', 'rescale-incremental'], metavar: 'U',
    help: "DyLLM non-salient context update (delta: the paper's; rescale: corrected for the changed softmax weights)", defaultHelp: 'delta',
  },
  {
    key: 'oProj', flag: 'o-proj', field: 'dyllm.o_proj', type: 'enum', values: ['reuse', 'recompute'], hiddenValues: ['reuse-always'], metavar: 'P',
    help: 'DyLLM o_proj: reuse cached outputs + projected ΔV when cheaper (same result to fp32 rounding), or recompute every query row', defaultHelp: 'reuse',
  },
  { key: 'cacheBlock', flag: 'cache-block', field: 'dyllm.cache_block', type: 'int', metavar: 'N', range: (c) => ({ min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' }), help: 'Fast-dLLM prefix/dual cache block', defaultHelp: 'the block length; Dream: min(32, gen length)' },
  { key: 'promptInterval', flag: 'refresh-prompt', field: 'dyllm.refresh_prompt', type: 'int', metavar: 'K', range: { min: 1, max: MAX_COUNT }, help: 'dLLM-Cache K_p: refresh the prompt every K steps', defaultHelp: String(DLLM_CACHE_DEFAULTS.promptInterval) },
  { key: 'genInterval', flag: 'refresh-gen', field: 'dyllm.refresh_gen', type: 'int', metavar: 'K', range: { min: 1, max: MAX_COUNT }, help: 'dLLM-Cache K_r: refresh the response every K steps', defaultHelp: String(DLLM_CACHE_DEFAULTS.genInterval) },
  { key: 'transferRatio', flag: 'transfer-ratio', field: 'dyllm.transfer_ratio', type: 'number', metavar: 'R', range: { min: 0, max: 1 }, help: 'dLLM-Cache V-verify ratio ρ (0 = off)', defaultHelp: String(DLLM_CACHE_DEFAULTS.transferRatio) },
]);

const ACCEL_KEYS = [...ACCEL_OPTIONS.map((s) => s.key), 'allSalient'];

/**
 * Acceleration options over their defaults, every value checked against its declaration. `gen` (the request's
 * resolved generation options) bounds the options that depend on it (the cache block).
 */
export function resolveAccel(model: OptionModel, input: AccelOptionsInput, gen?: GenerateOptions): AccelOptions {
  for (const k of Object.keys(input)) {
    if ((input as Record<string, unknown>)[k] !== undefined && !ACCEL_KEYS.includes(k)) throw new ConfigError(`unknown acceleration option "${k}"${didYouMean(k, ACCEL_KEYS)}`);
  }
  const ctx: OptionContext = { ...optionContext(model), genLength: gen?.genLength };
  const get = <T>(key: keyof AccelOptionsInput, fallback: T | undefined): T | undefined => {
    const v = input[key];
    const s = ACCEL_OPTIONS.find((o) => o.key === key)!;
    if (v === undefined) return fallback;
    return checkOption(s, v, ctx) as T;
  };
  const allSalient = input.allSalient ?? false;
  if (typeof allSalient !== 'boolean') throw new ConfigError(`allSalient: expected true or false, found ${JSON.stringify(allSalient)}`);
  return Object.freeze({
    method: get<AccelMethod>('method', 'none')!,
    threshold: get<number>('threshold', DEFAULT_THRESHOLD[ctx.arch])!,
    fullSteps: get<number>('fullSteps', 4)!,
    promptPeriod: get<number>('promptPeriod', 4)!,
    attnUpdate: get<AttnUpdate>('attnUpdate', 'delta')!,
    oProj: get<AccelOptions['oProj']>('oProj', 'reuse')!,
    allSalient,
    cacheBlock: get<number>('cacheBlock', undefined),
    promptInterval: get<number>('promptInterval', undefined),
    genInterval: get<number>('genInterval', undefined),
    transferRatio: get<number>('transferRatio', undefined),
  });
}

/** Whether DyLLM under these options keeps o_proj outputs in its caches. */
function keepsOutputs(opts: Pick<AccelOptions, 'oProj' | 'attnUpdate'>): boolean {
  return opts.oProj !== 'recompute' && opts.attnUpdate === 'delta';
}

/** Cache bytes per token of a model under DyLLM (all layers). */
export function dyllmCacheBytesPerToken(cfg: ModelConfig, opts: Pick<AccelOptions, 'oProj' | 'attnUpdate'> = { oProj: 'reuse', attnUpdate: 'delta' }): number {
  return cacheBytesPerToken(cfg, keepsOutputs(opts));
}

/** The DyLLM StepForward for one request. */
export function dyllmStepForward(model: DiffusionModel, layout: CanvasLayout, opts: AccelOptions): StepForward {
  const cfg = model.config;
  const reuseOutput = !keepsOutputs(opts) ? undefined : opts.oProj === 'reuse-always' ? 'always' as const : 'when-cheaper' as const;
  const caches = layout.lengths.map((n) => new SequenceCache(cfg, n, { outputs: reuseOutput !== undefined }));
  const policy: SaliencyPolicy = cosineThreshold(opts.threshold);
  let last: AccelTelemetry | null = null;
  let p = 0; // 1-based count of forwards (the official processed_steps)

  return {
    forward(batch: ForwardBatch, active: readonly number[]): Float32Array {
      p++;
      const dense = opts.allSalient || p <= opts.fullSteps;
      const queryAll = dense || p % opts.promptPeriod === 0;
      const seqs: SequencePlan[] = [];
      let denseRows = 0;
      active.forEach((b, ai) => {
        const s = batch.seqStart[ai];
        const N = batch.seqStart[ai + 1] - s;
        const tokens = batch.tokens.subarray(s, s + N);
        const cache = caches[b];
        const g0 = layout.genStart[b];
        denseRows += N;
        let rows: Int32Array;
        if (queryAll) {
          rows = iota(0, N);
        } else {
          // Response rows, plus any row whose logits the sampler reads. Shifted-logit models (Dream) always add
          // the last prompt row g0 − 1, whose output predicts the first response position (HF semantics; the
          // official DyLLM code shifts the flattened query rows instead, spec §8).
          const set = new Set<number>();
          if (cfg.shiftLogits && g0 > 0) set.add(g0 - 1);
          for (let i = g0; i < N; i++) set.add(i);
          if (batch.logitRows) for (const r of batch.logitRows) if (r >= s && r < s + N) set.add(r - s);
          rows = Int32Array.from([...set].sort((x, y) => x - y));
        }
        const changed: number[] = [];
        if (!dense) for (let i = g0; i < N; i++) if (tokens[i] !== cache.lastTokens[i]) changed.push(i);
        cache.lastTokens.set(tokens);
        seqs.push({ cache, rows, salientIn: Int32Array.from(changed) });
      });
      const plan: RecomputePlan = { sequences: seqs, policy: dense ? recomputeAll : policy, attnUpdate: opts.attnUpdate, reuseOutput };
      const counts: StepCounts = { salientPerLayer: new Array(cfg.numLayers).fill(0), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0, recomputed: [] };
      const logits = model.forwardPlanned(batch, plan, counts);
      last = accelTelemetry(dense ? 'dyllm-dense' : 'dyllm', counts, denseRows, cfg.numLayers, active, layout);
      return logits;
    },
    telemetry: () => last,
  };
}

function iota(from: number, to: number): Int32Array {
  const a = new Int32Array(to - from);
  for (let i = 0; i < a.length; i++) a[i] = from + i;
  return a;
}
