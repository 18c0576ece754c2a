/**
 * The `dyllm` command: argv -> options -> engine -> terminal. Subcommands only consume the engine's step
 * iterator. Exit codes: 0 ok, 1 the model or input could not be used, 2 wrong flags or values. Errors are one
 * line on stderr (set DYLLM_DEBUG=1 for the stack).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../load/errors.js';
import { cmdPull } from './pull.js';
import { loadConfig } from '../load/config.js';
import { cliMessage, didYouMean } from '../engine/schema.js';
import { loadNativeAddon } from '../kernels/native.js';
import type { KernelBackend } from '../kernels/backend.js';
import type { BackendName } from '../kernels/select.js';
import { gpuAccelRefusal } from '../models/gpu-model.js';
import { loadGpuPipeline } from '../engine/gpu-pipeline.js';
import { resolveOptions } from '../engine/options.js';
import { decodeAnswer, encodePrompt, loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { generate, type GenerateResult, type GenerateStats, type StepEvent } from '../engine/generate.js';
import { ACCEL_HELP, BACKEND_HELP, GENERATION_HELP, MAX_THREADS, UsageError, applyThreadsFlag, backendName, generateBackend, modelDir, accelFlagConfig, accelOptions, generationFlagConfig, generationOptions, parse, parseIdList, LOAD_FLAGS, LOAD_HELP, quantOption, applyPackCacheFlag, refuseQuantOnGpu } from './args.js';
import { resolveAccel, type AccelOptions } from '../engine/accel.js';
import { encodeInfill, fillTemplate, infillOptions, parseInfill, refuseInfillGenLength, type InfillCanvas } from '../engine/infill.js';
import { accelMethod } from '../engine/accel/registry.js';
import { LiveView, LoadBar } from './live-view.js';
import { cmdInfo } from './info.js';
import { answerJson } from './answer.js';
import { cmdServe } from './serve.js';
import { cmdEval } from './eval.js';
import { cmdBench } from './bench.js';
import { QUEUE_FLAGS, QUEUE_HELP, refuseQueueFlagsWithoutQueue } from '../queue/flags.js';


const COMMANDS = ['generate', 'serve', 'eval', 'bench', 'worker', 'info', 'pull', 'quantize', 'pack'] as const;
/** Commands that run the kernels (and so take --threads). */
const COMPUTE_COMMANDS = new Set(['generate', 'serve', 'eval', 'bench', 'worker', 'pack']);

const USAGE = `Usage: dyllm <command> [options]

Commands:
  generate [PROMPT]   denoise an answer to PROMPT (or --prompt / --prompt-ids)
  serve               OpenAI-compatible HTTP server + live web view (see docs/server.md)
  eval --tasks FILE   accuracy and throughput on GSM8K-format JSONL
  bench --tasks FILE  the paper's method matrix (dense, DyLLM, Fast-dLLM, dLLM-Cache) -> table + SVG
  worker --queue URL  take eval, bench and generate jobs from a Redis queue (their --queue URL)
  info MODEL          a model's architecture, size, tokenizer, special tokens, defaults and backend
  pull ORG/NAME[@REV] download a model into the Hugging Face cache (HF_ENDPOINT, HF_TOKEN honoured)
  quantize IN OUT     write a copy of a model folder with int8 or 4-bit linear layers (--quant int8|q4)
  pack MODEL          write the packed-weight cache file that --pack-cache maps (docs/loading.md)

Options:
  -v, --version       print dyllm's version
  --threads N         kernel threads for generate, serve, eval and bench (1-${MAX_THREADS}; default: env
                      DYLLM_THREADS, else every CPU)

Run "dyllm <command> --help" for its options.`;

const GENERATE_HELP = `Usage: dyllm generate [PROMPT] [options]

  --model M          a model folder, a Hugging Face id org/name[@rev] in the HF cache (see dyllm pull), or
                     a bundled model's name (default: dyllm-demo)
  --prompt TEXT      the prompt (or give it as the positional argument)
  --prompt-ids IDS   raw comma-separated token ids (no template), for parity work
  --infill TEMPLATE  fill the holes of TEMPLATE, fixed text with <mask:N> holes (N masks each, 1024 in all),
                     e.g. "The capital of France is <mask:4>."; raw text (no chat template); the gen length is
                     the template's, steps default to its number of masks
  --chat             wrap the prompt in the model's chat template (the default when the model has one)
  --raw              send the prompt text as is, without the chat template
  --backend B        ${BACKEND_HELP}
  --threads N        kernel threads (default: env DYLLM_THREADS, else every CPU)
  --json             print exactly one JSON object on stdout
  --quiet            print only the answer (no live view, no statistics)
  --verbose          also print load timings, the backend and its threads, and the options resolved
${LOAD_HELP}
Batch generation over a Redis job queue (answered by "dyllm worker --queue URL" processes):
  --input FILE       JSONL prompts, one {"prompt": "…"} or {"messages": […]} per line (needs --queue)
  --output FILE      JSONL answers in input order: {"index", "text", "tokens", "stats"} or {"index", "error"}
${QUEUE_HELP}
${GENERATION_HELP}
${ACCEL_HELP}`;



async function cmdGenerate(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' },
    prompt: { type: 'string' },
    'prompt-ids': { type: 'string' },
    infill: { type: 'string' },
    chat: { type: 'boolean' },
    raw: { type: 'boolean' },
    backend: { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    verbose: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    input: { type: 'string' },
    output: { type: 'string' },
    ...QUEUE_FLAGS,
    ...LOAD_FLAGS,
    ...generationFlagConfig,
    ...accelFlagConfig,
  }, true);
  if (values.help) {
    process.stdout.write(GENERATE_HELP + '\n');
    return;
  }
  applyPackCacheFlag(values);
  if (values.queue !== undefined || values.input !== undefined || values.output !== undefined) {
    if (values.infill !== undefined) throw new UsageError('--infill: runs here, not on a queue; drop --queue, --input and --output');
    await generateQueued(values, positionals);
    return;
  }
  refuseQueueFlagsWithoutQueue(values);
  if (positionals.length > 1) throw new UsageError(`expected at most one positional prompt, found ${positionals.length} (quote the prompt)`);
  const given = [positionals.length > 0, values.prompt !== undefined, values['prompt-ids'] !== undefined, values.infill !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UsageError('expected exactly one of: a positional PROMPT, --prompt TEXT, --prompt-ids IDS, --infill TEMPLATE');
  if (values.infill !== undefined && values.chat) throw new UsageError('--infill: a template is raw text (no chat template); drop --chat');
  if (values['prompt-ids'] !== undefined && values.chat) throw new UsageError('--prompt-ids are raw ids: they cannot be combined with --chat');
  if (values.chat && values.raw) throw new UsageError('--chat and --raw contradict each other: give one');
  if (values.quiet && values.verbose) throw new UsageError('--quiet and --verbose contradict each other: give one');
  const quiet = values.quiet === true;
  const verbose = values.verbose === true;
  const say = (line: string): void => {
    if (verbose) process.stderr.write(`dyllm: ${line}\n`);
  };
  const optInput = generationOptions(values);
  const accelInput = accelOptions(values);
  const choice = generateBackend(values.backend);
  const quant = quantOption(values.quant);
  const dir = modelDir(values.model);
  const webgpu = typeof choice === 'object' ? choice.webgpu : null;
  if (webgpu !== null) refuseQuantOnGpu(quant);

  // Options are checked against config.json before the weights are read: a wrong value is refused at once.
  const t0 = performance.now();
  const { config, generation } = loadConfig(dir);
  // An infill's template is checked here; its gen length and default steps follow from the tokenised template, so
  // its options are resolved once the tokenizer is loaded.
  const parts = values.infill !== undefined ? parseInfill(values.infill, '--infill') : null;
  if (parts) refuseInfillGenLength(optInput);
  const early = parts ? null : resolveOptions(config, optInput, generation);
  const earlyAccel = early ? resolveAccel(config, accelInput, early) : null;
  const gpuRefusal = webgpu !== null && earlyAccel ? gpuAccelRefusal(earlyAccel, accelMethod(earlyAccel.method).dense === true) : null;
  if (gpuRefusal) throw new UsageError(gpuRefusal);
  const t1 = performance.now();
  const bar = quiet ? null : new LoadBar(process.stderr, { tty: process.stderr.isTTY === true, verbose });
  // WebGPU: the weights stay host handles while loading, then go to the device (engine/gpu-pipeline.ts).
  const p: Pipeline = webgpu !== null
    ? (await loadGpuPipeline(dir, { onProgress: bar?.update })).pipeline
    : await loadPipeline(dir, { backend: choice as BackendName, quant, onProgress: bar?.update });
  bar?.finish();
  if (webgpu !== null && !quiet) process.stderr.write(`dyllm: --backend webgpu: running on ${webgpu}\n`);
  const threads = threadsOf(p.model.backend);
  say(`loaded ${dir} (${config.arch}): config ${ms(t1 - t0)}, model, tokenizer and template ${ms(performance.now() - t1)}`);
  say(`backend ${p.model.backend.name}, ${threads} thread${threads === 1 ? '' : 's'}`);
  const infill: InfillCanvas | null = parts ? encodeInfill(p, parts, '--infill') : null;
  const options = early ?? resolveOptions(config, infillOptions(optInput, infill!), generation);
  const accel = earlyAccel ?? resolveAccel(config, accelInput, options);
  const lateRefusal = webgpu !== null ? gpuAccelRefusal(accel, accelMethod(accel.method).dense === true) : null;
  if (lateRefusal) throw new UsageError(lateRefusal);
  if (infill) say(`infill: ${infill.holes.length} holes, ${infill.masks} masks in a region of ${infill.region.length} positions`);
  say(`options ${JSON.stringify(options)}`);
  say(`acceleration ${JSON.stringify(accel)}`);
  const prompt = infill
    ? infill.prompt
    : values['prompt-ids'] !== undefined
      ? parseIdList('prompt-ids', values['prompt-ids'] as string)
      : encodePrompt(p, (values.prompt as string | undefined) ?? positionals[0], values.chat === true || (!values.raw && p.chatTemplate !== null));
  say(`prompt: ${prompt.length} tokens`);

  const live = !values.json && !quiet && process.stderr.isTTY ? new LiveView(p, process.stderr, { threads }) : null;
  const it = generate(p.model, p.ids, { prompts: [prompt], options, accel, ...(infill ? { fixed: [infill.region] } : {}) });
  let result: GenerateResult | undefined;
  for (;;) {
    const r = await it.next();
    if (r.done) {
      result = r.value;
      break;
    }
    live?.step(r.value as StepEvent);
  }
  live?.finish();
  if (infill) {
    reportInfill(p, infill, result, accel, values.json === true, quiet, threads);
    return;
  }
  report(p, result, accel, values.json === true, quiet, threads);
}

/** An infill's answer: the filled template (and, with --json, each hole's text besides the usual fields). */
function reportInfill(p: Pipeline, c: InfillCanvas, result: GenerateResult, accel: AccelOptions, json: boolean, quiet: boolean, threads: number): void {
  const filled = fillTemplate(c, result.tokens[0], (ids) => p.tokenizer.decode(ids, { skipSpecialTokens: true }));
  if (json) {
    process.stdout.write(JSON.stringify({ ...answerJson(p, result.tokens[0], result.stats, accel, threads), text: filled.text, fills: filled.fills }) + '\n');
    return;
  }
  process.stdout.write(filled.text + '\n');
  if (!quiet) process.stderr.write(statsLine(p, result.stats, accel, threads));
}


/** generate --queue --input FILE --output FILE: the prompts of a file as jobs for queue workers (src/queue). */
async function generateQueued(values: Record<string, unknown>, positionals: string[]): Promise<void> {
  if (values.queue === undefined) throw new UsageError('--input/--output: batch generation runs on queue workers; give --queue URL (and start dyllm worker --queue URL)');
  if (typeof values.input !== 'string' || typeof values.output !== 'string') throw new UsageError('--queue: generate needs --input PROMPTS.jsonl and --output ANSWERS.jsonl');
  if (positionals.length > 0 || values.prompt !== undefined || values['prompt-ids'] !== undefined) throw new UsageError('--input: the prompts come from the file; drop the positional prompt, --prompt and --prompt-ids');
  if (values.json) throw new UsageError('--json: the queued answers go to --output as JSONL; drop --json');
  if (values.chat && values.raw) throw new UsageError('--chat and --raw contradict each other: give one');
  const { queuedGenerate } = await import('../queue/generate.js');
  await queuedGenerate({
    values, dir: modelDir(values.model), input: values.input, output: values.output,
    chat: values.chat ? 'chat' : values.raw ? 'raw' : 'auto', gen: generationOptions(values), accel: accelOptions(values),
  });
}


function ms(x: number): string {
  return `${Math.round(x)} ms`;
}

/** Kernel threads a backend runs: the native addon's pool (--threads / DYLLM_THREADS), 1 for the reference. */
function threadsOf(b: KernelBackend): number {
  return b.name.startsWith('native') ? loadNativeAddon().threads() : 1;
}

/** dyllm's version, from its package.json. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function report(p: Pipeline, result: GenerateResult, accel: AccelOptions, json: boolean, quiet: boolean, threads: number): void {
  const tokens = result.tokens[0];
  const s = result.stats;
  if (json) {
    process.stdout.write(JSON.stringify(answerJson(p, tokens, s, accel, threads)) + '\n');
    return;
  }
  const text = decodeAnswer(p, tokens);
  process.stdout.write(text + '\n');
  if (quiet) return;
  process.stderr.write(statsLine(p, s, accel, threads));
}

function statsLine(p: Pipeline, s: GenerateStats, accel: AccelOptions, threads: number): string {
  const method = accelMethod(accel.method);
  const sal = method.dense ? '' : `, salient fraction ${s.salientFraction.toFixed(3)} (${method.label(accel)})`;
  return (`${s.generatedTokens} tokens in ${(s.elapsedMs / 1000).toFixed(2)} s: ${s.tokensPerS.toFixed(1)} tokens/s, ${s.steps} steps, ${s.nfe} NFE${sal} (${p.model.backend.name}, ${threads} thread${threads === 1 ? '' : 's'})\n`);
}

export async function main(argv: string[]): Promise<number> {
  // `dyllm --threads N generate …` reads as `dyllm generate --threads N …`.
  if (argv[0] === '--threads' && argv.length >= 3) argv = [argv[2], argv[0], argv[1], ...argv.slice(3)];
  else if (argv[0]?.startsWith('--threads=') && argv.length >= 2) argv = [argv[1], argv[0], ...argv.slice(2)];
  const [cmd, ...args] = argv;
  try {
    // Before any command can load the native addon, which reads DYLLM_THREADS once.
    const rest = COMPUTE_COMMANDS.has(cmd) ? applyThreadsFlag(args) : args;
    switch (cmd) {
      case 'generate':
        await cmdGenerate(rest);
        return 0;
      case 'serve':
        await cmdServe(rest);
        return 0;
      case 'eval':
        await cmdEval(rest);
        return 0;
      case 'bench':
        await cmdBench(rest);
        return 0;
      case 'pull':
        await cmdPull(rest);
        return 0;
      case 'quantize':
        await (await import('./quantize.js')).cmdQuantize(rest);
        return 0;
      case 'pack':
        await (await import('./pack.js')).cmdPack(rest);
        return 0;
      case 'worker':
        // Imported here: commands without a queue never load the Redis client.
        await (await import('../queue/worker.js')).cmdWorker(rest);
        return 0;
      case 'info':
        await cmdInfo(rest);
        return 0;
      case '-v':
      case '--version':
        process.stdout.write(`dyllm ${version()}\n`);
        return 0;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}" (expected: ${COMMANDS.join(', ')})${didYouMean(cmd, [...COMMANDS, '--version', '--help'])}`);
    }
  } catch (e) {
    if (process.env.DYLLM_DEBUG) console.error(e);
    const msg = (e as Error).message;
    if (e instanceof UsageError) {
      process.stderr.write(`dyllm: ${msg}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      // Named as the flag the user typed (the option schema maps every option to its flag).
      process.stderr.write(`dyllm: ${cliMessage(e)}\n`);
      return 2;
    }
    process.stderr.write(`dyllm: error: ${msg}\n`);
    return 1;
  }
}
