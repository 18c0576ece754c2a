/** Runs one request through the denoising loop to its end, the way most engine tests do. */
import { resolveAccel, type AccelOptionsInput } from '../../src/engine/accel.js';
import { generateSteps, type GenerateResult, type StepEvent } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import type { Pipeline } from '../../src/engine/pipeline.js';

/** Generate for `prompts` with these options (and acceleration, if given); every StepEvent goes to `events`. */
export function runGeneration(p: Pipeline, prompts: number[][], gen: GenerateOptionsInput, accel?: AccelOptionsInput, events?: StepEvent[]): GenerateResult {
  const options = resolveOptions(p.config, gen, p.generation);
  const it = generateSteps(p.model, p.ids, { prompts, options, accel: accel ? resolveAccel(p.config, accel, options) : undefined });
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    events?.push(r.value);
  }
}
