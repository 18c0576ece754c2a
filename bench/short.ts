/**
 * DyLLM ÷ dense wall time across canvas lengths (not a test):
 *
 *   npm run bench:short -- [--gens 32,64,128,256] [--block 32] [--prompt 32] [--reps 5] [--models bundled,small]
 *
 * For each model and gen length G (steps = G, block --block): one whole generation of one prompt with the dense
 * forward and one with DyLLM (defaults: τ of the family, 4 warm-up steps), alternated `--reps` times after one
 * warm-up pair (`--tau T` overrides τ: 1.5 makes every row salient, DyLLM's worst case); reports the median time of each and the median of the per-pair ratios DyLLM ÷ dense (< 1: DyLLM is
 * faster), and whether the two outputs are token-identical. Models: `bundled` (models/dyllm-demo, a chat prompt
 * from data/arith-test.jsonl) and `small`, a random-weight LLaDA-architecture model (d 256, 6 layers, 8 heads,
 * FFN 768, vocab 640; written once under /tmp) with a random 32-token prompt.
 * Prints a markdown table and one JSON line per row.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/models/load-model.js';
import { DenoiseRun } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { resolveAccel } from '../src/engine/accel.js';
import { encodePrompt, loadPipeline, type SpecialIds } from '../src/engine/pipeline.js';
import type { DiffusionModel } from '../src/models/types.js';
import type { AccelOptions } from '../src/engine/accel/types.js';
import type { GenerationDefaults, ModelConfig } from '../src/load/config.js';
import { bundledModelPath } from '../src/load/hub.js';
import { upstreamModelDir } from './upstream-path.js';
import { syntheticLladaReady, writeSyntheticLlada } from './synthetic-llada.js';

const { values } = parseArgs({
  options: {
    gens: { type: 'string', default: '32,64,128,256' },
    block: { type: 'string', default: '32' },
    prompt: { type: 'string', default: '32' },
    reps: { type: 'string', default: '5' },
    models: { type: 'string', default: 'bundled,small' },
    tau: { type: 'string' },
  },
});
const gens = values.gens!.split(',').map(Number);
const block = Number(values.block);
const reps = Number(values.reps);

/** The small random-weight LLaDA-architecture model (see the top). */
function smallModelDir(): string {
  const dir = '/tmp/dyllm-small-llada-d256-l6';
  if (syntheticLladaReady(dir)) return dir;
  const up = upstreamModelDir('llada-8b-instruct');
  const cfg = {
    ...JSON.parse(readFileSync(join(up, 'config.json'), 'utf8')),
    d_model: 256, n_heads: 8, n_kv_heads: 8, mlp_hidden_size: 768, embedding_size: 640, vocab_size: 640,
    eos_token_id: 638, pad_token_id: 638, mask_token_id: 639, max_sequence_length: 1024,
  };
  const genCfg = JSON.stringify({ bos_token_id: 1, eos_token_id: 638, pad_token_id: 638 });
  return writeSyntheticLlada(dir, cfg, genCfg, 6);
}

interface Subject { name: string; model: DiffusionModel; ids: SpecialIds; prompt: number[]; config: ModelConfig; generation?: GenerationDefaults }

async function subject(name: string): Promise<Subject> {
  if (name === 'bundled') {
    const p = await loadPipeline(bundledModelPath);
    const q = JSON.parse(readFileSync('data/arith-test.jsonl', 'utf8').split('\n')[0]) as { question: string };
    return { name, model: p.model, ids: p.ids, prompt: encodePrompt(p, q.question, true), config: p.config, generation: p.generation };
  }
  const { model, config, generation } = loadModel(smallModelDir());
  const ids: SpecialIds = { mask: config.maskTokenId, eos: config.eosTokenId, eot: null, bos: config.bosTokenId, pad: config.padTokenId };
  let s = 7;
  const prompt = Array.from({ length: Number(values.prompt) }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 600));
  return { name: 'small (d256 L6 H8 V640)', model, ids, prompt, config, generation };
}

function timeRun(sub: Subject, G: number, accel: AccelOptions | undefined): { ms: number; tokens: Int32Array } {
  const options = resolveOptions(sub.config, { genLength: G, steps: G, blockLength: Math.min(block, G) }, sub.generation);
  const t0 = performance.now();
  const run = new DenoiseRun(sub.model, sub.ids, { prompts: [sub.prompt], options, accel });
  for (;;) {
    const batch = run.prepare();
    if (!batch) break;
    run.finish(run.forwardOwn(batch), 0);
  }
  const ms = performance.now() - t0;
  return { ms, tokens: run.result().tokens[0] };
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const rows: string[] = [];
for (const name of values.models!.split(',')) {
  const sub = await subject(name);
  const dyllm = resolveAccel(sub.config, { method: 'dyllm', ...(values.tau ? { threshold: Number(values.tau) } : {}) });
  for (const G of gens) {
    timeRun(sub, G, undefined);
    timeRun(sub, G, dyllm);
    const dense: number[] = [];
    const dy: number[] = [];
    const ratio: number[] = [];
    let same = true;
    for (let r = 0; r < reps; r++) {
      // Alternate the order so drift on a shared machine hits both.
      const a = r % 2 === 0 ? timeRun(sub, G, undefined) : null;
      const b = timeRun(sub, G, dyllm);
      const c = a ?? timeRun(sub, G, undefined);
      dense.push(c.ms);
      dy.push(b.ms);
      ratio.push(b.ms / c.ms);
      same &&= b.tokens.every((t, i) => t === c.tokens[i]);
    }
    const row = { model: sub.name, tau: dyllm.threshold, gen: G, block: Math.min(block, G), prompt: sub.prompt.length, denseMs: median(dense), dyllmMs: median(dy), ratio: median(ratio), identical: same };
    console.error(JSON.stringify(row));
    rows.push(`| ${row.model} | ${row.tau} | ${G} | ${row.prompt} | ${row.denseMs.toFixed(0)} | ${row.dyllmMs.toFixed(0)} | **${row.ratio.toFixed(2)}** | ${same ? 'yes' : 'no'} |`);
  }
}
console.log(`\n${cpus().length} CPUs (${cpus()[0].model}), ${new Date().toISOString().slice(0, 10)}, block ${block}, steps = gen, ${reps} alternated pairs, medians\n`);
console.log('| model | τ | gen | prompt | dense ms | DyLLM ms | DyLLM ÷ dense | identical |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
