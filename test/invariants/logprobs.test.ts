/**
 * GenerateRequest.logprobs: each committed token's log-probability is log-softmax of the logit row the sampler
 * read at its commit step. Checked against an independent reference forward of the canvas as it was before that
 * step (ReferenceBackend, f32 fixtures), for LLaDA (row = position) and Dream (row = position − 1, shifted logits),
 * greedy and with temperature; turning logprobs on changes no token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { committedLogprob, generateSteps, MAX_TOP_LOGPROBS, type GenerateResult, type StepEvent } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { paddedBatch } from '../../src/models/types.js';
import { fixturePath } from '../helpers/fixtures.js';

function run(p: Pipeline, prompt: number[], opts: GenerateOptionsInput, logprobs?: number): { events: StepEvent[]; result: GenerateResult } {
  const it = generateSteps(p.model, p.ids, { prompts: [prompt], options: resolveOptions(p.config, opts, p.generation), logprobs });
  const events: StepEvent[] = [];
  for (;;) {
    const r = it.next();
    if (r.done) return { events, result: r.value };
    events.push(r.value);
  }
}

/** log-softmax of `row / T` in float64, written independently of the engine. */
function logSoftmax(row: Float32Array, T: number): Float64Array {
  const x = Float64Array.from(row, (v) => (T > 0 ? v / T : v));
  const m = Math.max(...x);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return x.map((v) => v - lse);
}

const PROMPT = [5, 6, 7, 8, 9, 10];
for (const [name, opts, T] of [
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 12, blockLength: 4 }, 0],
  ['llada-tiny-f32-sharded', { genLength: 12, steps: 6, blockLength: 6, temperature: 0.7, seed: 3 }, 0.7],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 12, alg: 'entropy' }, 0],
  ['dream-tiny-f32-sharded', { genLength: 12, steps: 8, alg: 'maskgit_plus', temperature: 0.5, seed: 11 }, 0.5],
] as const) {
  test(`${name} T=${T}: committed logprobs equal log-softmax of a reference forward of the canvas before the step`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const K = 3;
    const { events, result } = run(p, PROMPT, opts as GenerateOptionsInput, K);
    const plain = run(p, PROMPT, opts as GenerateOptionsInput);
    assert.deepEqual([...result.tokens[0]], [...plain.result.tokens[0]], 'logprobs change no token');
    const G = opts.genLength;
    const V = p.config.vocabSize;
    let before: Int32Array = new Int32Array(G).fill(p.ids.mask);
    const seen = new Set<number>();
    for (const ev of events) {
      const seq = ev.sequences[0];
      assert.equal(seq.logprobs!.length, seq.committed.length, 'one entry per committed offset');
      const tokens = Int32Array.from([...PROMPT, ...before]);
      const logits = p.model.forward(paddedBatch(tokens, 1, tokens.length));
      seq.committed.forEach((pos, i) => {
        const lp = seq.logprobs![i];
        assert.equal(lp.token, seq.canvas[pos]);
        const row = PROMPT.length + pos - (p.config.shiftLogits ? 1 : 0);
        const ref = logSoftmax(logits.subarray(row * V, (row + 1) * V), T);
        assert.ok(Math.abs(lp.logprob - ref[lp.token]) < 1e-4, `step ${ev.step} pos ${pos}: ${lp.logprob} vs ${ref[lp.token]}`);
        assert.equal(lp.top.length, K);
        const order = [...ref.keys()].sort((a, b) => ref[b] - ref[a] || a - b);
        lp.top.forEach((t, j) => {
          assert.equal(t.token, order[j], `step ${ev.step} pos ${pos}: top ${j}`);
          assert.ok(Math.abs(t.logprob - ref[t.token]) < 1e-4);
        });
        // Greedy commits the most likely token: its logprob is the top one.
        if (T === 0) assert.equal(lp.top[0].token, lp.token);
        assert.ok(lp.logprob <= 0);
        seen.add(pos);
      });
      before = seq.canvas;
    }
    // (Dream may commit the mask token itself; that position is committed again later.)
    assert.equal(seen.size, G, 'every generated position was committed, with its logprob');
  });
}

test('committedLogprob: top-k order, ties to the lower id, k = 0, and the bound', async () => {
  const row = Float32Array.from([1, 3, 3, -2, 0.5]);
  const r = committedLogprob(row, 4, 4, 0);
  assert.deepEqual(r.top.map((t) => t.token), [1, 2, 0, 4]);
  const ref = logSoftmax(row, 0);
  assert.ok(Math.abs(r.logprob - ref[4]) < 1e-12);
  assert.deepEqual(committedLogprob(row, 0, 0, 2).top, []);
  assert.ok(Math.abs(committedLogprob(row, 0, 0, 2).logprob - logSoftmax(row, 2)[0]) < 1e-12);
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  for (const bad of [-1, MAX_TOP_LOGPROBS + 1, 1.5, Number.NaN]) {
    assert.throws(() => run(p, PROMPT, { genLength: 4, steps: 4 }, bad), new RegExp(`^ConfigError: logprobs: expected an integer in \\[0, ${MAX_TOP_LOGPROBS}\\]`));
  }
});
