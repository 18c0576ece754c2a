/**
 * The HTTP fuzz (server-fuzz.ts) on a short budget: seeded random and mutated requests against a live server on
 * the bundled model; every answer well-formed and in time, no 500, no worker death, and normal requests still
 * answered correctly between cases. Replay with DYLLM_HTTP_FUZZ_SEED=<seed> (printed); DYLLM_HTTP_FUZZ_CASES sets
 * the budget. Long runs: `npm run fuzz:http -- --cases 2000 --seed N`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzHttp } from './server-fuzz.js';

const CASES = Number(process.env.DYLLM_HTTP_FUZZ_CASES ?? 60);
const SEED = Number(process.env.DYLLM_HTTP_FUZZ_SEED ?? Date.now() % 1_000_000);

test(`HTTP fuzz: ${CASES} seeded requests against the bundled model are each answered well-formed (seed ${SEED})`, { timeout: 600_000 }, async (t) => {
  const lines: string[] = [];
  const r = await fuzzHttp({ seed: SEED, cases: CASES, checkEvery: 10, log: (l) => lines.push(l) });
  t.diagnostic(`seed ${SEED}: ${r.tried} cases, ${r.sanityChecks} sanity checks, statuses ${JSON.stringify(r.statuses)}`);
  assert.equal(r.failures.length, 0, `HTTP fuzz seed ${SEED} (replay: DYLLM_HTTP_FUZZ_SEED=${SEED}):\n${lines.join('\n')}`);
  assert.equal(r.tried, CASES);
  assert.ok(r.sanityChecks >= Math.floor(CASES / 10), 'the sanity request ran between cases');
});
