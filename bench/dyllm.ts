/**
 * Dense versus DyLLM on the same model, prompts and settings, in one run (not a test).
 *
 *   npm run bench:dyllm -- [--model DIR] [--tasks data/arith-test.jsonl] [--n 50] [--gen 48 --steps 48 --block 16]
 *                          [--taus 0.99,0.995] [--updates delta,rescale,rescale-incremental] [--warmup 2]
 *
 * For every configuration: tokens/s (generated tokens ÷ generation time, all prompts one at a time), speed-up
 * over the dense run measured in this same process, salient fraction (FFN rows recomputed ÷ dense), K/V fraction,
 * the fraction of outputs token-identical to dense, and GSM8K-style accuracy (last number vs `#### N`).
 * Prints a markdown table and one JSON line per configuration.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { decodeAnswer, encodePrompt, loadPipeline } from '../src/engine/pipeline.js';
import { generateSteps, type GenerateResult } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { resolveAccel, type AccelOptionsInput } from '../src/engine/accel.js';
import { bundledModelPath as BUNDLED_MODEL } from '../src/load/hub.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: BUNDLED_MODEL },
    tasks: { type: 'string', default: 'data/arith-test.jsonl' },
    n: { type: 'string', default: '50' },
    gen: { type: 'string', default: '48' },
    steps: { type: 'string' },
    block: { type: 'string', default: '16' },
    taus: { type: 'string', default: '0.99,0.995' },
    updates: { type: 'string', default: 'delta' },
    warmup: { type: 'string', default: '2' },
    raw: { type: 'boolean', default: false },
  },
});

const gen = Number(values.gen);
const steps = Number(values.steps ?? values.gen);
const block = Number(values.block);
const p = await loadPipeline(values.model!);
const tasks = readFileSync(values.tasks!, 'utf8').trim().split('\n').slice(0, Number(values.n)).map((l) => JSON.parse(l) as { question: string; answer: string });
const prompts = tasks.map((t) => encodePrompt(p, t.question, !values.raw));
const gold = tasks.map((t) => t.answer.split('####').pop()!.trim());
const options = resolveOptions(p.config, { genLength: gen, steps, blockLength: block }, p.generation);

function lastNumber(text: string): string | null {
  const m = text.match(/-?[\d,]*\.?\d+/g);
  return m ? m[m.length - 1].replace(/,/g, '').replace(/\.$/, '') : null;
}

interface Row { name: string; accel: AccelOptionsInput | null; results: GenerateResult[]; ms: number }

function runAll(accel: AccelOptionsInput | null): Row['results'] {
  return prompts.map((pr) => {
    const it = generateSteps(p.model, p.ids, { prompts: [pr], options, accel: accel ? resolveAccel(p.config, accel) : undefined });
    for (;;) {
      const r = it.next();
      if (r.done) return r.value;
    }
  });
}

const configs: { name: string; accel: AccelOptionsInput | null }[] = [{ name: 'dense', accel: null }];
for (const update of values.updates!.split(',')) {
  for (const tau of values.taus!.split(',').map(Number)) {
    configs.push({ name: `dyllm τ=${tau}${update === 'delta' ? '' : ` ${update}`}`, accel: { method: 'dyllm', threshold: tau, attnUpdate: update as 'delta' } });
  }
}

// Warm-up (JIT, caches, page faults) on a few prompts of every configuration.
const warm = Number(values.warmup);
for (const c of configs) for (const pr of prompts.slice(0, warm)) {
  const it = generateSteps(p.model, p.ids, { prompts: [pr], options, accel: c.accel ? resolveAccel(p.config, c.accel) : undefined });
  while (!it.next().done);
}

const rows: Row[] = [];
for (const c of configs) {
  const t0 = performance.now();
  const results = runAll(c.accel);
  rows.push({ ...c, results, ms: performance.now() - t0 });
}

const dense = rows[0];
const tps = (r: Row) => r.results.reduce((n, x) => n + x.stats.generatedTokens, 0) / (r.results.reduce((n, x) => n + x.stats.elapsedMs, 0) / 1000);
const date = new Date().toISOString().slice(0, 10);
console.log(`\nmodel ${values.model}, ${tasks.length} prompts (${values.tasks}), gen ${gen} / steps ${steps} / block ${block}, ${values.raw ? 'raw' : 'chat'} prompts, backend ${p.model.backend.name}, ${cpus()[0].model}, ${date}\n`);
console.log('| configuration | tokens/s | speed-up | salient fraction | K/V fraction | identical to dense | accuracy |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const same = r.results.filter((x, i) => x.tokens[0].every((t, j) => t === dense.results[i].tokens[0][j])).length;
  const acc = r.results.filter((x, i) => lastNumber(decodeAnswer(p, x.tokens[0])) === gold[i]).length;
  const sal = r.results.reduce((n, x) => n + x.stats.salientFraction, 0) / r.results.length;
  const kv = r.results.reduce((n, x) => n + x.stats.kvFraction, 0) / r.results.length;
  console.log(`| ${r.name} | ${tps(r).toFixed(1)} | ${(tps(r) / tps(dense)).toFixed(2)}x | ${sal.toFixed(3)} | ${kv.toFixed(3)} | ${same}/${r.results.length} | ${(100 * acc / r.results.length).toFixed(1)} % |`);
}
for (const r of rows) {
  const same = r.results.filter((x, i) => x.tokens[0].every((t, j) => t === dense.results[i].tokens[0][j])).length;
  console.error(JSON.stringify({ config: r.name, tokens_per_s: tps(r), speedup: tps(r) / tps(dense), identical: same / r.results.length }));
}
