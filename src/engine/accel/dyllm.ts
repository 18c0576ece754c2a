/**
 * `dyllm`: DyLLM (arXiv 2603.08026), this project's subject. The method owns a request's per-sequence caches and
 * the step schedule, builds a RecomputePlan each step and lets the model obey it (models/forward/planned.ts):
 * `fullSteps` dense warm-up steps fill the caches; every later step is sparse, with response-only query rows
 * except every `promptPeriod`-th step, and layer 0's salient set = the positions committed in the previous step.
 * Which rows are salient in each layer is the saliency policy's decision (cache/saliency.ts: cos < τ).
 *
 * Two options go beyond the paper, both off by default (the paper's behaviour): `qkvTol` skips the Q/K/V projections
 * of rows whose normed layer input moved by at most that relative L2 distance since their cached Q or K/V were
 * projected, and `headTol` likewise skips the LM head for logits rows whose normed final hidden state barely moved,
 * returning the cached logits row (cache/plan.ts, models/forward/planned.ts). At 0 both reuse only bit-identical
 * inputs and give the paper's tokens exactly. The head cache holds whole logits rows, not per-row statistics, so
 * every sampler setting (temperature, top-k/top-p, Dream's entropy confidence) reads a full row and nothing is
 * refused; the price is V floats per generated position (bounded: HEAD_CACHE_MAX_BYTES).
 */
import { cacheBytesPerToken, headBytesPerToken, SequenceCache } from '../../cache/layer-cache.js';
import { emptyCounts, type AttnUpdate, type RecomputePlan, type SequencePlan } from '../../cache/plan.js';
import type { ForwardBatch, StatsRequest } from '../../models/types.js';
import { cosineThreshold, recomputeAll } from '../../cache/saliency.js';
import { allFamilies } from '../../families/registry.js';
import { ConfigError } from '../../load/errors.js';
import { MAX_COUNT, type OptionSpec } from '../schema.js';
import { addLogitPositions, iota, sortedRows } from './rows.js';
import { accelTelemetry } from './telemetry.js';
import type { AccelMethod, AccelOptions, AccelTelemetry, PlannedPart } from './types.js';

export interface DyllmOptions extends AccelOptions {
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
  /** Beyond the paper: reuse Q/K/V of rows whose normed layer input moved by at most this relative distance (null: off). */
  readonly qkvTol: number | null;
  /** Beyond the paper: reuse logits rows whose normed final hidden state moved by at most this relative distance (null: off). */
  readonly headTol: number | null;
  /** Testing hook: every position is a query row and salient in every layer (≡ dense). */
  readonly allSalient: boolean;
}

/** τ when the model's family sets none (DiffusionFamily.accelDefaults; the paper: 0.99 LLaDA, 0.995 Dream). */
const THRESHOLD = 0.99;

/** The families' defaults as help text: "0.99 LLaDA, 0.995 Dream". */
function thresholdHelp(): string {
  return allFamilies().map((f) => `${f.accelDefaults.dyllm?.threshold ?? THRESHOLD} ${f.label}`).join(', ');
}

/** Most bytes one sequence's LM head cache (headTol) may take: (gen length + 1) logits rows of V floats. */
export const HEAD_CACHE_MAX_BYTES = 2 ** 31;

const OPTIONS: readonly OptionSpec[] = [
  { key: 'threshold', flag: 'threshold', field: 'dyllm.threshold', type: 'number', metavar: 'T', range: { min: -1, max: 1.5, minExclusive: true }, help: 'DyLLM cosine threshold τ: a row is salient when cos < τ', defaultHelp: thresholdHelp() },
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
  {
    key: 'qkvTol', flag: 'qkv-tol', field: 'dyllm.qkv_tol', type: 'number', nullable: true, metavar: 'E', range: { min: 0, max: 1 },
    help: 'DyLLM, beyond the paper: reuse cached Q/K/V of rows whose normed layer input moved by at most E (relative L2; 0: only unchanged inputs, exact)', defaultHelp: 'off',
  },
  {
    key: 'headTol', flag: 'head-tol', field: 'dyllm.head_tol', type: 'number', nullable: true, metavar: 'E', range: { min: 0, max: 1 },
    help: 'DyLLM, beyond the paper: reuse cached logits rows whose normed final hidden state moved by at most E (relative L2; 0: only unchanged, exact)', defaultHelp: 'off',
  },
];

/** Whether DyLLM under these options keeps o_proj outputs in its caches. */
function keepsOutputs(opts: Pick<DyllmOptions, 'oProj' | 'attnUpdate'>): boolean {
  return opts.oProj !== 'recompute' && opts.attnUpdate === 'delta';
}

export const dyllm: AccelMethod<DyllmOptions> = {
  name: 'dyllm',
  source: 'DyLLM',
  options: OPTIONS,
  hooks: ['allSalient'],
  benchRows: [
    { name: 'DyLLM τ=0.99', options: { threshold: 0.99 }, color: '#d62728' },
    { name: 'DyLLM τ=0.995', options: { threshold: 0.995 }, color: '#ff7f0e' },
  ],
  resolve(input, ctx) {
    const headTol = (input.headTol as number | null | undefined) ?? null;
    if (headTol !== null && ctx.genLength !== undefined) {
      const bytes = (ctx.genLength + 1) * ctx.vocabSize * 4;
      if (bytes > HEAD_CACHE_MAX_BYTES) {
        throw new ConfigError(`headTol: caching the logits of ${ctx.genLength + 1} positions × ${ctx.vocabSize} vocabulary entries needs ${(bytes / 2 ** 30).toFixed(1)} GiB per sequence, at most ${HEAD_CACHE_MAX_BYTES / 2 ** 30} GiB; lower the gen length or leave headTol off`);
      }
    }
    const allSalient = input.allSalient ?? false;
    if (typeof allSalient !== 'boolean') throw new ConfigError(`allSalient: expected true or false, found ${JSON.stringify(allSalient)}`);
    return {
      method: 'dyllm',
      threshold: (input.threshold as number | undefined) ?? THRESHOLD,
      fullSteps: (input.fullSteps as number | undefined) ?? 4,
      promptPeriod: (input.promptPeriod as number | undefined) ?? 4,
      attnUpdate: (input.attnUpdate as AttnUpdate | undefined) ?? 'delta',
      oProj: (input.oProj as DyllmOptions['oProj'] | undefined) ?? 'reuse',
      qkvTol: (input.qkvTol as number | null | undefined) ?? null,
      headTol,
      allSalient,
    };
  },
  create: ({ model, layout, family }, opts) => {
    const cfg = model.config;
    // A device-resident model (WebGPU: models/forward/gpu-planned.ts) projects every query row's context: 'reuse'
    // only chooses the cheaper of two ways to the same outputs (up to fp32 rounding), and the GPU has one.
    const onDevice = model.forwardPlannedAsync !== undefined;
    const reuseOutput = !keepsOutputs(opts) || (onDevice && opts.oProj === 'reuse') ? undefined : opts.oProj === 'reuse-always' ? 'always' as const : 'when-cheaper' as const;
    const caches = layout.lengths.map((n, b) => new SequenceCache(cfg, n, {
      outputs: reuseOutput !== undefined,
      projections: opts.qkvTol !== null,
      ...(opts.headTol !== null ? { head: { base: Math.max(0, layout.genStart[b] - 1) } } : {}),
    }));
    const policy = cosineThreshold(opts.threshold);
    let last: AccelTelemetry | null = null;
    let p = 0; // 1-based count of forwards (the official processed_steps)
    const plan = (batch: ForwardBatch, active: readonly number[]): PlannedPart => {
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
          // Response rows, plus any row whose logits the sampler reads. The row predicting the first response
          // position is always one (with shifted logits the last prompt row, HF semantics; the official DyLLM code,
          // scale-snu/DyLLM, shifts the flattened query rows instead).
          const set = new Set<number>([family.logitRow(g0)]);
          for (let i = g0; i < N; i++) set.add(i);
          addLogitPositions(batch, ai, set);
          rows = sortedRows(set);
        }
        const changed: number[] = [];
        if (!dense) for (let i = g0; i < N; i++) if (tokens[i] !== cache.lastTokens[i]) changed.push(i);
        cache.lastTokens.set(tokens);
        seqs.push({ cache, rows, salientIn: Int32Array.from(changed) });
      });
      const rp: RecomputePlan = {
        sequences: seqs, policy: dense ? recomputeAll : policy, attnUpdate: opts.attnUpdate, reuseOutput,
        ...(opts.qkvTol !== null ? { qkvTol: opts.qkvTol } : {}),
        ...(opts.headTol !== null ? { headTol: opts.headTol } : {}),
      };
      return {
        key: `${rp.policy.name}|${opts.attnUpdate}|${reuseOutput ?? 'none'}${opts.qkvTol !== null ? `|qkv-tol ${opts.qkvTol}` : ''}${opts.headTol !== null ? `|head-tol ${opts.headTol}` : ''}`,
        plan: rp,
        done: (counts) => {
          last = accelTelemetry(dense ? 'dyllm-dense' : 'dyllm', counts, denseRows, cfg.numLayers, active, layout);
        },
      };
    };
    return {
      forward(batch, active) {
        const part = plan(batch, active);
        const counts = emptyCounts(cfg.numLayers);
        const logits = model.forwardPlanned(batch, part.plan, counts);
        part.done(counts);
        return logits;
      },
      plan,
      // On a device-resident model the step is asynchronous, with the caches on the device.
      ...(onDevice ? {
        async forwardAsync(batch: ForwardBatch, active: readonly number[], _step: number, stats: StatsRequest | null) {
          const part = plan(batch, active);
          const counts = emptyCounts(cfg.numLayers);
          const out = await model.forwardPlannedAsync!(batch, part.plan, counts, stats);
          part.done(counts);
          return out;
        },
      } : {}),
      telemetry: () => last,
    };
  },
  // The head cache is per generated position; counted per token of the whole canvas here (an upper bound).
  cacheBytesPerToken: (cfg, opts) => cacheBytesPerToken(cfg, keepsOutputs(opts), opts.qkvTol !== null) + (opts.headTol !== null ? headBytesPerToken(cfg) : 0),
  label: (opts) => `dyllm τ=${opts.threshold}${opts.qkvTol !== null ? ` qkv-tol=${opts.qkvTol}` : ''}${opts.headTol !== null ? ` head-tol=${opts.headTol}` : ''}`,
  stats: (opts) => ({ threshold: opts.threshold, ...(opts.qkvTol !== null ? { qkvTol: opts.qkvTol } : {}), ...(opts.headTol !== null ? { headTol: opts.headTol } : {}) }),
};
