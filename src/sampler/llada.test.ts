import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../load/errors.js';
import { lladaSelect, validateLladaOptions, type LladaOptions, type LladaSelectArgs } from './llada.js';
import { Rng } from './rng.js';

const EOS = 2;
const EOT = 3;
const base: LladaOptions = {
  temperature: 0,
  remasking: 'low_confidence',
  logitsEosInf: false,
  confidenceEosEotInf: false,
  eosId: EOS,
  eotId: EOT,
  parallelThreshold: null,
};

function run(rows: number[][], k: number, opts: Partial<LladaOptions> = {}, extra: Partial<LladaSelectArgs> = {}) {
  const R = rows.length;
  const sel = lladaSelect({
    logits: new Float32Array(rows.flat()),
    masked: new Uint8Array(R).fill(1),
    candidate: new Uint8Array(R).fill(1),
    k,
    options: { ...base, ...opts },
    rng: new Rng(1),
    ...extra,
  });
  return { rows: Array.from(sel.rows), tokens: Array.from(sel.tokens) };
}

// Confidences at T = 0 (softmax of the row at its argmax):
// row 0: e^5/(e^5+3) = 0.980, row 1: e/(e+3) = 0.475, row 2: e^3/(e^3+3) = 0.870, row 3: 0.25 (ties → token 0).
const FOUR = [
  [5, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 3, 0, 0],
  [0, 0, 0, 0],
];

test('greedy: argmax tokens, the k most confident candidates, rows ascending', () => {
  assert.deepEqual(run(FOUR, 2), { rows: [0, 2], tokens: [0, 1] });
  assert.deepEqual(run(FOUR, 3), { rows: [0, 1, 2], tokens: [0, 1, 1] });
  assert.deepEqual(run(FOUR, 4), { rows: [0, 1, 2, 3], tokens: [0, 1, 1, 0] });
  assert.deepEqual(run(FOUR, 0), { rows: [], tokens: [] });
  // Equal confidences: the lower row commits first.
  assert.deepEqual(run([[0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]], 1), { rows: [0], tokens: [1] });
});

test('non-candidates and non-masked rows never commit while candidates remain', () => {
  const candidate = new Uint8Array([0, 1, 1, 1]);
  assert.deepEqual(run(FOUR, 2, {}, { candidate }), { rows: [1, 2], tokens: [1, 1] });
  const masked = new Uint8Array([1, 1, 0, 1]);
  assert.deepEqual(run(FOUR, 2, {}, { masked }), { rows: [0, 1], tokens: [0, 1] });
});

test('k beyond the masked candidates takes masked non-candidates in row order (torch.topk on −inf)', () => {
  const candidate = new Uint8Array([0, 0, 1, 0]);
  const masked = new Uint8Array([0, 1, 1, 1]);
  // One finite row (2); two more demanded: rows 1 and 3 (masked, outside the block); row 0 is not masked.
  assert.deepEqual(run(FOUR, 3, {}, { candidate, masked }), { rows: [1, 2, 3], tokens: [1, 1, 0] });
  assert.deepEqual(run(FOUR, 2, {}, { candidate, masked }), { rows: [1, 2], tokens: [1, 1] });
  assert.deepEqual(run(FOUR, 9, {}, { candidate, masked }), { rows: [1, 2, 3], tokens: [1, 1, 0] });
});

test('logitsEosInf: EOS is never chosen and the confidence excludes it', () => {
  // Row 0 prefers EOS; without it, token 1 (e/(e+2) = 0.576). Row 1: e^0.5/(e^0.5+3) = 0.355.
  const rows = [
    [0, 1, 9, 0],
    [0.5, 0, 0, 0],
  ];
  assert.deepEqual(run(rows, 2), { rows: [0, 1], tokens: [EOS, 0] });
  assert.deepEqual(run(rows, 2, { logitsEosInf: true }), { rows: [0, 1], tokens: [1, 0] });
  // Row 0's confidence is e/(e+2) = 0.576 only if EOS is excluded from its softmax (else e/(e^9+e+2) = 0.0003);
  // row 1 (its EOS is −inf too): e^0.9/(e^0.9+2) = 0.552 sits between the two.
  const rows2 = [
    [0, 1, 9, 0],
    [0, 0, 0, 0.9],
  ];
  assert.deepEqual(run(rows2, 1, { logitsEosInf: true }), { rows: [0], tokens: [1] });
});

test('confidence_eos_eot_inf: T = 0 zeroes EOS and EOT confidence, T > 0 only EOT; x0 is unchanged', () => {
  // row 0 → EOT, row 1 → EOS, row 2 → token 0. Gaps of 50 make the T = 1 Gumbel argmax certain.
  const rows = [
    [0, 0, 0, 50],
    [0, 0, 50, 0],
    [10, 0, 0, 0],
  ];
  // Without the quirk rows 0 and 1 both round to confidence 1.0 in fp32: the lower row wins.
  assert.deepEqual(run(rows, 1), { rows: [0], tokens: [EOT] });
  assert.deepEqual(run(rows, 1, { temperature: 1 }), { rows: [0], tokens: [EOT] });
  // T > 0: only EOT's confidence is 0, so EOS (row 1) still wins.
  assert.deepEqual(run(rows, 1, { temperature: 1, confidenceEosEotInf: true }), { rows: [1], tokens: [EOS] });
  // T = 0: both are 0, so row 2 wins.
  assert.deepEqual(run(rows, 1, { confidenceEosEotInf: true }), { rows: [2], tokens: [0] });
  // x0 keeps EOS / EOT: those rows are unmasked last, not changed.
  for (const temperature of [0, 1]) {
    assert.deepEqual(run(rows, 3, { temperature, confidenceEosEotInf: true }), { rows: [0, 1, 2], tokens: [EOT, EOS, 0] });
  }
});

test('confidence_eos_eot_inf renormalises the other rows (softmax without EOS/EOT at T = 0)', () => {
  // Both rows: e^2/(e^2+3) = 0.711 normally, e^2/(e^2+1) = 0.881 with EOS and EOT removed.
  const rows = [
    [2, 0, 0, 0],
    [0, 2, 0, 0],
  ];
  assert.deepEqual(run(rows, 0, { parallelThreshold: 0.8 }).rows, [0]); // none reach 0.8: at least one
  assert.deepEqual(run(rows, 0, { parallelThreshold: 0.8, confidenceEosEotInf: true }).rows, [0, 1]);
});

test('parallel threshold: top-k plus every candidate at or above it, at least one', () => {
  assert.deepEqual(run(FOUR, 1, { parallelThreshold: 0.8 }).rows, [0, 2]);
  assert.deepEqual(run(FOUR, 1, { parallelThreshold: 0.99 }).rows, [0]);
  assert.deepEqual(run(FOUR, 3, { parallelThreshold: 0.99 }).rows, [0, 1, 2]);
  assert.deepEqual(run(FOUR, 0, { parallelThreshold: 0.99 }).rows, [0]);
  assert.deepEqual(run(FOUR, 0, { parallelThreshold: 0.2 }).rows, [0, 1, 2, 3]);
  const candidate = new Uint8Array([0, 1, 1, 0]);
  assert.deepEqual(run(FOUR, 0, { parallelThreshold: 0.2 }, { candidate }).rows, [1, 2]); // row 0 is outside the block
  const none = new Uint8Array(4);
  assert.deepEqual(run(FOUR, 0, { parallelThreshold: 0.2 }, { candidate: none }).rows, []);
});

test('T > 0: Gumbel draws follow the documented order (masked candidates ascending, V draws each)', () => {
  const V = 16;
  const R = 6;
  const logits = new Float32Array(R * V);
  for (let i = 0; i < logits.length; i++) logits[i] = Math.sin(i * 1.7) * 2;
  const masked = new Uint8Array([1, 1, 0, 1, 1, 1]);
  const candidate = new Uint8Array([0, 1, 1, 1, 0, 1]);
  const T = 0.7;
  const rng = new Rng(99);
  const replay = rng.clone();
  const sel = lladaSelect({ logits, masked, candidate, k: 3, options: { ...base, temperature: T }, rng });
  // Replay: rows 1, 3, 5 in that order, V float64 draws each; x0 = argmax exp(l)/(−ln u)^T.
  const want = new Map<number, number>();
  for (const r of [1, 3, 5]) {
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < V; j++) {
      const v = Math.exp(logits[r * V + j]) / Math.pow(-Math.log(replay.nextFloat64()), T);
      if (v > bv) [bv, best] = [v, j];
    }
    want.set(r, best);
  }
  assert.deepEqual(Array.from(sel.rows), [1, 3, 5]);
  assert.deepEqual(Array.from(sel.tokens), [want.get(1), want.get(3), want.get(5)]);
  assert.equal(rng.nextU32(), replay.nextU32(), 'no other draws were made');
});

test('same seed, same result; another seed differs somewhere (T > 0)', () => {
  const V = 32;
  const R = 12;
  const logits = new Float32Array(R * V); // flat: every token equally likely
  const go = (seed: number) =>
    lladaSelect({ logits, masked: new Uint8Array(R).fill(1), candidate: new Uint8Array(R).fill(1), k: R, options: { ...base, temperature: 1 }, rng: new Rng(seed) });
  assert.deepEqual(go(5), go(5));
  assert.notDeepEqual(Array.from(go(5).tokens), Array.from(go(6).tokens));
});

test('random remasking: one float32 draw per masked candidate, after the Gumbel draws', () => {
  const rows = FOUR;
  const candidate = new Uint8Array([1, 0, 1, 1]);
  const rng = new Rng(21);
  const u = rng.clone();
  const conf = [u.nextFloat32(), u.nextFloat32(), u.nextFloat32()]; // rows 0, 2, 3
  const best = [0, 2, 3][conf.indexOf(Math.max(...conf))];
  const sel = run(rows, 1, { remasking: 'random' }, { candidate, rng });
  assert.deepEqual(sel.rows, [best]);
  assert.deepEqual(sel.tokens, [[0, 1, 1, 0][best]]);
});

test('invalid options are ConfigErrors', () => {
  const bad: Partial<LladaOptions>[] = [
    { temperature: -1 },
    { temperature: NaN },
    { remasking: 'entropy' as never },
    { parallelThreshold: NaN },
    { logitsEosInf: true, eosId: 4 },
    { confidenceEosEotInf: true, eotId: -1 },
    { confidenceEosEotInf: true, eotId: 1.5 },
  ];
  for (const b of bad) {
    assert.throws(() => run(FOUR, 1, b), ConfigError, JSON.stringify(b));
  }
  assert.throws(() => validateLladaOptions({ ...base, temperature: Infinity }), ConfigError);
  validateLladaOptions({ ...base, eosId: 126081, eotId: 126348, logitsEosInf: true }, 126464);
});
