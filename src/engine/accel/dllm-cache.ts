/**
 * `dllm-cache`: dLLM-Cache with V-verify (arXiv 2506.06295; maomaocun/dLLM-cache), the paper's third comparison
 * method. The prompt is refreshed every K_p steps and the response every K_r steps; in between, V-verify recomputes
 * the int(G·ρ) response rows whose value vectors moved most. It runs its own forward on the model's weights
 * (models/forward/dllm-cache.ts), not the planned forward.
 */
import { ConfigError } from '../../load/errors.js';
import { DllmSequenceCache, dllmCacheForward, type DllmCounts, type DllmSequencePlan } from '../../models/forward/dllm-cache.js';
import { Transformer } from '../../models/transformer.js';
import { MAX_COUNT, type OptionSpec } from '../schema.js';
import { accelTelemetry } from './telemetry.js';
import type { AccelMethod, AccelOptions, AccelTelemetry } from './types.js';

export interface DllmCacheOptions extends AccelOptions {
  /** K_p: the prompt is refreshed when (s − 1) % K_p == 0 (1-based step s). */
  readonly promptInterval: number;
  /** K_r: the response is refreshed when (s − 1) % K_r == 0. */
  readonly genInterval: number;
  /** ρ: V-verify recomputes int(G·ρ) response rows per step between refreshes (0 = off). */
  readonly transferRatio: number;
}

/** dLLM-Cache's demo defaults (maomaocun/dLLM-cache demo_LLaDA.py). */
const DEFAULTS = Object.freeze({ promptInterval: 100, genInterval: 7, transferRatio: 0.25 });

const OPTIONS: readonly OptionSpec[] = [
  { key: 'promptInterval', flag: 'refresh-prompt', field: 'dyllm.refresh_prompt', type: 'int', metavar: 'K', range: { min: 1, max: MAX_COUNT }, help: 'dLLM-Cache K_p: refresh the prompt every K steps', defaultHelp: String(DEFAULTS.promptInterval) },
  { key: 'genInterval', flag: 'refresh-gen', field: 'dyllm.refresh_gen', type: 'int', metavar: 'K', range: { min: 1, max: MAX_COUNT }, help: 'dLLM-Cache K_r: refresh the response every K steps', defaultHelp: String(DEFAULTS.genInterval) },
  { key: 'transferRatio', flag: 'transfer-ratio', field: 'dyllm.transfer_ratio', type: 'number', metavar: 'R', range: { min: 0, max: 1 }, help: 'dLLM-Cache V-verify ratio ρ (0 = off)', defaultHelp: String(DEFAULTS.transferRatio) },
];

export const dllmCache: AccelMethod<DllmCacheOptions> = {
  name: 'dllm-cache',
  source: 'dLLM-Cache',
  options: OPTIONS,
  benchRows: [{ name: 'dLLM-Cache', options: {}, color: '#9467bd' }],
  resolve: (input) => ({
    method: 'dllm-cache',
    promptInterval: (input.promptInterval as number | undefined) ?? DEFAULTS.promptInterval,
    genInterval: (input.genInterval as number | undefined) ?? DEFAULTS.genInterval,
    transferRatio: (input.transferRatio as number | undefined) ?? DEFAULTS.transferRatio,
  }),
  create: ({ model, layout }, opts) => {
    if (!(model instanceof Transformer)) throw new ConfigError('accel dllm-cache: needs the built-in Transformer model (its weights drive the dLLM-Cache forward)');
    const cfg = model.config;
    const caches = layout.lengths.map((n) => new DllmSequenceCache(cfg, n));
    let s = 0; // 1-based global step counter
    let last: AccelTelemetry | null = null;
    return {
      forward(batch, active) {
        s++;
        const refreshPrompt = (s - 1) % opts.promptInterval === 0;
        const refreshGen = (s - 1) % opts.genInterval === 0;
        const seqs: DllmSequencePlan[] = active.map((b) => ({ cache: caches[b], genStart: layout.genStart[b], refreshPrompt, refreshGen }));
        const counts: DllmCounts = { freshPerLayer: new Array(cfg.numLayers).fill(0), kvRows: 0, ffnRows: 0, verifyRows: 0, recomputed: [] };
        const logits = dllmCacheForward(model, batch, { sequences: seqs, transferRatio: opts.transferRatio }, counts);
        let denseRows = 0;
        for (let ai = 0; ai < active.length; ai++) denseRows += batch.seqStart[ai + 1] - batch.seqStart[ai];
        last = accelTelemetry(refreshPrompt && refreshGen ? 'dllm-cache-refresh' : 'dllm-cache', { ...counts, salientPerLayer: counts.freshPerLayer }, denseRows, cfg.numLayers, active, layout);
        return logits;
      },
      telemetry: () => last,
    };
  },
  cacheBytesPerToken: (cfg) => DllmSequenceCache.bytesPerToken(cfg),
  label: () => 'dllm-cache',
};
