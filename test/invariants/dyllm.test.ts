/**
 * DyLLM mechanism invariants: the recompute-all plan is the dense forward (logits) and dense generation (tokens),
 * for both families, with blocks and batches; a real threshold recomputes fewer FFN rows than dense and reports it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { generateSteps, type GenerateResult, type StepEvent } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveAccel, type AccelOptionsInput } from '../../src/engine/accel.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { SequenceCache, cacheBytesPerToken } from '../../src/cache/layer-cache.js';
import { recomputeAll } from '../../src/cache/saliency.js';
import { paddedBatch } from '../../src/models/types.js';
import { fixturePath, relMaxError } from '../helpers/fixtures.js';

function run(p: Pipeline, prompts: number[][], opts: GenerateOptionsInput, accel?: AccelOptionsInput, events?: StepEvent[]): GenerateResult {
  const it = generateSteps(p.model, p.ids, {
    prompts,
    options: resolveOptions(p.config.arch, opts, p.generation),
    accel: accel ? resolveAccel(p.config.arch, accel) : undefined,
  });
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    events?.push(r.value);
  }
}

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3], [5, 6, 7, 8, 9, 10, 11, 13]];
const CASES = [
  ['llada-tiny-f32-sharded', { genLength: 16, steps: 16, blockLength: 8 }],
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 12, batchLayout: 'left-pad' }],
  ['dream-tiny-f32-sharded', { genLength: 16, steps: 16, alg: 'entropy' }],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 6, alg: 'maskgit_plus', batchLayout: 'left-pad' }],
] as const;

for (const name of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
  test(`${name}: the recompute-all plan computes the dense logits and fills every cache row`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const tokens = Int32Array.from(PROMPTS[2]);
    const N = tokens.length;
    const batch = paddedBatch(tokens, 1, N);
    const dense = p.model.forward(batch);
    const cache = new SequenceCache(p.config, N);
    const rows = Int32Array.from({ length: N }, (_, i) => i);
    const counts = { salientPerLayer: new Array(p.config.numLayers).fill(0), kvRows: 0, ffnRows: 0, queryRows: 0, recomputed: [] };
    const planned = p.model.forwardPlanned(batch, { sequences: [{ cache, rows, salientIn: new Int32Array(0) }], policy: recomputeAll }, counts);
    assert.ok(relMaxError(planned, dense) < 1e-6, `${relMaxError(planned, dense)}`);
    assert.equal(counts.ffnRows, N * p.config.numLayers);
    for (const l of cache.layers) assert.ok(l.c.some((x) => x !== 0) && l.f.some((x) => x !== 0) && l.k.some((x) => x !== 0));
    assert.equal(cache.nbytes(), N * cacheBytesPerToken(p.config));
  });
}

for (const [name, opts] of CASES) {
  test(`${name} ${JSON.stringify(opts)}: all-salient DyLLM generates exactly the dense tokens`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const dense = run(p, [...PROMPTS], opts as GenerateOptionsInput);
    const all = run(p, [...PROMPTS], opts as GenerateOptionsInput, { method: 'dyllm', allSalient: true });
    assert.deepEqual(all.tokens.map((t) => [...t]), dense.tokens.map((t) => [...t]));
    assert.equal(all.stats.salientFraction, 1);
  });
}

test('DyLLM with a real threshold recomputes fewer FFN rows and reports per-layer telemetry', async () => {
  for (const name of ['llada-tiny', 'dream-tiny']) {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const events: StepEvent[] = [];
    const r = run(p, [PROMPTS[0]], { genLength: 24, steps: 24 }, { method: 'dyllm', threshold: 0.9 }, events);
    assert.ok(r.stats.salientFraction < 1 && r.stats.salientFraction > 0, `${name}: salient fraction ${r.stats.salientFraction}`);
    assert.equal(events[0].accel?.method, 'dyllm-dense');
    assert.equal(events[0].accel?.ffnFraction, 1);
    const sparse = events.slice(4);
    assert.ok(sparse.every((e) => e.accel?.method === 'dyllm' && e.accel.salientPerLayer.length === p.config.numLayers));
    assert.ok(sparse.some((e) => e.accel!.ffnFraction < 1));
    assert.ok(!r.tokens[0].includes(p.ids.mask));
  }
});

test('DyLLM options are validated', async () => {
  assert.throws(() => resolveAccel('llada', { method: 'dyllm', threshold: Number.NaN }), /threshold/);
  assert.throws(() => resolveAccel('llada', { method: 'fast' as 'dyllm' }), /accel/);
  assert.throws(() => resolveAccel('llada', { fullSteps: 0 }), /fullSteps/);
  assert.equal(resolveAccel('dream', { method: 'dyllm' }).threshold, 0.995);
  assert.equal(resolveAccel('llada', { method: 'dyllm' }).threshold, 0.99);
});
