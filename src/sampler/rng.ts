/**
 * The sampler's only source of randomness: xoshiro128** (Blackman & Vigna, 2018) seeded through splitmix64.
 * Pure integer arithmetic (Math.imul, >>> 0), so one seed gives one stream on every run, platform and backend.
 * It does not try to reproduce torch's generator; parity tests use T = 0 or inject draws.
 *
 * Seeding: `sm = seed` (an integer in [0, 2^53 − 1]); two splitmix64 outputs z1, z2 (mod 2^64) fill the state as
 * s0 = low32(z1), s1 = high32(z1), s2 = low32(z2), s3 = high32(z2). splitmix64 is a bijection on distinct inputs,
 * so the state is never all zero.
 * Derived draws: nextFloat64 = ((a >>> 5)·2^26 + (b >>> 6)) / 2^53 with a, b two consecutive nextU32 (a first);
 * nextFloat32 = (nextU32 >>> 8) / 2^24 (exact in fp32). Both lie in [0, 1).
 */
import { ConfigError } from '../load/errors.js';

const MASK64 = (1n << 64n) - 1n;

function splitmix64(state: bigint): [next: bigint, out: bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [s, z ^ (z >> 31n)];
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** @param seed integer in [0, 2^53 − 1]; anything else is a ConfigError. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new ConfigError(`seed: expected an integer in [0, 2^53 - 1], found ${seed}`);
    }
    const [sm1, z1] = splitmix64(BigInt(seed));
    const [, z2] = splitmix64(sm1);
    this.s0 = Number(z1 & 0xffffffffn);
    this.s1 = Number(z1 >> 32n);
    this.s2 = Number(z2 & 0xffffffffn);
    this.s3 = Number(z2 >> 32n);
  }

  /** A copy that continues the same stream independently (tests, replay). */
  clone(): Rng {
    const r = Object.create(Rng.prototype) as Rng;
    r.s0 = this.s0;
    r.s1 = this.s1;
    r.s2 = this.s2;
    r.s3 = this.s3;
    return r;
  }

  /** Uniform integer in [0, 2^32). */
  nextU32(): number {
    const s1 = this.s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 = s1 ^ this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits; consumes two nextU32. */
  nextFloat64(): number {
    const a = this.nextU32() >>> 5;
    const b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform in [0, 1) with 24 random bits (an fp32 value); consumes one nextU32. */
  nextFloat32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}
