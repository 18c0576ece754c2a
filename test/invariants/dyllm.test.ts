/**
 * DyLLM mechanism invariants: the recompute-all plan is the dense forward (logits) and dense generation (tokens),
 * for both families, with blocks and batches; a real threshold recomputes fewer FFN rows than dense and reports it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline } from '../../src/engine/pipeline.js';
import type { StepEvent } from '../../src/engine/generate.js';
import type { GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { SequenceCache, cacheBytesPerToken } from '../../src/cache/layer-cache.js';
import { cosineThreshold, recomputeAll } from '../../src/cache/saliency.js';
import { backendCases } from '../helpers/native.js';
import { paddedBatch } from '../../src/models/types.js';
import { fixturePath, relMaxError } from '../helpers/fixtures.js';
import { runGeneration as run } from '../helpers/run-generation.js';

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
    const counts = { salientPerLayer: new Array(p.config.numLayers).fill(0), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0, recomputed: [] };
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

for (const { name: bname, make: makeBackend, options } of backendCases()) {
  for (const [name, opts] of CASES) {
    test(`${bname} ${name} ${JSON.stringify(opts)}: o_proj reuse (ΔV projected per head) generates the recompute path's tokens`, options, async () => {
      const p = await loadPipeline(fixturePath(name), { backend: makeBackend() });
      const ev: StepEvent[] = [];
      const recompute = run(p, [...PROMPTS], opts as GenerateOptionsInput, { method: 'dyllm', threshold: 0.9, oProj: 'recompute' });
      const reuse = run(p, [...PROMPTS], opts as GenerateOptionsInput, { method: 'dyllm', threshold: 0.9, oProj: 'reuse-always' }, ev);
      assert.deepEqual(reuse.tokens.map((t) => [...t]), recompute.tokens.map((t) => [...t]));
      assert.equal(reuse.stats.salientFraction, recompute.stats.salientFraction);
      // The reuse path really ran: every sparse step updated its outputs through ΔV in every layer of every sequence.
      const sparse = ev.filter((e) => e.accel?.method === 'dyllm');
      assert.ok(sparse.length > 0 && sparse.every((e) => (e.accel!.oProjReused ?? 0) > 0));
    });
  }
}

test('o_proj reuse: a layer\'s outputs equal the recomputed ones to fp32 rounding over many sparse steps', async () => {
  // Same plans through two cache sets, one reusing o_proj outputs, one recomputing them; compare every step's logits.
  for (const name of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const tokens = Int32Array.from([...PROMPTS[2], ...new Array(12).fill(p.ids.mask)]);
    const N = tokens.length;
    const batch = paddedBatch(tokens, 1, N);
    const all = Int32Array.from({ length: N }, (_, i) => i);
    const caches = [new SequenceCache(p.config, N), new SequenceCache(p.config, N, { outputs: true })];
    const counts = () => ({ salientPerLayer: new Array(p.config.numLayers).fill(0), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0, recomputed: [] });
    for (const [i, cache] of caches.entries()) {
      p.model.forwardPlanned(batch, { sequences: [{ cache, rows: all, salientIn: new Int32Array(0) }], policy: recomputeAll, reuseOutput: i ? 'always' : undefined }, counts());
    }
    let worst = 0;
    for (let step = 0; step < 6; step++) {
      tokens[8 + step * 2] = 100 + step; // commit a token: layer 0's salient set
      const rows = Int32Array.from({ length: N - 8 }, (_, i) => 8 + i); // response-only query rows
      const salientIn = Int32Array.from([8 + step * 2]);
      const out = caches.map((cache, i) => {
        const c = counts();
        const l = p.model.forwardPlanned(batch, { sequences: [{ cache, rows, salientIn }], policy: cosineThreshold(0.9), reuseOutput: i ? 'always' : undefined }, c);
        if (i) assert.equal(c.oProjReused, p.config.numLayers);
        return l;
      });
      worst = Math.max(worst, relMaxError(out[1], out[0]));
    }
    assert.ok(worst < 1e-5, `${name}: logits differ by ${worst}`);
    assert.equal(caches[1].nbytes(), N * cacheBytesPerToken(p.config, true));
    assert.throws(() => p.model.forwardPlanned(batch, { sequences: [{ cache: caches[0], rows: all, salientIn: all }], policy: recomputeAll, reuseOutput: 'always' }, counts()),
      /does not keep them/);
  }
});

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
  assert.throws(() => resolveAccel('llada', { method: 'fast' as 'dyllm' }), /^OptionError: method: expected one of none, dyllm, prefix, dual, dllm-cache, found "fast"$/);
  assert.throws(() => resolveAccel('llada', { fullSteps: 1e9 }), /fullSteps: expected an integer in \[1, 1000000\], found 1000000000/);
  assert.throws(() => resolveAccel('llada', { treshold: 0.9 } as never), /unknown acceleration option "treshold"; did you mean "threshold"\?/);
  assert.throws(() => resolveAccel('llada', { fullSteps: 0 }), /fullSteps/);
  assert.equal(resolveAccel('dream', { method: 'dyllm' }).threshold, 0.995);
  assert.equal(resolveAccel('llada', { method: 'dyllm' }).threshold, 0.99);
});
