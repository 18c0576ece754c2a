import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../load/errors.js';
import {
  applyTopK,
  applyTopP,
  argmaxRow,
  dreamAlgConfidence,
  FLOAT32_LOWEST,
  lladaRemaskingConfidence,
  parseDreamAlg,
  parseLladaRemasking,
  scoreRow,
  softmaxRow,
} from './confidence.js';
import { Rng } from './rng.js';

const close = (a: number, b: number, tol = 1e-12, msg?: string) => assert.ok(Math.abs(a - b) <= tol, msg ?? `${a} vs ${b}`);

test('option names map onto confidence kinds; unknown names are ConfigErrors', () => {
  assert.equal(dreamAlgConfidence('maskgit_plus'), 'probability');
  assert.equal(dreamAlgConfidence('topk_margin'), 'margin');
  assert.equal(dreamAlgConfidence('entropy'), 'entropy');
  assert.equal(dreamAlgConfidence('origin'), 'probability');
  assert.equal(lladaRemaskingConfidence('low_confidence'), 'probability');
  assert.equal(lladaRemaskingConfidence('random'), 'random');
  assert.equal(parseDreamAlg('entropy'), 'entropy');
  assert.equal(parseLladaRemasking('random'), 'random');
  assert.throws(() => parseDreamAlg('low_confidence'), ConfigError);
  assert.throws(() => parseLladaRemasking('entropy'), ConfigError);
  assert.throws(() => dreamAlgConfidence('bogus' as never), ConfigError);
});

test('softmaxRow is stable, honours the offset, and gives −inf and FLOAT32_LOWEST probability 0', () => {
  const out = new Float64Array(3);
  softmaxRow(new Float32Array([9, 9, 1000, 1000, -Infinity]), 2, 3, out);
  assert.deepEqual(Array.from(out), [0.5, 0.5, 0]);
  softmaxRow(new Float64Array([0, Math.log(3), FLOAT32_LOWEST]), 0, 3, out);
  close(out[0], 0.25);
  close(out[1], 0.75);
  assert.equal(out[2], 0);
  assert.equal(argmaxRow(new Float32Array([1, 3, 3, 2]), 0, 4), 1); // lowest index on ties
});

test('scoreRow: probability, margin, negative entropy, random', () => {
  const p = new Float64Array([0.2, 0.5, 0.3]);
  const rng = new Rng(3);
  assert.equal(scoreRow(p, 0, 3, 1, 'probability', rng), 0.5);
  close(scoreRow(p, 0, 3, 1, 'margin', rng), 0.2);
  // 0.2 ln 0.2 + 0.5 ln 0.5 + 0.3 ln 0.3 = −0.3218876 − 0.3465736 − 0.3611918
  close(scoreRow(p, 0, 3, 1, 'entropy', rng), -1.0296530140645737, 1e-8);
  assert.equal(scoreRow(new Float64Array([0.5, 0.5]), 0, 2, 0, 'margin', rng), 0); // tied top values
  const c = rng.clone();
  assert.equal(scoreRow(p, 0, 3, 1, 'random', rng), c.nextFloat32());
});

/** Dream's top_p_logits transcribed literally (full sort, cumsum, shift right), ties by lower index. */
function topPNaive(row: Float64Array, topP: number): Float64Array {
  const V = row.length;
  const idx = Array.from({ length: V }, (_, j) => j).sort((a, b) => row[b] - row[a] || a - b);
  const m = row[idx[0]];
  const e = idx.map((j) => Math.exp(row[j] - m));
  const z = e.reduce((s, x) => s + x, 0);
  let cum = 0;
  const remove = idx.map((_, r) => ((cum += e[r] / z), cum > topP));
  const out = row.slice();
  for (let r = 1; r < V; r++) if (remove[r - 1]) out[idx[r]] = FLOAT32_LOWEST;
  return out;
}

test('applyTopP keeps the smallest prefix whose cumulative probability exceeds top_p', () => {
  // probs 0.2, 0.5, 0.3 in vocabulary order; sorted cumulative 0.5, 0.8, 1.0.
  const row = () => new Float64Array([Math.log(0.2), Math.log(0.5), Math.log(0.3)]);
  let r = row();
  assert.equal(applyTopP(r, 0, 3, 0.7), 2);
  assert.deepEqual(Array.from(r), [FLOAT32_LOWEST, Math.log(0.5), Math.log(0.3)]);
  r = row();
  assert.equal(applyTopP(r, 0, 3, 0.79), 2);
  r = row();
  assert.equal(applyTopP(r, 0, 3, 0.81), 3);
  assert.deepEqual(Array.from(r), Array.from(row()));
  r = row();
  assert.equal(applyTopP(r, 0, 3, 0.4), 1);
  assert.deepEqual(Array.from(r), [FLOAT32_LOWEST, Math.log(0.5), FLOAT32_LOWEST]);
  r = row();
  assert.equal(applyTopP(r, 0, 3, 0), 1); // the first sorted entry is always kept
  // Exact arithmetic: cumulative .25, .5, .75, 1; "exceeds" is strict, so .5 == top_p does not end the prefix.
  assert.equal(applyTopP(new Float64Array(4), 0, 4, 0.5), 3);
  assert.equal(applyTopP(new Float64Array(4), 0, 4, 0.25), 2);
  // Equal logits: the lower index sorts first. 1000 equal entries, cumulative (j+1)/1000 exceeds 0.9055 at 906.
  const flat = new Float64Array(1000);
  assert.equal(applyTopP(flat, 0, 1000, 0.9055), 906);
  assert.equal(flat[905], 0);
  assert.equal(flat[906], FLOAT32_LOWEST);
  // Offsets: only the addressed row changes.
  const two = new Float32Array([5, 0, 0, 0, 5, 0]);
  applyTopP(two, 3, 3, 0.5);
  assert.deepEqual(Array.from(two), [5, 0, 0, FLOAT32_LOWEST, 5, FLOAT32_LOWEST].map(Math.fround));
});

test('applyTopP equals the literal transcription on random rows, including tails far below the max', () => {
  const rng = new Rng(11);
  for (let trial = 0; trial < 200; trial++) {
    const V = 2 + (rng.nextU32() % 300);
    const spread = [1, 5, 40, 400][trial % 4];
    const row = new Float64Array(V);
    for (let j = 0; j < V; j++) row[j] = (rng.nextFloat64() - 0.5) * spread;
    if (trial % 5 === 0) row[0] = 60; // one dominant entry: the head must widen to reach top_p
    const topP = [0.1, 0.5, 0.9, 0.999999, 0.99999999999][trial % 5];
    const got = row.slice();
    applyTopP(got, 0, V, topP);
    assert.deepEqual(Array.from(got), Array.from(topPNaive(row, topP)), `trial ${trial}`);
  }
});

test('applyTopK removes entries strictly below the k-th largest; ties with it stay', () => {
  let r = new Float64Array([0.1, 3, -2, 3, 2]);
  assert.equal(applyTopK(r, 0, 5, 2), 2);
  assert.deepEqual(Array.from(r), [FLOAT32_LOWEST, 3, FLOAT32_LOWEST, 3, FLOAT32_LOWEST]);
  r = new Float64Array([0.1, 3, -2, 3, 2]);
  assert.equal(applyTopK(r, 0, 5, 1), 2); // both 3s are the 1st largest value
  r = new Float64Array([0.1, 3, -2, 3, 2]);
  assert.equal(applyTopK(r, 0, 5, 3), 3);
  assert.deepEqual(Array.from(r), [FLOAT32_LOWEST, 3, FLOAT32_LOWEST, 3, 2]);
  r = new Float64Array([0.1, 3, -2]);
  assert.equal(applyTopK(r, 0, 3, 10), 3);
  assert.deepEqual(Array.from(r), [0.1, 3, -2]);
  const rng = new Rng(5);
  for (let trial = 0; trial < 50; trial++) {
    const V = 1 + (rng.nextU32() % 200);
    const k = 1 + (rng.nextU32() % V);
    const row = new Float64Array(V).map(() => Math.round(rng.nextFloat64() * 20)); // many ties
    const kth = Array.from(row).sort((a, b) => b - a)[k - 1];
    const got = row.slice();
    applyTopK(got, 0, V, k);
    assert.deepEqual(Array.from(got), Array.from(row).map((v) => (v < kth ? FLOAT32_LOWEST : v)));
  }
});
