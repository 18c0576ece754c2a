/**
 * The `dyllm` command: argv -> options -> engine -> terminal. Subcommands only consume the engine's step
 * iterator. Exit codes: 0 ok, 1 the model or input could not be used, 2 wrong flags or values. Errors are one
 * line on stderr (set DYLLM_DEBUG=1 for the stack).
 */
import { ConfigError } from '../load/errors.js';
import { cmdPull } from './pull.js';
import { loadConfig } from '../load/config.js';
import { cliMessage } from '../engine/schema.js';
import { resolveOptions } from '../engine/options.js';
import { decodeAnswer, encodePrompt, loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { generate, type GenerateResult, type GenerateStats, type StepEvent } from '../engine/generate.js';
import { ACCEL_HELP, BACKEND_HELP, GENERATION_HELP, UsageError, backendName, modelDir, accelFlagConfig, accelOptions, generationFlagConfig, generationOptions, parse, parseIdList } from './args.js';
import { dyllmCacheBytesPerToken, resolveAccel, type AccelOptions } from '../engine/accel.js';
import { LiveView } from './live-view.js';
import { cmdServe } from './serve.js';
import { cmdBench, cmdEval } from './eval.js';
import { QUEUE_FLAGS, QUEUE_HELP, refuseQueueFlagsWithoutQueue } from '../queue/flags.js';


const USAGE = `Usage: dyllm <command> [options]

Commands:
  generate [PROMPT]   denoise an answer to PROMPT (or --prompt / --prompt-ids)
  serve               OpenAI-compatible HTTP server + live web view (see docs/server.md)
  eval --tasks FILE   accuracy and throughput on GSM8K-format JSONL
  bench --tasks FILE  the paper's method matrix (dense, DyLLM, Fast-dLLM, dLLM-Cache) -> table + SVG
  worker --queue URL  take eval, bench and generate jobs from a Redis queue (their --queue URL)
  pull ORG/NAME[@REV] download a model into the Hugging Face cache (HF_ENDPOINT, HF_TOKEN honoured)

Run "dyllm <command> --help" for its options.`;

const GENERATE_HELP = `Usage: dyllm generate [PROMPT] [options]

  --model M          a model folder, a Hugging Face id org/name[@rev] in the HF cache (see dyllm pull), or
                     a bundled model's name (default: dyllm-demo)
  --prompt TEXT      the prompt (or give it as the positional argument)
  --prompt-ids IDS   raw comma-separated token ids (no template), for parity work
  --chat             wrap the prompt in the model's chat template (the default when the model has one)
  --raw              send the prompt text as is, without the chat template
  --backend B        ${BACKEND_HELP}
  --json             print exactly one JSON object on stdout
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
    chat: { type: 'boolean' },
    raw: { type: 'boolean' },
    backend: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    input: { type: 'string' },
    output: { type: 'string' },
    ...QUEUE_FLAGS,
    ...generationFlagConfig,
    ...accelFlagConfig,
  }, true);
  if (values.help) {
    process.stdout.write(GENERATE_HELP + '\n');
    return;
  }
  if (values.queue !== undefined || values.input !== undefined || values.output !== undefined) {
    await generateQueued(values, positionals);
    return;
  }
  refuseQueueFlagsWithoutQueue(values);
  if (positionals.length > 1) throw new UsageError(`expected at most one positional prompt, found ${positionals.length} (quote the prompt)`);
  const given = [positionals.length > 0, values.prompt !== undefined, values['prompt-ids'] !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UsageError('expected exactly one of: a positional PROMPT, --prompt TEXT, --prompt-ids IDS');
  if (values['prompt-ids'] !== undefined && values.chat) throw new UsageError('--prompt-ids are raw ids: they cannot be combined with --chat');
  if (values.chat && values.raw) throw new UsageError('--chat and --raw contradict each other: give one');
  const optInput = generationOptions(values);
  const accelInput = accelOptions(values);
  const backend = backendName(values.backend);
  const dir = modelDir(values.model);

  // Options are checked against config.json before the weights are read: a wrong value is refused at once.
  const { config, generation } = loadConfig(dir);
  const options = resolveOptions(config, optInput, generation);
  const accel = resolveAccel(config, accelInput, options);
  const p = await loadPipeline(dir, { backend });
  const prompt = values['prompt-ids'] !== undefined
    ? parseIdList('prompt-ids', values['prompt-ids'] as string)
    : encodePrompt(p, (values.prompt as string | undefined) ?? positionals[0], values.chat === true || (!values.raw && p.chatTemplate !== null));

  const live = !values.json && process.stderr.isTTY ? new LiveView(p, process.stderr) : null;
  const it = generate(p.model, p.ids, { prompts: [prompt], options, accel });
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
  report(p, result, accel, values.json === true);
}

/**
 * `dyllm generate --json`'s object for one generated sequence: the answer text, the generated tokens and the
 * run's statistics (also each line of a queued batch's output, src/queue).
 */
export function answerJson(p: Pipeline, tokens: ArrayLike<number>, s: GenerateStats, accel: AccelOptions): { text: string; tokens: number[]; stats: Record<string, unknown> } {
  return {
    text: decodeAnswer(p, tokens),
    tokens: Array.from(tokens),
    stats: {
      steps: s.steps,
      nfe: s.nfe,
      elapsed_ms: Math.round(s.elapsedMs * 1000) / 1000,
      tokens_per_s: Math.round(s.tokensPerS * 1000) / 1000,
      generated_tokens: s.generatedTokens,
      salient_fraction: s.salientFraction,
      kv_fraction: s.kvFraction,
      salient_rows_per_layer: s.salientRowsPerLayer,
      accel: accel.method,
      ...(accel.method === 'dyllm' ? { threshold: accel.threshold, cache_bytes_per_token: dyllmCacheBytesPerToken(p.config, accel) } : {}),
      backend: p.model.backend.name,
    },
  };
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

function report(p: Pipeline, result: GenerateResult, accel: AccelOptions, json: boolean): void {
  const tokens = result.tokens[0];
  const s = result.stats;
  if (json) {
    process.stdout.write(JSON.stringify(answerJson(p, tokens, s, accel)) + '\n');
    return;
  }
  const text = decodeAnswer(p, tokens);
  process.stdout.write(text + '\n');
  const sal = accel.method === 'none' ? '' : `, salient fraction ${s.salientFraction.toFixed(3)} (${accel.method}${accel.method === 'dyllm' ? `, τ ${accel.threshold}` : ''})`;
  process.stderr.write(`${s.generatedTokens} tokens in ${(s.elapsedMs / 1000).toFixed(2)} s: ${s.tokensPerS.toFixed(1)} tokens/s, ${s.steps} steps, ${s.nfe} NFE${sal} (${p.model.backend.name})\n`);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
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
      case 'worker':
        // Imported here: commands without a queue never load the Redis client.
        await (await import('../queue/worker.js')).cmdWorker(rest);
        return 0;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}" (expected: generate, serve, eval, bench, worker, pull)`);
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
