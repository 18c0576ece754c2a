import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../load/errors.js';
import { dreamTimesteps, dreamTransferCount, lladaBlockPlan, lladaTransferCounts } from './schedule.js';

const f = Math.fround;

test('lladaTransferCounts: floor plus one on the first n mod steps steps', () => {
  assert.deepEqual(Array.from(lladaTransferCounts(10, 4)), [3, 3, 2, 2]);
  assert.deepEqual(Array.from(lladaTransferCounts(3, 5)), [1, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(lladaTransferCounts(0, 3)), [0, 0, 0]);
  assert.deepEqual(Array.from(lladaTransferCounts(32, 32)), new Array(32).fill(1));
  assert.deepEqual(Array.from(lladaTransferCounts(7, 1)), [7]);
  for (let n = 0; n <= 40; n++) {
    for (let steps = 1; steps <= 12; steps++) {
      const c = Array.from(lladaTransferCounts(n, steps));
      assert.equal(c.length, steps);
      assert.equal(c.reduce((x, y) => x + y, 0), n, `n=${n} steps=${steps}`);
      assert.ok(Math.max(...c) - Math.min(...c) <= 1);
      for (let i = 1; i < steps; i++) assert.ok(c[i] <= c[i - 1], 'non-increasing');
    }
  }
  assert.throws(() => lladaTransferCounts(4, 0), ConfigError);
});

test('lladaBlockPlan: blocks and steps per block, with the two generate.py requirements', () => {
  assert.deepEqual(lladaBlockPlan(128, 32, 128), { numBlocks: 4, stepsPerBlock: 32 });
  assert.deepEqual(lladaBlockPlan(256, 8, 256), { numBlocks: 32, stepsPerBlock: 8 });
  assert.deepEqual(lladaBlockPlan(512, 512, 512), { numBlocks: 1, stepsPerBlock: 512 });
  assert.throws(() => lladaBlockPlan(100, 32, 100), (e: unknown) => e instanceof ConfigError && /gen_length 100 must be a multiple of block_length 32/.test(e.message));
  assert.throws(() => lladaBlockPlan(128, 32, 30), (e: unknown) => e instanceof ConfigError && /steps 30 must be a multiple of the number of blocks 4/.test(e.message));
  assert.throws(() => lladaBlockPlan(0, 32, 32), ConfigError);
  assert.throws(() => lladaBlockPlan(64, 32, 1.5), ConfigError);
});

test('dreamTimesteps(4, 1e-3) matches the fp32 linspace worked by hand', () => {
  // eps32 = 0.0010000000474974513; step = fp32(fp32(eps32 - 1) / 4) = -0.9990000128746033 / 4 = -0.24975000321865082.
  // halfway = 5 >> 1 = 2: i = 0, 1 use 1 + step·i; i = 2, 3, 4 use eps32 − step·(4 − i).
  const ts = dreamTimesteps(4, 1e-3);
  const step = -0.24975000321865082;
  assert.equal(ts.length, 5);
  assert.equal(ts[0], 1);
  assert.equal(ts[1], 0.750249981880188); // fp32(0.7502499967813492)
  assert.equal(ts[2], 0.5005000233650208); // fp32(0.0010000000474974513 + 0.49950000643730164)
  assert.equal(ts[3], 0.25075000524520874);
  assert.equal(ts[4], f(1e-3));
  // The second-half formula matters: the first-half formula gives a different fp32 value at i = 2.
  assert.notEqual(ts[2], f(1 + f(step * 2)));
  const long = dreamTimesteps(512, 1e-3);
  assert.equal(long[0], 1);
  assert.equal(long[512], f(1e-3));
  for (let i = 1; i <= 512; i++) assert.ok(long[i] < long[i - 1]);
  assert.throws(() => dreamTimesteps(0, 1e-3), ConfigError);
  assert.throws(() => dreamTimesteps(8, 1), ConfigError);
  assert.throws(() => dreamTimesteps(8, NaN), ConfigError);
});

test('dreamTransferCount: fp32 product truncated, batch mean, last step takes the rest', () => {
  // fp32: 5 · fp32(1 − fp32(0.2)) = 5 · 0.800000011920929 → fp32 4.0 → 4 (float64 would give 3.99999998 → 3).
  assert.equal(dreamTransferCount(5, 1, 1, f(0.2), false), 4);
  assert.equal(dreamTransferCount(10, 1, 1, f(0.3), false), 7);
  // mean = 7 / 2 = 3.5; 3.5 · 0.8 = 2.8 → 2; on the last step int(3.5) = 3.
  assert.equal(dreamTransferCount(7, 2, 1, f(0.2), false), 2);
  assert.equal(dreamTransferCount(7, 2, 0.5, 0.001, true), 3);
  // steps = masks: step 0 gives int(N · 0.999/N) = 0; the last step unmasks all that remain.
  for (const n of [4, 64, 512]) {
    const ts = dreamTimesteps(n, 1e-3);
    assert.equal(dreamTransferCount(n, 1, ts[0], ts[1], false), 0, `n=${n}`);
    let left = n;
    for (let i = 0; i < n; i++) left -= dreamTransferCount(left, 1, ts[i], ts[i + 1], i === n - 1);
    assert.equal(left, 0);
    assert.equal(dreamTransferCount(3, 1, ts[n - 1], ts[n], true), 3);
  }
  // 10 masks over 4 steps (eps 1e-3): 10·0.24975 → 2; 8·(1 − 0.5005/0.75025) → 2; 6·0.499 → 2; rest 4.
  const ts = dreamTimesteps(4, 1e-3);
  let left = 10;
  const ks: number[] = [];
  for (let i = 0; i < 4; i++) {
    const k = dreamTransferCount(left, 1, ts[i], ts[i + 1], i === 3);
    ks.push(k);
    left -= k;
  }
  assert.deepEqual(ks, [2, 2, 2, 4]);
});
