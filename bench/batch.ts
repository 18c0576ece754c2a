/**
 * Throughput of concurrent requests, dense vs DyLLM, stepped as the server's scheduler steps them (not a test):
 *
 *   npm run bench:batch -- [--concurrency 1,4,8] [--gen 48] [--block 16] [--reps 3] [--model DIR]
 *   npm run bench:batch -- --synthetic-8b [--layers 2] [--prompt 64] [--gen 64] [--block 32] [--reps 1]
 *
 * For each concurrency c: c requests with distinct chat prompts (data/arith-test.jsonl), all live at once, one
 * step of each per tick, three ways —
 *   dense:           every tick one merged dense forward (engine/canvas.ts forwardMerged);
 *   DyLLM, one by one: every request its own planned forward per tick (the scheduler before batching);
 *   DyLLM, batched:  one merged planned forward per group of equal plan keys (forwardMergedPlanned).
 * Reports generated tokens/s (median of --reps rounds, the three ways alternated in each round) and whether the
 * batched DyLLM answers equal the one-by-one ones. Prints a markdown table and one JSON line per concurrency.
 *
 * `--modes` picks some of the three ways (a ratio column whose ways were not run is left empty); `--no-warmup` skips
 * the untimed round that precedes each concurrency.
 *
 * `--synthetic-8b` runs the random-weight checkpoint with LLaDA-8B's layer shapes (bench/synthetic-llada.ts, written
 * once under /tmp) instead: it has no tokenizer, so request i's prompt is `--prompt` token ids from its own seed. There
 * a DyLLM step is bound by reading the weights, which is what merging requests shares.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { encodePrompt, loadPipeline, type SpecialIds } from '../src/engine/pipeline.js';
import { loadModel } from '../src/models/load-model.js';
import type { DiffusionModel } from '../src/models/types.js';
import type { ModelConfig } from '../src/load/config.js';
import { upstreamModelDir } from './upstream-path.js';
import { syntheticLladaDir, syntheticLladaReady, writeSyntheticLlada } from './synthetic-llada.js';
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
    'synthetic-8b': { type: 'boolean', default: false },
    layers: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '64' },
    modes: { type: 'string', default: 'dense,one-by-one,batched' },
    'no-warmup': { type: 'boolean', default: false },
  },
});
/** An integer flag in [lo, hi], or one line and exit 1. */
function intFlag(name: string, v: string, lo: number, hi: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < lo || n > hi) {
    process.stderr.write(`bench:batch: --${name}: expected an integer in ${lo}..${hi}, found "${v}"\n`);
    process.exit(1);
  }
  return n;
}
const G = intFlag('gen', values.gen!, 1, 4096);
const BLOCK = intFlag('block', values.block!, 1, 4096);
const REPS = intFlag('reps', values.reps!, 1, 100);
const CONCURRENCY = values.concurrency!.split(',').map((c) => intFlag('concurrency', c, 1, 64));
const modes = values.modes!.split(',') as Mode[];
for (const m of modes) {
  if (!['dense', 'one-by-one', 'batched'].includes(m)) {
    process.stderr.write(`bench:batch: --modes: expected dense, one-by-one and/or batched, found "${m}"\n`);
    process.exit(1);
  }
}

interface Target { dir: string; model: DiffusionModel; config: ModelConfig; ids: SpecialIds; prompt(i: number): number[]; generation: Record<string, unknown> }
async function target(): Promise<Target> {
  if (values['synthetic-8b']) {
    const layers = intFlag('layers', values.layers!, 1, 32);
    let dir = syntheticLladaDir(layers);
    if (!syntheticLladaReady(dir)) {
      const up = upstreamModelDir('llada-8b-instruct');
      dir = writeSyntheticLlada(dir, JSON.parse(readFileSync(join(up, 'config.json'), 'utf8')), readFileSync(join(up, 'generation_config.json')), layers);
    }
    const { model, config } = loadModel(dir);
    const ids: SpecialIds = { mask: config.maskTokenId, eos: config.eosTokenId, eot: null, bos: config.bosTokenId, pad: config.padTokenId };
    const P = intFlag('prompt', values.prompt!, 1, 8192);
    const top = Math.min(config.vocabSize, config.maskTokenId);
    return { dir, model, config, ids, generation: {}, prompt: (i) => Array.from({ length: P }, (_, j) => (j * 7919 + 13 + i * 104729) % top) };
  }
  const p = await loadPipeline(values.model!);
  const questions = readFileSync('data/arith-test.jsonl', 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { question: string }).question);
  return { dir: values.model!, model: p.model, config: p.config, ids: p.ids, generation: p.generation, prompt: (i) => encodePrompt(p, questions[i], true) };
}
const t = await target();
const p = { model: t.model, ids: t.ids };
let options: ReturnType<typeof resolveOptions>;
let dyllm: ReturnType<typeof resolveAccel>;
try {
  options = resolveOptions(t.config, { genLength: G, steps: G, blockLength: BLOCK }, t.generation);
  dyllm = resolveAccel(t.config, { method: 'dyllm' });
} catch (e) {
  process.stderr.write(`bench:batch: ${(e as Error).message}\n`);
  process.exit(1);
}

type Mode = 'dense' | 'one-by-one' | 'batched';

function serve(c: number, mode: Mode): { ms: number; tokens: number; answers: string[] } {
  const t0 = performance.now();
  const runs = Array.from({ length: c }, (_, i) => new DenoiseRun(p.model, p.ids, { prompts: [t.prompt(i)], options, accel: mode === 'dense' ? undefined : dyllm }));
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

const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '');
const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '');
const lines: string[] = [];
for (const c of CONCURRENCY) {
  if (!values['no-warmup']) for (const m of modes) serve(c, m);
  const tps: Record<Mode, number[]> = { dense: [], 'one-by-one': [], batched: [] };
  let same: boolean | null = modes.includes('batched') && modes.includes('one-by-one') ? true : null;
  for (let r = 0; r < REPS; r++) {
    const order: Mode[] = r % 2 ? [...modes].reverse() : modes;
    const got: Partial<Record<Mode, ReturnType<typeof serve>>> = {};
    for (const m of order) {
      got[m] = serve(c, m);
      tps[m].push(got[m]!.tokens / (got[m]!.ms / 1000));
      console.error(`  c=${c} round ${r} ${m}: ${(got[m]!.ms / 1000).toFixed(1)} s`);
    }
    if (same !== null) same &&= got.batched!.answers.every((a, i) => a === got['one-by-one']!.answers[i]);
  }
  const med = (m: Mode): number => (tps[m].length ? median(tps[m]) : NaN);
  const row = { concurrency: c, dense: med('dense'), dyllmOneByOne: med('one-by-one'), dyllmBatched: med('batched'), identical: same };
  console.error(JSON.stringify(row));
  lines.push(`| ${c} | ${fmt(row.dense)} | ${fmt(row.dyllmOneByOne)} | ${fmt(row.dyllmBatched)} | ${ratio(row.dyllmBatched, row.dyllmOneByOne)} | ${ratio(row.dyllmBatched, row.dense)} | ${same === null ? '' : same ? 'yes' : 'NO'} |`);
}
console.log(`\n${t.dir}${values['synthetic-8b'] ? `, prompt ${values.prompt}` : ''}, gen ${G} / steps ${G} / block ${BLOCK}, ${cpus().length} CPUs (${cpus()[0].model}), backend ${p.model.backend.name}, ${new Date().toISOString().slice(0, 10)}, median of ${REPS} rounds\n`);
console.log('| concurrent requests | dense tok/s (merged) | DyLLM tok/s, one by one | DyLLM tok/s, batched | batched ÷ one by one | batched DyLLM ÷ dense | batched ≡ one by one |');
console.log('|---|---|---|---|---|---|---|');
for (const l of lines) console.log(l);
