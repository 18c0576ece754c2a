/**
 * The asynchronous step (StepForward.forwardAsync, for device-resident models): `generate()` awaits it, and a step
 * that returns only the candidate rows' statistics (when DenoiseRun.statsRequest() allows it) commits exactly the
 * tokens the synchronous loop commits from the logits. The stand-in model here computes on the host (the WebGPU model
 * runs in Chromium: test/webgpu.forward.test.ts), so the tokens must be identical, not merely close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { generate, type GenerateResult } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from '../../src/models/types.js';
import { fixturePath } from '../helpers/fixtures.js';
import { runGeneration } from '../helpers/run-generation.js';

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3]];

/** The host model behind an asynchronous forward that records what each step returned. */
function asyncModel(p: Pipeline, log: string[], statsAllowed = true): DiffusionModel {
  const m = p.model;
  return {
    config: m.config,
    backend: m.backend,
    weightBytes: m.weightBytes,
    forward: () => {
      throw new Error('the synchronous forward must not run when forwardAsync exists');
    },
    forwardPlanned: (b, plan, counts) => m.forwardPlanned(b, plan, counts),
    async forwardAsync(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
      await new Promise((r) => setTimeout(r, 0));
      const logits = m.forward(batch);
      if (!stats || !statsAllowed) {
        log.push('logits');
        return logits;
      }
      log.push(stats.entropy ? 'stats+entropy' : 'stats');
      const V = m.config.vocabSize;
      const M = logits.length / V;
      const s = { argmax: new Int32Array(M), p1: new Float64Array(M), p2: new Float64Array(M), negEntropy: stats.entropy ? new Float64Array(M) : null };
      m.backend.logitStats(logits, M, V, s.argmax, s.p1, s.p2, s.negEntropy);
      return s;
    },
  };
}

async function runAsync(p: Pipeline, model: DiffusionModel, gen: GenerateOptionsInput, logprobs?: number): Promise<GenerateResult> {
  const options = resolveOptions(p.config, gen, p.generation);
  const it = generate(model, p.ids, { prompts: PROMPTS, options, accel: resolveAccel(p.config, { method: 'none' }, options), logprobs });
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

for (const [name, gen, want] of [
  ['llada-tiny', { genLength: 8, steps: 4, blockLength: 4 }, 'stats'],
  ['dream-tiny', { genLength: 8, steps: 4, alg: 'entropy' }, 'stats+entropy'],
  ['dream-tiny', { genLength: 8, steps: 4, alg: 'topk_margin' }, 'stats'],
  ['llada-tiny', { genLength: 8, steps: 4, blockLength: 4, temperature: 0.7, seed: 3 }, 'logits'],
  ['dream-tiny', { genLength: 8, steps: 4, alg: 'maskgit_plus', topP: 0.9 }, 'logits'],
] as const) {
  test(`${name} ${JSON.stringify(gen)}: an asynchronous step returning ${want} gives the synchronous loop's tokens`, async () => {
    const p = await loadPipeline(fixturePath(name));
    const sync = runGeneration(p, PROMPTS, gen as GenerateOptionsInput);
    const log: string[] = [];
    const got = await runAsync(p, asyncModel(p, log), gen as GenerateOptionsInput);
    assert.deepEqual(got.tokens.map((t) => [...t]), sync.tokens.map((t) => [...t]));
    assert.equal(got.stats.steps, sync.stats.steps);
    assert.ok(log.length > 0 && log.every((w) => w === want), `steps returned ${log.join(', ')}; expected ${want}`);
  });
}

test('with logprobs the asynchronous step is asked for logits (statistics cannot give log-probabilities)', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'));
  const log: string[] = [];
  await runAsync(p, asyncModel(p, log), { genLength: 4, steps: 2, blockLength: 4 }, 2);
  assert.ok(log.length > 0 && log.every((w) => w === 'logits'), log.join(', '));
});

test('statistics where the loop asked for logits are refused with one line', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'));
  const model: DiffusionModel = { ...asyncModel(p, []), forwardAsync: async () => ({ argmax: new Int32Array(4), p1: new Float64Array(4), p2: new Float64Array(4), negEntropy: null }) };
  await assert.rejects(runAsync(p, model, { genLength: 4, steps: 2, blockLength: 4, temperature: 0.5 }),
    { message: 'finish: row statistics stand in for logits only when statsRequest() asked for them' });
});
