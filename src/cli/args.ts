/**
 * Command-line flags shared by the subcommands: parsing with node:util, conversion to GenerateOptionsInput, and
 * the usage error type. Wrong flags or values are UsageErrors (exit code 2, one line).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { GenerateOptionsInput } from '../engine/options.js';
import type { AccelOptionsInput } from '../engine/accel.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Flags that map onto generation options (name, option key, kind). */
const GEN_FLAGS = [
  ['gen-length', 'genLength', 'int'],
  ['steps', 'steps', 'int'],
  ['block-length', 'blockLength', 'int'],
  ['temperature', 'temperature', 'num'],
  ['seed', 'seed', 'int'],
  ['remasking', 'remasking', 'str'],
  ['cfg-scale', 'cfgScale', 'num'],
  ['alg', 'alg', 'str'],
  ['alg-temp', 'algTemp', 'num'],
  ['top-p', 'topP', 'num'],
  ['top-k', 'topK', 'int'],
  ['eps', 'eps', 'num'],
  ['parallel-threshold', 'parallelThreshold', 'num'],
  ['batch-layout', 'batchLayout', 'str'],
] as const;

const GEN_BOOLS = [
  ['stop-at-eos', 'stopAtEos'],
  ['logits-eos-inf', 'logitsEosInf'],
  ['confidence-eos-eot-inf', 'confidenceEosEotInf'],
] as const;

export const generationFlagConfig: NonNullable<ParseArgsConfig['options']> = Object.fromEntries([
  ...GEN_FLAGS.map(([f]) => [f, { type: 'string' as const }]),
  ...GEN_BOOLS.map(([f]) => [f, { type: 'boolean' as const }]),
]);

export function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, allowPositionals: boolean) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
}

function toNumber(flag: string, v: string, kind: 'int' | 'num'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isSafeInteger(n))) {
    throw new UsageError(`--${flag}: expected ${kind === 'int' ? 'an integer' : 'a number'}, found "${v}"`);
  }
  return n;
}

/** Generation options set on the command line (unset flags are left to the defaults). */
export function generationOptions(values: Record<string, unknown>): GenerateOptionsInput {
  const out: Record<string, unknown> = {};
  for (const [flag, key, kind] of GEN_FLAGS) {
    const v = values[flag];
    if (typeof v !== 'string') continue;
    out[key] = kind === 'str' ? v : toNumber(flag, v, kind);
  }
  for (const [flag, key] of GEN_BOOLS) if (values[flag] === true) out[key] = true;
  return out as GenerateOptionsInput;
}

/** "1,2,3" -> [1, 2, 3]. */
export function parseIdList(flag: string, v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--${flag}: expected comma-separated token ids, found "${v}"`);
  return parts.map((p) => {
    const n = Number(p);
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${flag}: "${p}" is not a token id (a non-negative integer)`);
    return n;
  });
}

export const GENERATION_HELP = `Generation options:
  --gen-length N            positions to generate (default 128)
  --steps N                 denoising steps (default = gen length)
  --block-length N          LLaDA semi-autoregressive block (default = gen length)
  --temperature T           0 = greedy (default 0; Dream: generation_config.json)
  --seed N                  PRNG seed (default 0)
  --remasking R             LLaDA: low_confidence | random
  --cfg-scale S             LLaDA classifier-free guidance (default 0)
  --logits-eos-inf          LLaDA: never predict EOS
  --confidence-eos-eot-inf  LLaDA: commit EOS/EoT last (generate.py quirk reproduced)
  --alg A                   Dream: origin | maskgit_plus | topk_margin | entropy
  --alg-temp T  --top-p P  --top-k K  --eps E      Dream sampler knobs
  --parallel-threshold C    also commit every candidate with confidence >= C
  --stop-at-eos             finish once an end token is decoded with everything before it committed
  --batch-layout L          packed (default) | left-pad (the official samplers' padded batch)`;

export const accelFlagConfig: NonNullable<ParseArgsConfig['options']> = {
  accel: { type: 'string' },
  threshold: { type: 'string' },
  'full-steps': { type: 'string' },
  'prompt-period': { type: 'string' },
  'attn-update': { type: 'string' },
  'o-proj': { type: 'string' },
  'cache-block': { type: 'string' },
  'refresh-prompt': { type: 'string' },
  'refresh-gen': { type: 'string' },
  'transfer-ratio': { type: 'string' },
};

/** Acceleration options set on the command line. */
export function accelOptions(values: Record<string, unknown>): AccelOptionsInput {
  const out: Record<string, unknown> = {};
  if (typeof values.accel === 'string') out.method = values.accel;
  if (typeof values.threshold === 'string') out.threshold = toNumber('threshold', values.threshold, 'num');
  if (typeof values['full-steps'] === 'string') out.fullSteps = toNumber('full-steps', values['full-steps'], 'int');
  if (typeof values['prompt-period'] === 'string') out.promptPeriod = toNumber('prompt-period', values['prompt-period'], 'int');
  if (typeof values['attn-update'] === 'string') out.attnUpdate = values['attn-update'];
  if (typeof values['o-proj'] === 'string') out.oProj = values['o-proj'];
  if (typeof values['cache-block'] === 'string') out.cacheBlock = toNumber('cache-block', values['cache-block'], 'int');
  if (typeof values['refresh-prompt'] === 'string') out.promptInterval = toNumber('refresh-prompt', values['refresh-prompt'], 'int');
  if (typeof values['refresh-gen'] === 'string') out.genInterval = toNumber('refresh-gen', values['refresh-gen'], 'int');
  if (typeof values['transfer-ratio'] === 'string') out.transferRatio = toNumber('transfer-ratio', values['transfer-ratio'], 'num');
  return out as AccelOptionsInput;
}

export const ACCEL_HELP = `Acceleration:
  --accel M                 none (default) | dyllm | prefix | dual (Fast-dLLM) | dllm-cache
  --threshold T             DyLLM cosine threshold τ (default 0.99 LLaDA, 0.995 Dream)
  --full-steps N            DyLLM dense warm-up steps (default 4)
  --prompt-period N         DyLLM: query the prompt rows every N-th step (default 4)
  --attn-update U           DyLLM non-salient context update: delta (paper, default) | rescale |
                            rescale-incremental (see BENCHMARKS.md)
  --o-proj P                DyLLM o_proj: reuse (default; cached outputs + projected ΔV when cheaper, same
                            result to fp32 rounding) | recompute (every query row, as the official code)
  --cache-block N           Fast-dLLM prefix/dual cache block (default: the block length, Dream min(32, G))
  --refresh-prompt N  --refresh-gen N  --transfer-ratio R   dLLM-Cache K_p, K_r, ρ (default 100, 7, 0.25)`;
