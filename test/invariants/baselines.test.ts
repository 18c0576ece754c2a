/**
 * Invariants of the paper's comparison methods (engine/accel/fast-dllm.ts, engine/accel/dllm-cache.ts): Fast-dLLM
 * Prefix/DualCache with a cache refresh every step, and
 * dLLM-Cache with K_p = K_r = 1, generate exactly the dense tokens; with normal settings each computes fewer rows
 * than dense and still leaves no mask in the output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { DenoiseRun, type GenerateResult, type StepEvent } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { fixturePath } from '../helpers/fixtures.js';
import { runGeneration as run } from '../helpers/run-generation.js';

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3], [5, 6, 7, 8, 9, 10, 11, 13]];
const toArrays = (r: GenerateResult) => r.tokens.map((t) => [...t]);

const EXACT = [
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 12, blockLength: 1 }],
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 2 }],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 12, alg: 'entropy' }],
] as const;

for (const [name, opts] of EXACT) {
  test(`${name} ${JSON.stringify(opts)}: prefix/dual with a refresh every step and dLLM-Cache with K_p = K_r = 1 generate the dense tokens`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const g = opts as GenerateOptionsInput;
    const dense = toArrays(run(p, PROMPTS, g));
    const dream = p.config.arch === 'dream';
    for (const method of ['prefix', 'dual'] as const) {
      // LLaDA: one-position blocks (each block is one step); Dream: one-position cache blocks, one step each.
      const events: StepEvent[] = [];
      const got = run(p, PROMPTS, g, { method, cacheBlock: 1 }, events);
      assert.deepEqual(toArrays(got), dense, method);
      if (!dream) assert.ok(events.every((e) => e.accel?.method === `${method}-refresh`), method);
    }
    const dc = run(p, PROMPTS, g, { method: 'dllm-cache', promptInterval: 1, genInterval: 1 });
    assert.deepEqual(toArrays(dc), dense, 'dllm-cache');
    assert.equal(dc.stats.salientFraction, 1);
    // V-verify with ρ = 1 recomputes every response row: with the prompt refreshed every step, dense again.
    const vv = run(p, PROMPTS, g, { method: 'dllm-cache', promptInterval: 1, genInterval: 5, transferRatio: 1 });
    assert.deepEqual(toArrays(vv), dense, 'dllm-cache V-verify ρ = 1');
  });
}

const NORMAL = [
  ['llada-tiny-f32-sharded', { genLength: 24, steps: 24, blockLength: 8 }],
  ['dream-tiny-f32-sharded', { genLength: 24, steps: 24, alg: 'entropy' }],
] as const;

for (const [name, opts] of NORMAL) {
  test(`${name}: with normal settings every baseline computes fewer rows than dense and fills the canvas`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const g = opts as GenerateOptionsInput;
    const fractions: Record<string, number> = {};
    for (const base of [{ method: 'prefix', cacheBlock: 8 }, { method: 'dual', cacheBlock: 8 }, { method: 'dllm-cache', genInterval: 4 }] as const) {
      const events: StepEvent[] = [];
      const r = run(p, PROMPTS, g, base, events);
      fractions[base.method] = r.stats.salientFraction;
      assert.ok(r.stats.salientFraction < 1 && r.stats.salientFraction > 0, `${base.method}: ${r.stats.salientFraction}`);
      // Every position is committed by the end. (The tiny random Dream model sometimes commits the mask id
      // itself as a token under stale caches, as DyLLM does at a loose τ, so Dream checks commits, not ids.)
      const seen = PROMPTS.map(() => new Set<number>());
      for (const e of events) e.sequences.forEach((q, b) => q.committed.forEach((i) => seen[b].add(i)));
      assert.ok(seen.every((s) => s.size === g.genLength), `${base.method}: a position was never committed`);
      if (p.config.arch === 'llada') for (const t of r.tokens) assert.ok(!t.includes(p.ids.mask), `${base.method} left a mask`);
      assert.ok(events.every((e) => e.accel !== null && e.accel.salientPerLayer.length === p.config.numLayers));
      assert.ok(events.some((e) => e.accel!.ffnFraction < 1));
    }
    // DualCache computes at most what PrefixCache computes.
    assert.ok(fractions.dual <= fractions.prefix, JSON.stringify(fractions));
  });
}

test('the comparison methods refuse bad knobs, and what only the request reveals before it starts', async () => {
  const options = resolveOptions('llada', { genLength: 16, steps: 16, blockLength: 8 });
  assert.throws(() => resolveAccel('llada', { method: 'fast' }, options), /^OptionError: method: expected one of none, dyllm, prefix, dual, dllm-cache, found "fast"$/);
  assert.throws(() => resolveAccel('llada', { method: 'dllm-cache', transferRatio: 2 }, options), /^OptionError: transferRatio: expected a number in \[0, 1\], found 2$/);
  assert.throws(() => resolveAccel('llada', { method: 'dllm-cache', genInterval: 0 }, options), /^OptionError: genInterval: expected an integer in \[1, 1000000\], found 0$/);
  assert.throws(() => resolveAccel('llada', { method: 'dual', cacheBlock: 17 }, options), /^OptionError: cacheBlock: expected an integer in \[1, 16\] \(at most the gen length\), found 17$/);
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const dual = resolveAccel(p.config, { method: 'dual', cacheBlock: 3 }, options);
  assert.throws(() => new DenoiseRun(p.model, p.ids, { prompts: [[1, 2]], options, accel: dual }), /^ConfigError: cacheBlock: 3 must divide the generation block length 8$/);
  assert.deepEqual(resolveAccel('llada', { method: 'dllm-cache' }, options), { method: 'dllm-cache', promptInterval: 100, genInterval: 7, transferRatio: 0.25 });
  assert.deepEqual(resolveAccel('llada', { method: 'prefix', threshold: 0.5 }, options), { method: 'prefix' });
});
