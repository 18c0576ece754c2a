import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../load/errors.js';
import { FLOAT32_LOWEST } from './confidence.js';
import { dreamSampleTokens, dreamSelect, type DreamOptions, type DreamSequence } from './dream.js';
import { Rng } from './rng.js';
import { dreamTimesteps } from './schedule.js';

const f = Math.fround;
const close = (a: number, b: number, tol = 1e-6, msg?: string) => assert.ok(Math.abs(a - b) <= tol, msg ?? `${a} vs ${b}`);
const logitsOf = (probs: number[][]) => new Float32Array(probs.flat().map(Math.log)); // p = 0 → −inf

// Hand-made distributions over V = 5 (each alg prefers a different row):
//   Z: max .5 (tie → token 0), margin 0,  Σp ln p = −0.693147
//   X: max .6,                 margin .3, Σp ln p = .6 ln .6 + .3 ln .3 + .1 ln .05 = −0.967261
//   Y: max .55,                margin .4, Σp ln p = .55 ln .55 + .45 ln .15 = −1.182509
const Z = [0.5, 0.5, 0, 0, 0];
const X = [0.6, 0.3, 0.05, 0.05, 0];
const Y = [0.55, 0.15, 0.15, 0.15, 0];
const V = 5;

const base: DreamOptions = { temperature: 0, topP: null, topK: null, alg: 'maskgit_plus', algTemp: null, parallelThreshold: null };

function score(probs: number[], opts: Partial<DreamOptions>) {
  const { conf, x0 } = dreamSampleTokens(logitsOf([probs]), V, new Int32Array([0]), { ...base, ...opts }, new Rng(0));
  return { conf: conf[0], x0: x0[0] };
}

test('sample_tokens at T = 0: x0 is the argmax; each alg scores as documented', () => {
  assert.deepEqual(score(X, {}), { conf: f(0.6), x0: 0 });
  close(score(X, { alg: 'topk_margin' }).conf, 0.3);
  close(score(X, { alg: 'entropy' }).conf, -0.967261, 1e-5);
  close(score(Y, { alg: 'entropy' }).conf, -1.182509, 1e-5);
  assert.equal(score(Z, { alg: 'topk_margin' }).conf, 0);
  assert.equal(score(Z, {}).x0, 0); // tie → lower token id
  assert.equal(score(Y, { alg: 'entropy' }).x0, 0); // x0 does not depend on alg
});

test('top_p and top_k change the confidence even at T = 0', () => {
  // top_p 0.85 on X: cumulative .6, .9 → keep 2, renormalise → [2/3, 1/3].
  close(score(X, { topP: 0.85 }).conf, 2 / 3);
  close(score(X, { topP: 0.85, alg: 'topk_margin' }).conf, 1 / 3);
  close(score(X, { topP: 0.85, alg: 'entropy' }).conf, (2 / 3) * Math.log(2 / 3) + (1 / 3) * Math.log(1 / 3), 1e-6);
  close(score(X, { topP: 0.93 }).conf, 0.6 / 0.95); // cumulative .6, .9, .95 > .93: keeps 3
  assert.equal(score(X, { topP: 1 }).conf, f(0.6)); // top_p = 1 is off
  close(score(X, { topK: 2 }).conf, 2 / 3);
  assert.equal(score(X, { topK: 1 }).conf, 1);
  close(score(Z, { topK: 1 }).conf, 0.5); // both tied entries survive top_k = 1
  assert.equal(score(X, { topK: 1 }).x0, 0);
});

test('T > 0: x0 ~ Categorical(probs), conf = probs[x0], frequencies follow probs', () => {
  const N = 4000;
  const rows = new Int32Array(N).map((_, i) => i);
  const logits = logitsOf(new Array(N).fill(X));
  const { conf, x0 } = dreamSampleTokens(logits, V, rows, { ...base, temperature: 1 }, new Rng(8));
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < N; i++) {
    counts[x0[i]]++;
    assert.equal(conf[i], f(X[x0[i]] / X.reduce((a, b) => a + b)), `row ${i}`);
  }
  assert.equal(counts[4], 0); // probability 0 is never drawn
  for (let j = 0; j < 4; j++) assert.ok(Math.abs(counts[j] - N * X[j]) < 5 * Math.sqrt(N * X[j] * (1 - X[j])), `token ${j}: ${counts[j]}`);
  // Temperature sharpens: T = 0.25 concentrates on token 0 (p ∝ p^4: .6^4 / Σ = 0.934).
  const sharp = dreamSampleTokens(logits, V, rows, { ...base, temperature: 0.25 }, new Rng(8));
  const share = sharp.x0.filter((t) => t === 0).length / N;
  assert.ok(share > 0.9 && share < 0.96, `share ${share}`);
  // The T > 0 draw order: one float64 per row, rows in the given order.
  const rng = new Rng(3);
  const replay = rng.clone();
  dreamSampleTokens(logits, V, new Int32Array([2, 0, 1]), { ...base, temperature: 1 }, rng);
  for (let i = 0; i < 3; i++) replay.nextFloat64();
  assert.equal(rng.nextU32(), replay.nextU32());
});

function seq(probs: number[][], masked?: number[]): DreamSequence {
  return { logits: logitsOf(probs), masked: new Uint8Array(masked ?? probs.map(() => 1)) };
}

function select(sequences: DreamSequence[], step: number, steps: number, opts: Partial<DreamOptions> = {}, seed = 1) {
  const out = dreamSelect({ sequences, step, timesteps: dreamTimesteps(steps, 1e-3), options: { ...base, ...opts }, rng: new Rng(seed) });
  return out.map((s) => ({ rows: Array.from(s.rows), tokens: Array.from(s.tokens) }));
}

test('dreamSelect: each alg commits its own most confident row (k = int(3 · 0.4995) = 1)', () => {
  const s = [seq([Z, X, Y])];
  assert.deepEqual(select(s, 0, 2, { alg: 'maskgit_plus' }), [{ rows: [1], tokens: [0] }]);
  assert.deepEqual(select(s, 0, 2, { alg: 'topk_margin' }), [{ rows: [2], tokens: [0] }]);
  assert.deepEqual(select(s, 0, 2, { alg: 'entropy' }), [{ rows: [0], tokens: [0] }]);
  // Non-masked rows are never scored or committed.
  assert.deepEqual(select([seq([Z, X, Y, X], [0, 1, 1, 1])], 0, 2, { alg: 'entropy' }), [{ rows: [1], tokens: [0] }]);
  // The last step commits every masked row.
  assert.deepEqual(select(s, 1, 2, { alg: 'entropy' }), [{ rows: [0, 1, 2], tokens: [0, 0, 0] }]);
});

test('dreamSelect: k is the batch mean, capped per sequence at its own masked rows', () => {
  // Masked 4 and 2 → mean 3 → k = int(3 · 0.4995) = 1 for both (alone, the second would get int(0.999) = 0).
  const a = seq([X, Y, Z, X]);
  const b = seq([Y, X]);
  assert.deepEqual(select([a, b], 0, 2), [
    { rows: [0], tokens: [0] },
    { rows: [1], tokens: [0] },
  ]);
  assert.deepEqual(select([b], 0, 2), [{ rows: [], tokens: [] }]);
  // Last step: mean (5 + 1) / 2 = 3 → k = 3; the second sequence has one masked row and commits only that.
  const c = seq([X, Y, Z, X, Y]);
  const d = seq([Y, X, Z], [0, 0, 1]);
  const out = select([c, d], 1, 2);
  assert.equal(out[0].rows.length, 3);
  assert.deepEqual(out[1], { rows: [2], tokens: [0] });
});

test('dreamSelect: parallel threshold adds rows at or above it, at least one; scale follows the alg', () => {
  const s = [seq([Z, X, Y])];
  // steps 4, step 0: k = int(3 · 0.24975) = 0.
  assert.deepEqual(select(s, 0, 4, { alg: 'entropy' }), [{ rows: [], tokens: [] }]);
  assert.deepEqual(select(s, 0, 4, { alg: 'entropy', parallelThreshold: -1.0 })[0].rows, [0, 1]);
  assert.deepEqual(select(s, 0, 4, { alg: 'entropy', parallelThreshold: -0.5 })[0].rows, [0]); // none: the best one
  assert.deepEqual(select(s, 0, 4, { alg: 'maskgit_plus', parallelThreshold: 0.52 })[0].rows, [1, 2]);
  assert.deepEqual(select(s, 0, 2, { alg: 'topk_margin', parallelThreshold: 0.25 })[0].rows, [1, 2]); // k = 1 (Y) + X
});

test('origin: Bernoulli(1 − s/t) per masked row with float32 draws; the last step commits all', () => {
  const probs = new Array(40).fill(X);
  const s = [seq(probs)];
  const all = select(s, 3, 4, { alg: 'origin' });
  assert.deepEqual(all[0].rows, probs.map((_, i) => i));
  assert.ok(all[0].tokens.every((t) => t === 0));
  // Step 0 of 4: p = fp32(1 − 0.75025) = 0.24975; replay the documented draws.
  const ts = dreamTimesteps(4, 1e-3);
  const p = f(1 - f(ts[1] / ts[0]));
  const replay = new Rng(77);
  const want = probs.map((_, i) => i).filter(() => replay.nextFloat32() < p);
  const got = dreamSelect({ sequences: s, step: 0, timesteps: ts, options: { ...base, alg: 'origin' }, rng: new Rng(77) });
  assert.deepEqual(Array.from(got[0].rows), want);
  assert.ok(want.length > 0 && want.length < 40);
});

test('same seed, same result; another seed differs (T > 0, origin and confidence algs)', () => {
  const probs = new Array(16).fill([0.2, 0.2, 0.2, 0.2, 0.2]);
  const s = [seq(probs), seq(probs)];
  for (const alg of ['origin', 'entropy', 'maskgit_plus'] as const) {
    const a = select(s, 1, 2, { alg, temperature: 0.8 }, 4);
    assert.deepEqual(select(s, 1, 2, { alg, temperature: 0.8 }, 4), a);
    assert.notDeepEqual(select(s, 1, 2, { alg, temperature: 0.8 }, 5), a, alg);
  }
});

test('alg_temp: Gumbel-top-k over conf / alg_temp; tiny alg_temp equals top-k; draws are replayable', () => {
  const s = [seq([Z, X, Y, [0.3, 0.3, 0.2, 0.1, 0.1]])]; // 4 masked; steps 2 step 0: k = int(4 · 0.4995) = 1
  const greedy = select(s, 0, 2, { alg: 'maskgit_plus' });
  for (let seed = 0; seed < 10; seed++) assert.deepEqual(select(s, 0, 2, { alg: 'maskgit_plus', algTemp: 1e-9 }, seed), greedy);
  const picked = new Set<number>();
  for (let seed = 0; seed < 40; seed++) picked.add(select(s, 0, 2, { alg: 'maskgit_plus', algTemp: 10 }, seed)[0].rows[0]);
  assert.ok(picked.size >= 3, `rows picked: ${[...picked]}`);
  // Replay: T = 0, so the only draws are one Gumbel per masked row; key = conf / algTemp − ln(−ln u).
  const conf = [0.5, 0.6, 0.55, 0.3].map(f);
  const replay = new Rng(12);
  const keys = conf.map((c) => c / 0.05 - Math.log(-Math.log(replay.nextFloat64())));
  const best = keys.indexOf(Math.max(...keys));
  assert.deepEqual(select(s, 0, 2, { alg: 'maskgit_plus', algTemp: 0.05 }, 12)[0].rows, [best]);
});

test('invalid options are ConfigErrors', () => {
  const s = [seq([Z, X, Y])];
  const bad: Partial<DreamOptions>[] = [
    { temperature: -0.1 },
    { temperature: NaN },
    { topP: 1.5 },
    { topP: -0.1 },
    { topK: 0 },
    { topK: 2.5 },
    { alg: 'low_confidence' as never },
    { algTemp: -1 },
    { parallelThreshold: NaN },
    { alg: 'origin', parallelThreshold: 0.9 },
  ];
  for (const b of bad) assert.throws(() => select(s, 0, 2, b), ConfigError, JSON.stringify(b));
  assert.throws(() => dreamSampleTokens(logitsOf([X]), V, new Int32Array([0]), { ...base, topK: -3 }, new Rng(0)), ConfigError);
  assert.equal(FLOAT32_LOWEST, -3.4028234663852886e38);
});
