/**
 * Kernel argument fuzzing (test/helpers/kernel-fuzz.ts): every native entry point and every backend method, on every
 * ISA tier this CPU runs, with extreme sizes, wrong array kinds and wrong lengths — each tier in a child process, so a
 * crash fails the test with the case that caused it. A short budget here (DYLLM_FUZZ_CASES, default 1500 per tier);
 * `npm run fuzz:kernels` runs a long one. The seed is printed; DYLLM_FUZZ_SEED replays it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { nativeAddonPath, nativeIsaTiers } from '../src/kernels/native.js';
import { fuzzCases, fuzzReport, fuzzSeed, runFuzzChild } from './helpers/kernel-fuzz.js';

const built = existsSync(nativeAddonPath);
const seed = fuzzSeed();
const cases = fuzzCases(1500);
console.log(`kernel fuzz: seed ${seed}, ${cases} cases per tier (replay: DYLLM_FUZZ_SEED=${seed})`);

if (!built) {
  test('kernel argument fuzzing', { skip: `native addon not built (${nativeAddonPath} missing)` }, () => {});
} else {
  for (const isa of nativeIsaTiers()) {
    test(`native-${isa}: ${cases} fuzzed calls (seed ${seed}) throw TypeError/RangeError or return, never crash`, { timeout: 600_000 }, async () => {
      const r = await runFuzzChild(isa, seed, cases);
      assert.equal(fuzzReport(r), '');
    });
  }

  test('the fuzz harness reports a child that dies of a signal, with the case it was running', { timeout: 60_000 }, async () => {
    const r = await runFuzzChild(nativeIsaTiers()[0], seed, 5, 0, 60_000, { DYLLM_FUZZ_SELFTEST: 'abort' });
    assert.equal(r.signal, 'SIGABRT');
    assert.match(fuzzReport(r), /^kernel fuzz on tier \S+, seed \d+: the child died of SIGABRT during case 0: /);
  });
}
