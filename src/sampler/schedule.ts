/**
 * How many tokens each step unmasks: LLaDA's per-block `floor + remainder` schedule (generate.py
 * `get_num_transfer_tokens`) and Dream's `int(mean · (1 − s/t))` over `linspace(1, eps, steps + 1)` in fp32
 * (generation_utils.py `_sample`). Pure arithmetic; it does not look at logits or choose positions.
 */
import assert from 'node:assert';
import { ConfigError } from '../load/errors.js';

const f32 = Math.fround;

function requirePositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name}: expected a positive integer, found ${v}`);
}

/**
 * `get_num_transfer_tokens` for one row of one block: floor(n / steps) at every step, plus 1 on the first
 * (n mod steps) steps. Sums to `maskCount`.
 */
export function lladaTransferCounts(maskCount: number, steps: number): Int32Array {
  requirePositiveInt('steps per block', steps);
  assert(Number.isSafeInteger(maskCount) && maskCount >= 0, `maskCount must be a non-negative integer, got ${maskCount}`);
  const base = Math.floor(maskCount / steps);
  const rem = maskCount - base * steps;
  const out = new Int32Array(steps);
  for (let i = 0; i < steps; i++) out[i] = base + (i < rem ? 1 : 0);
  return out;
}

export interface LladaBlockPlan {
  readonly numBlocks: number;
  readonly stepsPerBlock: number;
}

/** generate.py's two asserts: gen_length % block_length == 0 and steps % num_blocks == 0. */
export function lladaBlockPlan(genLength: number, blockLength: number, steps: number): LladaBlockPlan {
  requirePositiveInt('gen_length', genLength);
  requirePositiveInt('block_length', blockLength);
  requirePositiveInt('steps', steps);
  if (genLength % blockLength !== 0) {
    throw new ConfigError(
      `gen_length ${genLength} must be a multiple of block_length ${blockLength} (gen_length % block_length == 0)`,
    );
  }
  const numBlocks = genLength / blockLength;
  if (steps % numBlocks !== 0) {
    throw new ConfigError(
      `steps ${steps} must be a multiple of the number of blocks ${numBlocks} = gen_length / block_length ` +
        `(steps % num_blocks == 0)`,
    );
  }
  return { numBlocks, stepsPerBlock: steps / numBlocks };
}

/**
 * torch.linspace(1, eps, steps + 1) in fp32, as the per-element CUDA kernel computes it (Dream builds it on the
 * model's device): step = (end − start) / steps; index i < halfway = ⌊(steps + 1) / 2⌋ gives start + step·i,
 * the rest end − step·(steps − i). Every operation is rounded to fp32. (An FMA-contracting compiler could differ
 * in the last bit; the formula is not checked against a GPU run.)
 */
export function dreamTimesteps(steps: number, eps: number): Float32Array {
  requirePositiveInt('steps', steps);
  if (!Number.isFinite(eps) || eps < 0 || eps >= 1) throw new ConfigError(`eps: expected a number in [0, 1), found ${eps}`);
  const n = steps + 1;
  const start = f32(1);
  const end = f32(eps);
  const step = f32(f32(end - start) / steps);
  const halfway = Math.floor(n / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = i < halfway ? f32(start + f32(step * i)) : f32(end - f32(step * (n - 1 - i)));
  }
  return out;
}

/**
 * Dream's shared per-step count: `int(mean · (1 − s/t))`, or `int(mean)` on the last step, where
 * mean = fp32(int64 masked total) / B in fp32 and every operation is fp32. `t`, `s` are timesteps[i], [i + 1].
 */
export function dreamTransferCount(maskedTotal: number, batch: number, t: number, s: number, isLastStep: boolean): number {
  assert(Number.isSafeInteger(maskedTotal) && maskedTotal >= 0, `maskedTotal must be a non-negative integer, got ${maskedTotal}`);
  assert(Number.isSafeInteger(batch) && batch >= 1, `batch must be a positive integer, got ${batch}`);
  const mean = f32(f32(maskedTotal) / f32(batch));
  if (isLastStep) return Math.trunc(mean);
  assert(t > 0, `timestep t must be > 0, got ${t}`);
  const keep = f32(f32(s) / f32(t));
  return Math.trunc(f32(mean * f32(1 - keep)));
}
