/**
 * One dyllm generation in its own process, for `npm run bench:peers` (bench/peers.ts), which times the whole
 * process from outside (wall clock, peak RSS) the same way as llama-diffusion-cli's:
 *
 *   node dist/bench/peers-ours.js --model DIR --prompt-ids 1,2,3 --gen 64 --steps 64 --block 32 [--accel dyllm]
 *                                 [--quant int8|q4] [--pack-cache]
 *
 * Prints one JSON line: {tokens, load_ms, loop_ms, steps, nfe, salient_fraction, backend}. Unlike `dyllm generate`
 * it needs no tokenizer (the synthetic LLaDA-8B-shaped checkpoint of bench/step.ts has none): the prompt is ids.
 * Greedy, low-confidence remasking, no early stop: LLaDA generate.py's defaults.
 */
import { parseArgs } from 'node:util';
import { loadModel } from '../src/models/load-model.js';
import { generateAll } from '../src/engine/generate.js';
import { resolveOptions } from '../src/engine/options.js';
import { resolveAccel } from '../src/engine/accel.js';
import type { SpecialIds } from '../src/engine/pipeline.js';

function fail(msg: string): never {
  process.stderr.write(`peers-ours: ${msg}\n`);
  process.exit(1);
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'prompt-ids': { type: 'string' },
    gen: { type: 'string' },
    steps: { type: 'string' },
    block: { type: 'string' },
    accel: { type: 'string', default: 'none' },
    quant: { type: 'string', default: 'none' },
    'pack-cache': { type: 'boolean', default: false },
  },
});
const int = (name: 'gen' | 'steps' | 'block', max: number): number => {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < 1 || v > max) fail(`--${name}: expected an integer in 1..${max}, found "${values[name] ?? ''}"`);
  return v;
};
if (!values.model) fail('--model DIR is required');
const gen = int('gen', 4096);
const steps = int('steps', 4096);
const block = int('block', 4096);
const prompt = (values['prompt-ids'] ?? '').split(',').map(Number);
if (prompt.length === 0 || prompt.length > 8192 || prompt.some((t) => !Number.isInteger(t) || t < 0)) {
  fail(`--prompt-ids: expected 1..8192 comma-separated non-negative integers, found "${(values['prompt-ids'] ?? '').slice(0, 40)}"`);
}
if (values.accel !== 'none' && values.accel !== 'dyllm') fail(`--accel: expected none or dyllm, found "${values.accel}"`);
const quant = values.quant as 'none' | 'int8' | 'q4';
if (!['none', 'int8', 'q4'].includes(quant)) fail(`--quant: expected none, int8 or q4, found "${values.quant}"`);

try {
  const t0 = performance.now();
  const { model, config, generation, packCache } = loadModel(values.model, { quant, packCache: values['pack-cache'] });
  const loadMs = performance.now() - t0;
  const ids: SpecialIds = { mask: config.maskTokenId, eos: config.eosTokenId, eot: null, bos: config.bosTokenId, pad: config.padTokenId };
  if (prompt.some((t) => t >= config.vocabSize)) fail(`--prompt-ids: ids must be below the model's ${config.vocabSize} embedding rows`);
  const options = resolveOptions(config.arch, { genLength: gen, steps, blockLength: block }, generation);
  const accel = resolveAccel(config.arch, { method: values.accel as 'none' | 'dyllm' });
  const result = await generateAll(model, ids, { prompts: [prompt], options, accel });
  const s = result.stats;
  process.stdout.write(JSON.stringify({
    tokens: Array.from(result.tokens[0]),
    load_ms: loadMs,
    loop_ms: s.elapsedMs,
    steps: s.steps,
    nfe: s.nfe,
    salient_fraction: s.salientFraction,
    backend: model.backend.name,
    quant,
    pack_cache: packCache ? { mapped: packCache.mapped, packed: packCache.packed, written: packCache.written } : null,
  }) + '\n');
} catch (e) {
  fail((e as Error).message);
}
