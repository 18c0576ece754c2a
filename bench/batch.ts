/**
 * Throughput of concurrent requests, dense vs DyLLM, stepped as the server's scheduler steps them (not a test):
 *
 *   npm run bench:batch -- [--concurrency 1,4,8] [--gen 48] [--block 16] [--reps 3] [--model DIR]
 *
 * For each concurrency c: c requests with distinct chat prompts (data/arith-test.jsonl), all live at once, one
 * step of each per tick, three ways —
 *   dense:           every tick one merged dense forward (engine/canvas.ts forwardMerged);
 *   DyLLM, one by one: every request its own planned forward per tick (the scheduler before batching);
 *   DyLLM, batched:  one merged planned forward per group of equal plan keys (forwardMergedPlanned).
 * Reports generated tokens/s (median of --reps rounds, the three ways alternated in each round) and whether the
 * batched DyLLM answers equal the one-by-one ones. Prints a markdown table and one JSON line per concurrency.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { encodePrompt, loadPipeline } from '../src/engine/pipeline.js';
import { DenoiseRun, forwardMerged, forwardMergedPlanned } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { resolveAccel } from '../src/engine/accel.js';
import type { PlannedPart } from '../src/engine/accel/types.js';
import type { ForwardBatch } from '../src/models/types.js';
import { bundledModelPath } from '../src/load/hub.js';

const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,4,8' },
    gen: { type: 'string', default: '48' },
    block: { type: 'string', default: '16' },
    reps: { type: 'string', default: '3' },
    model: { type: 'string', default: bundledModelPath },
  },
});
const G = Number(values.gen);
const p = await loadPipeline(values.model!);
const options = resolveOptions(p.config, { genLength: G, steps: G, blockLength: Number(values.block) }, p.generation);
const dyllm = resolveAccel(p.config, { method: 'dyllm' });
const questions = readFileSync('data/arith-test.jsonl', 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { question: string }).question);

type Mode = 'dense' | 'one-by-one' | 'batched';

function serve(c: number, mode: Mode): { ms: number; tokens: number; answers: string[] } {
  const t0 = performance.now();
  const runs = Array.from({ length: c }, (_, i) => new DenoiseRun(p.model, p.ids, { prompts: [encodePrompt(p, questions[i], true)], options, accel: mode === 'dense' ? undefined : dyllm }));
  for (;;) {
    const live = runs.map((run) => ({ run, batch: run.prepare() })).filter((x): x is { run: DenoiseRun; batch: ForwardBatch } => x.batch !== null);
    if (live.length === 0) break;
    if (mode === 'dense') {
      const logits = forwardMerged(p.model, live.map((x) => x.batch));
      live.forEach((x, i) => x.run.finish(logits[i], 0));
    } else if (mode === 'one-by-one') {
      for (const x of live) x.run.finish(x.run.forwardOwn(x.batch), 0);
    } else {
      const groups = new Map<string, { run: DenoiseRun; batch: ForwardBatch; part: PlannedPart }[]>();
      for (const x of live) {
        const part = x.run.planOwn(x.batch);
        groups.set(part.key, [...(groups.get(part.key) ?? []), { ...x, part }]);
      }
      for (const g of groups.values()) {
        const logits = forwardMergedPlanned(p.model, g);
        g.forEach((m, i) => m.run.finish(logits[i], 0));
      }
    }
  }
  const ms = performance.now() - t0;
  const results = runs.map((r) => r.result());
  return { ms, tokens: results.reduce((n, r) => n + r.stats.generatedTokens, 0), answers: results.map((r) => r.tokens[0].join(',')) };
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const lines: string[] = [];
for (const c of values.concurrency!.split(',').map(Number)) {
  for (const m of ['dense', 'one-by-one', 'batched'] as const) serve(c, m); // warm-up
  const tps: Record<Mode, number[]> = { dense: [], 'one-by-one': [], batched: [] };
  let same = true;
  for (let r = 0; r < Number(values.reps); r++) {
    const order: Mode[] = r % 2 ? ['batched', 'one-by-one', 'dense'] : ['dense', 'one-by-one', 'batched'];
    const got: Partial<Record<Mode, ReturnType<typeof serve>>> = {};
    for (const m of order) {
      got[m] = serve(c, m);
      tps[m].push(got[m]!.tokens / (got[m]!.ms / 1000));
    }
    same &&= got.batched!.answers.every((a, i) => a === got['one-by-one']!.answers[i]);
  }
  const row = { concurrency: c, dense: median(tps.dense), dyllmOneByOne: median(tps['one-by-one']), dyllmBatched: median(tps.batched), identical: same };
  console.error(JSON.stringify(row));
  lines.push(`| ${c} | ${row.dense.toFixed(1)} | ${row.dyllmOneByOne.toFixed(1)} | ${row.dyllmBatched.toFixed(1)} | ${(row.dyllmBatched / row.dyllmOneByOne).toFixed(2)}x | ${(row.dyllmBatched / row.dense).toFixed(2)}x | ${same ? 'yes' : 'NO'} |`);
}
console.log(`\n${values.model}, gen ${G} / steps ${G} / block ${values.block}, ${cpus().length} CPUs (${cpus()[0].model}), backend ${p.model.backend.name}, ${new Date().toISOString().slice(0, 10)}, median of ${values.reps} rounds\n`);
console.log('| concurrent requests | dense tok/s (merged) | DyLLM tok/s, one by one | DyLLM tok/s, batched | batched ÷ one by one | batched DyLLM ÷ dense | batched ≡ one by one |');
console.log('|---|---|---|---|---|---|---|');
for (const l of lines) console.log(l);
