import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../load/errors.js';
import { Rng } from './rng.js';

// Expected values come from the reference C code (splitmix64 by Vigna, xoshiro128** by Blackman & Vigna) compiled
// with gcc: state = (low32 z1, high32 z1, low32 z2, high32 z2), then six next() outputs.
const VECTORS: [number, number[]][] = [
  [0, [3737715805, 2584255861, 2876756834, 3286328325, 1553311962, 1625202774]],
  [42, [1776835114, 4165204688, 17111135, 2317295270, 2792088233, 2554630222]],
  [9007199254740991, [1233166643, 1287031142, 661813442, 2960669951, 2601079046, 1036114921]],
];

test('xoshiro128** seeded by splitmix64 matches the C reference', () => {
  for (const [seed, want] of VECTORS) {
    const r = new Rng(seed);
    assert.deepEqual(want.map(() => r.nextU32()), want, `seed ${seed}`);
  }
});

test('nextFloat64 uses two words (a >>> 5, b >>> 6); nextFloat32 uses the top 24 bits of one', () => {
  const r = new Rng(42);
  assert.equal(r.nextFloat64(), 0.41370166815658871); // words 1776835114, 4165204688 (C: genrand_res53 formula)
  const f = r.nextFloat32(); // third word 17111135
  assert.equal(f, (17111135 >>> 8) / 16777216);
  assert.ok(Math.abs(f - 0.00398397446) < 1e-11); // printed by the C reference
});

test('floats stay in [0, 1); clone continues the same stream; different seeds differ', () => {
  const r = new Rng(7);
  for (let i = 0; i < 10000; i++) {
    const a = r.nextFloat64();
    const b = r.nextFloat32();
    assert.ok(a >= 0 && a < 1 && b >= 0 && b < 1);
    assert.equal(Math.fround(b), b);
  }
  const c = r.clone();
  const xs = [r.nextU32(), r.nextU32(), r.nextFloat64()];
  assert.deepEqual([c.nextU32(), c.nextU32(), c.nextFloat64()], xs);
  assert.notEqual(new Rng(1).nextU32(), new Rng(2).nextU32());
});

test('a seed that is not an integer in [0, 2^53 - 1] is a ConfigError', () => {
  for (const s of [-1, 1.5, NaN, 2 ** 53]) assert.throws(() => new Rng(s), ConfigError);
});
