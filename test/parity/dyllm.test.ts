/**
 * DyLLM parity with tools/dyllm_reference.py, an independent fp32 implementation of the algorithm from the spec:
 * same final tokens and the same salient-row counts per layer at every sparse step (fixtures keep every cosine
 * at least 2e-4 away from τ and every top-k decision tie-free, so rounding cannot flip a decision).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { generateSteps, type StepEvent } from '../../src/engine/generate.js';
import { resolveOptions } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { fixturePath, readJsonFixture } from '../helpers/fixtures.js';

interface DyllmCase {
  name: string;
  prompt: number[];
  gen_length: number;
  steps: number;
  block_length?: number;
  tau: number;
  full_steps: number;
  prompt_period: number;
  tokens: number[];
  dense_tokens: number[];
  steps_log: { p: number; dense: boolean; rows: number; salient?: number[] }[];
}

for (const name of ['llada-tiny', 'dream-tiny']) {
  test(`${name}: DyLLM matches the reference implementation token for token and row for row`, async () => {
    const fx = readJsonFixture<{ cases: DyllmCase[] }>(name, 'dyllm.json');
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const arch = p.config.arch;
    for (const c of fx.cases) {
      const options = resolveOptions(arch, arch === 'llada'
        ? { genLength: c.gen_length, steps: c.steps, blockLength: c.block_length }
        : { genLength: c.gen_length, steps: c.steps, alg: 'entropy' });
      const run = (accel: boolean) => {
        const events: StepEvent[] = [];
        const it = generateSteps(p.model, p.ids, {
          prompts: [c.prompt], options,
          accel: accel ? resolveAccel(arch, { method: 'dyllm', threshold: c.tau, fullSteps: c.full_steps, promptPeriod: c.prompt_period }) : undefined,
        });
        for (;;) {
          const r = it.next();
          if (r.done) return { tokens: [...r.value.tokens[0]], events };
          events.push(r.value);
        }
      };
      assert.deepEqual(run(false).tokens, c.dense_tokens, `${name}/${c.name}: dense`);
      const dy = run(true);
      assert.deepEqual(dy.tokens, c.tokens, `${name}/${c.name}: DyLLM tokens`);
      c.steps_log.forEach((s, i) => {
        const ev = dy.events[i];
        if (s.dense) assert.equal(ev.accel?.method, 'dyllm-dense', `${c.name} p=${s.p}`);
        else assert.deepEqual(ev.accel?.salientPerLayer, s.salient, `${name}/${c.name} p=${s.p}: salient rows per layer`);
      });
    }
  });
}
