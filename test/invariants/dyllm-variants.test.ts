/**
 * DyLLM beyond the paper (engine/accel/dyllm.ts `qkvTol`, `headTol`): at tolerance 0 a step reuses only projections
 * of bit-identical inputs, so logits and tokens equal the paper's path exactly (on every backend); reuse really
 * happens (counted); a tolerance of 1 reuses every previously computed logits row; temperature sampling reads whole
 * cached rows; the options are bounded and validated with one-line errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline } from '../../src/engine/pipeline.js';
import type { StepEvent } from '../../src/engine/generate.js';
import type { GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveOptions } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { SequenceCache, cacheBytesPerToken } from '../../src/cache/layer-cache.js';
import { emptyCounts, type RecomputePlan } from '../../src/cache/plan.js';
import { cosineThreshold, recomputeAll } from '../../src/cache/saliency.js';
import { paddedBatch } from '../../src/models/types.js';
import { backendCases } from '../helpers/native.js';
import { fixturePath } from '../helpers/fixtures.js';
import { runGeneration as run } from '../helpers/run-generation.js';

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3], [5, 6, 7, 8, 9, 10, 11, 13]];
const CASES = [
  ['llada-tiny-f32-sharded', { genLength: 16, steps: 16, blockLength: 8 }],
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 12, batchLayout: 'left-pad' }],
  ['dream-tiny-f32-sharded', { genLength: 16, steps: 16, alg: 'entropy' }],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 6, alg: 'maskgit_plus', batchLayout: 'left-pad' }],
] as const;

const sum = (ev: StepEvent[], k: 'qReused' | 'kvReused' | 'headReused' | 'headRows'): number => ev.reduce((s, e) => s + (e.accel?.[k] ?? 0), 0);

for (const { name: bname, make, options } of backendCases()) {
  for (const [name, opts] of CASES) {
    test(`${bname} ${name} ${JSON.stringify(opts)}: qkvTol 0 and headTol 0 generate the paper path's tokens`, options, async () => {
      const p = await loadPipeline(fixturePath(name), { backend: make() });
      const gen = opts as GenerateOptionsInput;
      const paper = run(p, [...PROMPTS], gen, { method: 'dyllm', threshold: 0.9 });
      for (const knob of [{ qkvTol: 0 }, { headTol: 0 }, { qkvTol: 0, headTol: 0 }]) {
        const ev: StepEvent[] = [];
        const r = run(p, [...PROMPTS], gen, { method: 'dyllm', threshold: 0.9, ...knob }, ev);
        assert.deepEqual(r.tokens.map((t) => [...t]), paper.tokens.map((t) => [...t]), JSON.stringify(knob));
        assert.equal(r.stats.salientFraction, paper.stats.salientFraction, JSON.stringify(knob));
        // The reuse paths ran: layer 0's unchanged tokens have bit-identical inputs, so their Q came from the cache.
        if ('qkvTol' in knob) assert.ok(sum(ev, 'qReused') > 0, `${JSON.stringify(knob)}: no Q reused`);
        if ('headTol' in knob) assert.ok(sum(ev, 'headRows') > 0, `${JSON.stringify(knob)}: the head path did not run`);
      }
    });
  }
}

/** Same plans through two cache sets, one with the options, one without; every step's logits compared. */
async function stepLogits(name: string, knobs: Pick<RecomputePlan, 'qkvTol' | 'headTol'>, steps: number) {
  const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
  const tokens = Int32Array.from([...PROMPTS[2], ...new Array(12).fill(p.ids.mask)]);
  const N = tokens.length;
  const g0 = PROMPTS[2].length;
  const batch = paddedBatch(tokens, 1, N);
  const all = Int32Array.from({ length: N }, (_, i) => i);
  const plain = new SequenceCache(p.config, N);
  const reusing = new SequenceCache(p.config, N, { projections: knobs.qkvTol !== undefined, ...(knobs.headTol !== undefined ? { head: { base: g0 - 1 } } : {}) });
  const out: { plain: Float32Array; reusing: Float32Array; counts: ReturnType<typeof emptyCounts> }[] = [];
  for (let s = 0; s < steps; s++) {
    const dense = s < 2;
    let salientIn = new Int32Array(0);
    if (!dense) {
      // Commit one masked position per step (a fixed token), as the sampler would.
      const pos = g0 + ((s * 5) % 12);
      tokens[pos] = 20 + s;
      salientIn = Int32Array.from([pos]);
    }
    const plan = { rows: all, salientIn };
    const policy = dense ? recomputeAll : cosineThreshold(0.95);
    const a = p.model.forwardPlanned(batch, { sequences: [{ cache: plain, ...plan }], policy }, emptyCounts(p.config.numLayers));
    const counts = emptyCounts(p.config.numLayers);
    const b = p.model.forwardPlanned(batch, { sequences: [{ cache: reusing, ...plan }], policy, ...knobs }, counts);
    out.push({ plain: a, reusing: b, counts });
  }
  return { out, N, V: p.config.vocabSize };
}

test('qkvTol 0 and headTol 0: every step\'s logits are bit-identical to the paper path\'s', async () => {
  for (const name of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
    const { out } = await stepLogits(name, { qkvTol: 0, headTol: 0 }, 8);
    out.forEach((o, s) => assert.deepEqual(o.reusing, o.plain, `${name} step ${s}`));
    assert.ok(out.slice(2).every((o) => (o.counts.qReused ?? 0) > 0), `${name}: Q reuse never ran`);
  }
});

test('headTol 1: sparse steps return cached logits rows (unchanged since their last computation) instead of running the head', async () => {
  const { out, N, V } = await stepLogits('llada-tiny-f32-sharded', { headTol: 1 }, 6);
  const g0 = PROMPTS[2].length;
  assert.equal(out[0].counts.headReused, 0);
  assert.equal(out[1].counts.headReused, 0);
  for (let s = 2; s < out.length; s++) {
    const c = out[s].counts;
    assert.equal(c.headRows, N);
    assert.ok((c.headReused ?? 0) > 0, `step ${s}: nothing reused`);
    // A reused row is the previous step's row bit for bit (a recomputed one moved: its hidden state changed).
    let same = 0;
    for (let r = g0 - 1; r < N; r++) {
      const now = out[s].reusing.subarray(r * V, (r + 1) * V);
      const before = out[s - 1].reusing.subarray(r * V, (r + 1) * V);
      if (now.every((x, i) => x === before[i])) same++;
    }
    assert.ok(same >= c.headReused!, `step ${s}: ${same} rows unchanged, ${c.headReused} reused`);
    // The paper's path recomputes them: its rows did move.
    assert.notDeepEqual(out[s].reusing, out[s].plain);
  }
});

test('headTol with temperature > 0 samples from whole cached rows: same seed, same tokens as the paper path at 0', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny-f32-sharded'), { backend: new ReferenceBackend() });
  const gen: GenerateOptionsInput = { genLength: 16, steps: 16, blockLength: 8, temperature: 0.7, seed: 3 };
  const paper = run(p, [...PROMPTS], gen, { method: 'dyllm', threshold: 0.9 });
  const ours = run(p, [...PROMPTS], gen, { method: 'dyllm', threshold: 0.9, headTol: 0, qkvTol: 0 });
  assert.deepEqual(ours.tokens.map((t) => [...t]), paper.tokens.map((t) => [...t]));
});

test('a loose tolerance really reuses projections and logits, and still generates complete answers', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const ev: StepEvent[] = [];
  const r = run(p, [PROMPTS[0]], { genLength: 24, steps: 24 }, { method: 'dyllm', threshold: 0.9, qkvTol: 0.5, headTol: 0.5 }, ev);
  assert.ok(sum(ev, 'kvReused') > 0 && sum(ev, 'headReused') > 0 && sum(ev, 'qReused') > 0);
  assert.ok(!r.tokens[0].includes(p.ids.mask));
});

test('qkvTol and headTol are validated and bounded with one-line errors; caches count their bytes', async () => {
  assert.throws(() => resolveAccel('llada', { method: 'dyllm', qkvTol: -0.1 }), /^OptionError: qkvTol: expected a number in \[0, 1\], found -0.1$/);
  assert.throws(() => resolveAccel('llada', { method: 'dyllm', headTol: 2 }), /^OptionError: headTol: expected a number in \[0, 1\], found 2$/);
  const off = resolveAccel('llada', { method: 'dyllm' });
  assert.equal(off.qkvTol, null);
  assert.equal(off.headTol, null);
  assert.equal(resolveAccel('llada', { method: 'dyllm', headTol: null }).headTol, null);
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const V = p.config.vocabSize;
  // The head cache's bound: (gen length + 1) rows of V floats per sequence, at most 2 GiB (a 2^20-entry vocabulary).
  const cfg = { ...p.config, vocabSize: 2 ** 20 };
  const gen = resolveOptions(cfg, { genLength: 600, steps: 600, blockLength: 600 }, p.generation);
  assert.throws(() => resolveAccel(cfg, { method: 'dyllm', headTol: 0.01 }, gen), (e: Error) => {
    assert.equal(e.message, 'headTol: caching the logits of 601 positions × 1048576 vocabulary entries needs 2.3 GiB per sequence, at most 2 GiB; lower the gen length or leave headTol off');
    return true;
  });
  assert.equal(resolveAccel(cfg, { method: 'dyllm', headTol: 0.01 }, resolveOptions(cfg, { genLength: 500, steps: 500, blockLength: 500 }, p.generation)).headTol, 0.01);
  const c = new SequenceCache(p.config, 10, { projections: true, head: { base: 4 } });
  assert.equal(c.nbytes(), 10 * cacheBytesPerToken(p.config, false, true) + 6 * (V + p.config.hiddenSize) * 4);
  assert.ok(cacheBytesPerToken(p.config, false, true) > cacheBytesPerToken(p.config));
});
