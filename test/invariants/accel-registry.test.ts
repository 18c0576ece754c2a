/**
 * Adding an acceleration method is one object registered by name (src/engine/accel/registry.ts). This file defines
 * a toy method — recompute every `period`-th step, otherwise reuse the last step's logits — registers it, and runs
 * it through the library (`generate`) and through the CLI (flags, help, option errors and --json stats derive from
 * the registry). With period 1 it is the dense model, so its tokens must equal dense's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accelMethod, accelMethods, registerAccel, ACCEL_OPTIONS } from '../../src/engine/accel/registry.js';
import { accelTelemetry } from '../../src/engine/accel/telemetry.js';
import type { AccelMethod, AccelOptions, AccelTelemetry } from '../../src/engine/accel/types.js';
import { resolveAccel } from '../../src/engine/accel.js';
import type { StepEvent } from '../../src/engine/generate.js';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { loadConfig } from '../../src/load/config.js';
import { fixturePath } from '../helpers/fixtures.js';
import { runGeneration as run } from '../helpers/run-generation.js';

interface StaleOptions extends AccelOptions {
  readonly period: number;
}

/** Recompute every `period`-th step (all rows, dense); in between, serve the wanted rows from the last full logits. */
const stale: AccelMethod<StaleOptions> = {
  name: 'stale',
  source: 'toy',
  options: [{ key: 'stalePeriod', flag: 'stale-period', field: 'dyllm.stale_period', type: 'int', metavar: 'N', range: { min: 1, max: 1000 }, help: 'toy: recompute every N-th step', defaultHelp: '2' }],
  resolve: (input) => ({ method: 'stale', period: (input.stalePeriod as number | undefined) ?? 2 }),
  create({ model, layout }, opts) {
    const V = model.config.vocabSize;
    const L = model.config.numLayers;
    let full: Float32Array | null = null; // [Σ lengths, V] logits of every row at the last recompute
    const rowOf = new Map<string, number>(); // `${sequence}:${position}` -> row of `full`
    let last: AccelTelemetry | null = null;
    return {
      forward(batch, active, step) {
        const fresh = full === null || step % opts.period === 0;
        let denseRows = 0;
        for (let ai = 0; ai < active.length; ai++) denseRows += batch.seqStart[ai + 1] - batch.seqStart[ai];
        if (fresh) {
          full = model.forward({ ...batch, logitRows: null });
          rowOf.clear();
          active.forEach((b, ai) => {
            for (let r = batch.seqStart[ai]; r < batch.seqStart[ai + 1]; r++) rowOf.set(`${b}:${r - batch.seqStart[ai]}`, r);
          });
        }
        const want = batch.logitRows ?? Int32Array.from({ length: batch.tokens.length }, (_, i) => i);
        const out = new Float32Array(want.length * V);
        want.forEach((r, j) => {
          let ai = 0;
          while (r >= batch.seqStart[ai + 1]) ai++;
          const src = rowOf.get(`${active[ai]}:${r - batch.seqStart[ai]}`)!;
          out.set(full!.subarray(src * V, (src + 1) * V), j * V);
        });
        const rows = fresh ? denseRows * L : 0;
        last = accelTelemetry(fresh ? 'stale' : 'stale-reuse', { salientPerLayer: new Array(L).fill(fresh ? denseRows : 0), ffnRows: rows, kvRows: rows, recomputed: active.map(() => new Int32Array(0)) }, denseRows, L, active, layout);
        return out;
      },
      telemetry: () => last,
    };
  },
  cacheBytesPerToken: (cfg) => cfg.vocabSize * 4,
  label: (opts) => `stale every ${opts.period}`,
  stats: (opts) => ({ stale_period: opts.period }),
};

registerAccel(stale);

const PROMPTS = [[12, 40, 41, 42, 7], [99, 3]];

test('a registered method is one more accel value, with its knobs in the option schema', () => {
  assert.equal(accelMethod('stale'), stale as unknown as AccelMethod);
  assert.deepEqual(accelMethods().map((m) => m.name), ['none', 'dyllm', 'prefix', 'dual', 'dllm-cache', 'stale']);
  assert.ok(ACCEL_OPTIONS[0].values!.includes('stale'));
  assert.ok(ACCEL_OPTIONS.some((s) => s.key === 'stalePeriod'));
  assert.throws(() => registerAccel(stale), /acceleration method "stale" is registered twice/);
  assert.deepEqual(resolveAccel('llada', { method: 'stale' }), { method: 'stale', period: 2 });
  assert.throws(() => resolveAccel('llada', { method: 'stale', stalePeriod: 0 }), /^OptionError: stalePeriod: expected an integer in \[1, 1000\], found 0$/);
  assert.throws(() => resolveAccel('llada', { method: 'stale', stalePeriode: 3 }), /unknown acceleration option "stalePeriode"; did you mean "stalePeriod"\?/);
});

for (const [name, gen] of [
  ['llada-tiny', { genLength: 12, steps: 12, blockLength: 4 }],
  ['dream-tiny', { genLength: 12, steps: 12, alg: 'entropy' }],
] as const) {
  test(`${name}: the toy method runs through generate (period 1 ≡ dense; period 2 reuses every other step)`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const dense = run(p, PROMPTS, gen);
    const same = run(p, PROMPTS, gen, { method: 'stale', stalePeriod: 1 });
    assert.deepEqual(same.tokens, dense.tokens);
    assert.equal(same.stats.salientFraction, 1);
    const events: StepEvent[] = [];
    const r = run(p, PROMPTS, gen, { method: 'stale' }, events);
    assert.deepEqual(events.map((e) => e.accel!.method), events.map((_, i) => (i % 2 === 0 ? 'stale' : 'stale-reuse')));
    assert.ok(r.stats.salientFraction > 0.4 && r.stats.salientFraction < 0.6, String(r.stats.salientFraction));
    for (const t of r.tokens) assert.equal(t.length, gen.genLength);
  });
}

/** Run `dyllm ARGS` in this process (the toy method is registered here), capturing stdout and stderr. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { main } = await import('../../src/cli/main.js');
  const out: string[] = [];
  const err: string[] = [];
  const w = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((s: string) => out.push(s) > 0) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => err.push(s) > 0) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    [process.stdout.write, process.stderr.write] = w;
  }
}

test('the toy method through the CLI: --accel stale, its flag, help, errors and --json stats', async () => {
  const base = ['generate', '--model', fixturePath('llada-tiny'), '--prompt-ids', '5,6,7,8', '--gen-length', '8', '--steps', '8', '--backend', 'reference', '--json'];
  const dense = JSON.parse((await cli(...base)).stdout);
  const r = await cli(...base, '--accel', 'stale', '--stale-period', '1');
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  assert.deepEqual(got.tokens, dense.tokens);
  assert.equal(got.stats.accel, 'stale');
  assert.equal(got.stats.stale_period, 1);
  assert.equal(got.stats.cache_bytes_per_token, 4 * loadConfig(fixturePath('llada-tiny')).config.vocabSize);
  const help = await cli('generate', '--help');
  assert.match(help.stdout, /--stale-period N +toy: recompute every N-th step \(default 2\)/);
  assert.match(help.stdout, /stale\s+\(toy\)/);
  const bad = await cli(...base, '--accel', 'stale', '--stale-period', '0');
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'dyllm: --stale-period: expected an integer in [1, 1000], found 0\n');
});
