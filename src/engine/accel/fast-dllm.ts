/**
 * `prefix` / `dual`: Fast-dLLM's PrefixCache and DualCache (arXiv 2505.22618; NVlabs/Fast-dLLM llada/generate.py),
 * the paper's comparison methods on the same engine, kernels and sampler. A cache block [s, e) of `cacheBlock`
 * positions; its first step is a dense step over the whole sequence that fills every layer's K/V; each later step
 * of the block recomputes K/V, exact attention (against ALL keys: cached K/V for the other positions) and the FFN
 * for query rows only — `[s, N)` for PrefixCache (block + masked suffix; the prefix stays as cached at block start),
 * `[s, e)` for DualCache (prefix and suffix both stale). Expressed as RecomputePlans with the recompute-all policy on
 * the model's planned forward.
 *
 * With sampler blocks (LLaDA) the current cache block is the one holding the first masked position of the response,
 * so blocks that parallel decoding fills early advance early, as Fast-dLLM's `while` loop does. Without them (Dream)
 * the cache block advances every `steps · cacheBlock / G` steps, and the rows whose logits the sampler reads are
 * always query rows too (such a sampler may commit anywhere).
 */
import { cacheBytesPerToken, SequenceCache } from '../../cache/layer-cache.js';
import type { RecomputePlan, SequencePlan, StepCounts } from '../../cache/plan.js';
import { recomputeAll } from '../../cache/saliency.js';
import { ConfigError } from '../../load/errors.js';
import type { OptionSpec } from '../schema.js';
import { addLogitPositions, iota, sortedRows } from './rows.js';
import { accelTelemetry } from './telemetry.js';
import type { AccelMethod, AccelOptions, AccelRequest, AccelTelemetry, StepForward } from './types.js';

export interface FastDllmOptions extends AccelOptions {
  readonly method: 'prefix' | 'dual';
  /** Cache block; unset: the generation block length (no sampler blocks: min(32, G)). */
  readonly cacheBlock?: number;
}

/** Fast-dLLM's cache block without sampler blocks (its Dream setting), capped at the gen length. */
const UNBLOCKED_CACHE_BLOCK = 32;

const CACHE_BLOCK: OptionSpec = {
  key: 'cacheBlock', flag: 'cache-block', field: 'dyllm.cache_block', type: 'int', metavar: 'N',
  range: (c) => ({ min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' }),
  help: 'Fast-dLLM prefix/dual cache block', defaultHelp: 'the block length; Dream: min(32, gen length)',
};

/** The cache block of a request; refused when it cannot tile the request's blocks. */
function cacheBlockOf({ gen, family }: AccelRequest, opts: FastDllmOptions): number {
  const G = gen.genLength;
  const blocks = family.usesBlocks;
  const bl = opts.cacheBlock ?? (blocks ? gen.blockLength : Math.min(UNBLOCKED_CACHE_BLOCK, G));
  if (blocks && gen.blockLength % bl !== 0) throw new ConfigError(`cacheBlock: ${bl} must divide the generation block length ${gen.blockLength}`);
  if (bl > G) throw new ConfigError(`cacheBlock: ${bl} is longer than the generation (${G})`);
  return bl;
}

function create(req: AccelRequest, opts: FastDllmOptions): StepForward {
  const { model, layout, gen } = req;
  const cfg = model.config;
  const blocks = req.family.usesBlocks;
  const bl = cacheBlockOf(req, opts);
  const caches = layout.lengths.map((n) => new SequenceCache(cfg, n));
  const lastBlock = layout.lengths.map(() => -1);
  const nBlocks = Math.ceil(layout.genLength / bl);
  const stepsPerBlock = Math.max(1, Math.floor((gen.steps * bl) / layout.genLength));
  let last: AccelTelemetry | null = null;
  return {
    forward(batch, active, step) {
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
        if (!blocks) {
          k = Math.min(nBlocks - 1, Math.floor(step / stepsPerBlock));
        } else {
          let first = -1;
          for (let i = g0; i < N; i++) if (tokens[i] === cfg.maskTokenId) { first = i - g0; break; }
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
          addLogitPositions(batch, ai, set);
          rows = sortedRows(set);
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

function fastDllm(method: 'prefix' | 'dual', benchName: string, color: string): AccelMethod<FastDllmOptions> {
  return {
    name: method,
    source: 'Fast-dLLM',
    options: [CACHE_BLOCK],
    benchRows: [{ name: benchName, options: {}, color }],
    resolve: (input) => (input.cacheBlock === undefined ? { method } : { method, cacheBlock: input.cacheBlock as number }),
    create,
    // What this engine holds: the planned forward's cache layout (K, V and the DyLLM rows it leaves unused).
    cacheBytesPerToken: (cfg) => cacheBytesPerToken(cfg),
    label: () => method,
  };
}

export const prefix = fastDllm('prefix', 'Fast-dLLM prefix', '#1f77b4');
export const dual = fastDllm('dual', 'Fast-dLLM dual', '#2ca02c');
