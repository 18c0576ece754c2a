/**
 * Invariants of the denoising loop that would catch a batching, padding or determinism bug: a packed batch
 * equals each prompt alone (both families); in the official left-padded layout real rows see no padding; one
 * seed gives one output; greedy decoding gives the same tokens on every backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { loadNativeBackend } from '../../src/kernels/native.js';
import { fixturePath, relMaxError } from '../helpers/fixtures.js';
import { needsNative } from '../helpers/native.js';
import { paddedBatch } from '../../src/models/types.js';
import { runGeneration as run } from '../helpers/run-generation.js';

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3], [5, 6, 7, 8, 9, 10, 11, 13]];

for (const [name, opts] of [
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 4 }],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 8, alg: 'entropy' }],
] as const) {
  test(`${name}: a packed batch gives each prompt's tokens alone`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const batch = run(p, PROMPTS, opts as GenerateOptionsInput);
    PROMPTS.forEach((pr, b) => {
      const alone = run(p, [pr], opts as GenerateOptionsInput);
      assert.deepEqual([...batch.tokens[b]], [...alone.tokens[0]], `prompt ${b}`);
    });
  });
}

for (const name of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
  test(`${name}: in the official left-padded batch, real rows get the logits they get alone`, async () => {
    // LLaDA shifts positions by the padding but RoPE is relative and pad keys are hidden; Dream skips pads in
    // its positions and hides them from keys and queries. Either way a real row cannot see the padding.
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const L = Math.max(...PROMPTS.map((x) => x.length));
    const V = p.config.vocabSize;
    const tokens = Int32Array.from(PROMPTS.flatMap((x) => [...new Array(L - x.length).fill(p.ids.pad), ...x]));
    const mask = Uint8Array.from(PROMPTS.flatMap((x) => [...new Array(L - x.length).fill(0), ...new Array(x.length).fill(1)]));
    const batch = p.model.forward(paddedBatch(tokens, PROMPTS.length, L, mask));
    PROMPTS.forEach((x, b) => {
      const alone = p.model.forward(paddedBatch(Int32Array.from(x), 1, x.length));
      const rows = batch.subarray((b * L + L - x.length) * V, (b + 1) * L * V);
      assert.ok(relMaxError(rows, alone) < 1e-5, `${name} prompt ${b}: ${relMaxError(rows, alone)}`);
    });
  });
}

test('llada: the official left-padded batch gives each prompt its tokens alone', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny-f32-sharded'), { backend: new ReferenceBackend() });
  const opts: GenerateOptionsInput = { genLength: 12, steps: 12, blockLength: 4, batchLayout: 'left-pad' };
  const batch = run(p, PROMPTS, opts);
  PROMPTS.forEach((pr, b) => assert.deepEqual([...batch.tokens[b]], [...run(p, [pr], opts).tokens[0]], `prompt ${b}`));
});

test('the same seed gives the same output; another seed gives another (temperature > 0)', async () => {
  for (const name of ['llada-tiny', 'dream-tiny']) {
    const p = await loadPipeline(fixturePath(name));
    const opts: GenerateOptionsInput = { genLength: 16, steps: 16, temperature: 1, seed: 7, ...(name.startsWith('dream') ? { alg: 'entropy' as const } : {}) };
    const a = run(p, [PROMPTS[0]], opts).tokens[0];
    const b = run(p, [PROMPTS[0]], opts).tokens[0];
    const c = run(p, [PROMPTS[0]], { ...opts, seed: 8 }).tokens[0];
    assert.deepEqual([...a], [...b], name);
    assert.notDeepEqual([...a], [...c], name);
  }
});

test('greedy decoding gives the same tokens on the native and reference backends (f32 checkpoints)', needsNative(), async () => {
  const native = loadNativeBackend();
  for (const [name, opts] of [
    ['llada-tiny-f32-sharded', { genLength: 16, steps: 16, blockLength: 8 }],
    ['dream-tiny-f32-sharded', { genLength: 16, steps: 16, alg: 'entropy' }],
  ] as const) {
    const ref = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const nat = await loadPipeline(fixturePath(name), { backend: native });
    assert.deepEqual([...run(nat, PROMPTS, opts as GenerateOptionsInput).tokens.flatMap((x) => [...x])], [...run(ref, PROMPTS, opts as GenerateOptionsInput).tokens.flatMap((x) => [...x])], name);
  }
});

test('parallel decoding finishes in fewer steps and early stop ends at the end token', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'));
  const base = run(p, [PROMPTS[0]], { genLength: 16, steps: 16 });
  const par = run(p, [PROMPTS[0]], { genLength: 16, steps: 16, parallelThreshold: 0.05 });
  assert.equal(base.stats.steps, 16);
  assert.ok(par.stats.steps < 16, `parallel decoding took ${par.stats.steps} steps`);
  assert.equal(par.tokens[0].length, 16);
  assert.ok(!par.tokens[0].includes(p.ids.mask));
});

test('requests stepped together through one merged forward get the tokens they get alone', async () => {
  const { DenoiseRun, forwardMerged } = await import('../../src/engine/generate.js');
  for (const [name, o1, o2] of [
    ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 4 }, { genLength: 8, steps: 8, temperature: 0.7, seed: 3 }],
    ['dream-tiny-f32-sharded', { genLength: 12, steps: 12, alg: 'entropy' }, { genLength: 6, steps: 3, alg: 'maskgit_plus', topP: 0.9 }],
  ] as const) {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const reqs = [
      { prompts: [PROMPTS[0], PROMPTS[1]], options: resolveOptions(p.config, o1 as GenerateOptionsInput, p.generation) },
      { prompts: [PROMPTS[2]], options: resolveOptions(p.config, o2 as GenerateOptionsInput, p.generation) },
    ];
    const runs = reqs.map((r) => new DenoiseRun(p.model, p.ids, r));
    // The second request joins one step late; the first leaves when done.
    let tick = 0;
    for (;;) {
      const live = runs.filter((r, i) => (i === 0 || tick > 0) && !r.finished);
      if (live.length === 0 && tick > 0) break;
      const batches = live.map((r) => r.prepare()!);
      const logits = forwardMerged(p.model, batches);
      live.forEach((r, i) => r.finish(logits[i], 0));
      tick++;
    }
    reqs.forEach((r, i) => {
      const alone = run(p, r.prompts as number[][], (i === 0 ? o1 : o2) as GenerateOptionsInput);
      assert.deepEqual(runs[i].result().tokens.map((t) => [...t]), alone.tokens.map((t) => [...t]), `${name} request ${i}`);
    });
  }
});

test('stop-at-eos ends a sequence at its first end token with everything before it committed', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'));
  // The fixture boosts EOS/EoT logits, so a long canvas decodes an end token early.
  const full = run(p, [PROMPTS[1]], { genLength: 32, steps: 32, blockLength: 4 });
  const stop = run(p, [PROMPTS[1]], { genLength: 32, steps: 32, blockLength: 4, stopAtEos: true });
  const endAt = [...stop.tokens[0]].findIndex((t) => t === p.ids.eos || t === p.ids.eot);
  assert.ok(endAt >= 0, 'an end token was decoded');
  assert.ok(stop.stats.steps < full.stats.steps, `stopped after ${stop.stats.steps} of ${full.stats.steps} steps`);
  assert.equal(stop.stats.generatedTokens, endAt + 1);
  assert.ok([...stop.tokens[0].subarray(0, endAt)].every((t) => t !== p.ids.mask));
  assert.ok([...stop.tokens[0].subarray(endAt + 1)].every((t) => t === p.ids.eos));
});

test('logits for a subset of rows equal the same rows of the full forward (LM head restriction is free)', async () => {
  for (const name of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const tokens = Int32Array.from(PROMPTS[2]);
    const V = p.config.vocabSize;
    const all = p.model.forward(paddedBatch(tokens, 1, tokens.length));
    const rows = Int32Array.from([6, 1, 3]);
    const some = p.model.forward(paddedBatch(tokens, 1, tokens.length, null, rows));
    rows.forEach((r, j) => assert.deepEqual([...some.subarray(j * V, (j + 1) * V)], [...all.subarray(r * V, (r + 1) * V)]));
  }
});
