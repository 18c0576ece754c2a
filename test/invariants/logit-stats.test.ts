/**
 * Row statistics computed by the kernels replace the samplers' own vocabulary-wide softmax at temperature 0; they
 * must give the same tokens and confidences as the JS path, on every backend (ties included: lowest index wins).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { backendCases } from '../helpers/native.js';
import type { KernelBackend } from '../../src/kernels/backend.js';
import type { RowStats } from '../../src/sampler/confidence.js';
import { lladaSelect } from '../../src/sampler/llada.js';
import { dreamSampleTokens } from '../../src/sampler/dream.js';
import { Rng } from '../../src/sampler/rng.js';

function logitsBlock(M: number, V: number, seed: number): Float32Array {
  const a = new Float32Array(M * V);
  let s = seed;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s / 2 ** 32) * 2 - 1) * 6;
  }
  // A tie for the maximum in row 1 (lowest index must win) and an equal top-2 in row 2.
  a[1 * V + 3] = a[1 * V + 9] = 50;
  a[2 * V + 0] = a[2 * V + 1] = 40;
  return a;
}

function stats(be: KernelBackend, logits: Float32Array, M: number, V: number): RowStats {
  const s = { argmax: new Int32Array(M), p1: new Float64Array(M), p2: new Float64Array(M), negEntropy: new Float64Array(M) };
  be.logitStats(logits, M, V, s.argmax, s.p1, s.p2, s.negEntropy);
  return s;
}

for (const { name, make, options } of backendCases()) {
  test(`logitStats agrees with the reference backend's (${name})`, options, () => {
    const M = 9;
    const V = 1031;
    const logits = logitsBlock(M, V, 7);
    const ref = stats(new ReferenceBackend(), logits, M, V);
    assert.equal(ref.argmax[1], 3);
    assert.ok(Math.abs(ref.p1[2] - ref.p2[2]) < 1e-15);
    const be = make();
    const s = stats(be, logits, M, V);
    assert.deepEqual([...s.argmax], [...ref.argmax], be.name);
    for (let m = 0; m < M; m++) {
      assert.ok(Math.abs(s.p1[m] - ref.p1[m]) <= 1e-12 * Math.max(1, ref.p1[m]), `${be.name} p1 row ${m}`);
      assert.ok(Math.abs(s.p2[m] - ref.p2[m]) <= 1e-12, `${be.name} p2 row ${m}`);
      assert.ok(Math.abs(s.negEntropy![m] - ref.negEntropy![m]) <= 1e-9 * Math.abs(ref.negEntropy![m]), `${be.name} entropy row ${m}`);
    }
  });

  test(`the samplers pick the same rows and tokens with or without precomputed statistics (${name})`, options, () => {
    const M = 12;
    const V = 517;
    const logits = logitsBlock(M, V, 11);
    const be = make();
    const s = stats(be, logits, M, V);
    const ones = new Uint8Array(M).fill(1);
    const opts = { temperature: 0, remasking: 'low_confidence' as const, logitsEosInf: false, confidenceEosEotInf: false, eosId: 0, eotId: 1, parallelThreshold: null };
    for (const k of [1, 3, 7]) {
      const a = lladaSelect({ logits, masked: ones, candidate: ones, k, options: opts, rng: new Rng(1) });
      const b = lladaSelect({ logits, masked: ones, candidate: ones, k, options: opts, rng: new Rng(1), stats: s });
      assert.deepEqual([[...b.rows], [...b.tokens]], [[...a.rows], [...a.tokens]], `${be.name} llada k=${k}`);
    }
    const rows = Int32Array.from({ length: M }, (_, i) => M - 1 - i);
    for (const alg of ['maskgit_plus', 'topk_margin', 'entropy'] as const) {
      const o = { temperature: 0, topP: null, topK: null, alg };
      const a = dreamSampleTokens(logits, V, rows, o, new Rng(1));
      const b = dreamSampleTokens(logits, V, rows, o, new Rng(1), s);
      assert.deepEqual([...b.x0], [...a.x0], `${be.name} ${alg} x0`);
      for (let i = 0; i < M; i++) assert.ok(Math.abs(b.conf[i] - a.conf[i]) <= 1e-6 * Math.max(1, Math.abs(a.conf[i])), `${be.name} ${alg} conf ${i}: ${b.conf[i]} vs ${a.conf[i]}`);
    }
  });
}
