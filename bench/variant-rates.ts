/**
 * How often DyLLM's beyond-the-paper options reuse on real prompts (not a test):
 *
 *   npm run bench:variant-rates -- [--limit 20]
 *
 * Generates the first `--limit` problems of data/arith-test.jsonl with the bundled model (chat template, its own
 * generation settings) under `--head-tol` 0.02 / 0.05 and `--qkv-tol` 0.02 / 0.1 and sums the sparse steps'
 * telemetry: logits rows reused and the steps in which every logits row was reused (the only steps in which a
 * weight-bandwidth-bound LM head saves time), Q rows and K/V rows reused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveAccel } from '../src/engine/accel.js';
import { generateSteps, type StepEvent } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { encodePrompt, loadPipeline } from '../src/engine/pipeline.js';
import { bundledModelPath } from '../src/load/hub.js';

const { values } = parseArgs({ options: { limit: { type: 'string', default: '20' } } });
const p = await loadPipeline(bundledModelPath);
const qs = readFileSync(join('data', 'arith-test.jsonl'), 'utf8').trim().split('\n').slice(0, Number(values.limit)).map((l) => (JSON.parse(l) as { question: string }).question);
const options = resolveOptions(p.config, {}, p.generation);
console.log(`# bench:variant-rates — ${qs.length} problems of data/arith-test.jsonl, bundled model, gen ${options.genLength} / block ${options.blockLength}, ${new Date().toISOString()}`);
for (const [k, e] of [['headTol', 0.02], ['headTol', 0.05], ['qkvTol', 0.02], ['qkvTol', 0.1]] as const) {
  let steps = 0, all = 0, reused = 0, rows = 0, q = 0, kv = 0, kvRows = 0;
  for (const text of qs) {
    const it = generateSteps(p.model, p.ids, { prompts: [encodePrompt(p, text, true)], options, accel: resolveAccel(p.config, { method: 'dyllm', [k]: e }, options) });
    for (let r = it.next(); !r.done; r = it.next()) {
      const a = (r.value as StepEvent).accel;
      if (a?.method !== 'dyllm') continue;
      steps++;
      reused += a.headReused ?? 0;
      rows += a.headRows ?? 0;
      if (k === 'headTol' && a.headReused === a.headRows) all++;
      q += a.qReused ?? 0;
      kv += a.kvReused ?? 0;
      kvRows += a.kvRows;
    }
  }
  console.log(k === 'headTol'
    ? `--head-tol ${e}: ${steps} sparse steps; logits rows reused ${reused}/${rows}; steps with every logits row reused ${all}/${steps}`
    : `--qkv-tol ${e}: ${steps} sparse steps; Q rows reused ${(q / steps).toFixed(1)} per step (Σ layers); K/V rows reused ${kv}/${kvRows}`);
}
