/**
 * `dyllm generate --queue URL --input prompts.jsonl --output answers.jsonl`: one job per prompt on the model's
 * queue, answered by the same workers as queued evals; the output has one line per prompt in input order,
 * written whole once every job has finished (a temporary file renamed into place: never half an output).
 *
 * Input lines: {"prompt": "text"} or {"messages": [{"role", "content"}, …]}; blank lines are skipped and do not
 * count as prompts. Output lines: {"index", "text", "tokens", "stats"} (stats as `dyllm generate --json`), or
 * {"index", "error"} for a prompt whose job failed for good.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LoadError } from '../load/errors.js';
import { loadConfig } from '../load/config.js';
import { UsageError } from '../cli/args.js';
import { resolveOptions, type GenerateOptionsInput } from '../engine/options.js';
import { resolveAccel, type AccelOptionsInput } from '../engine/accel.js';
import { loadChatTemplate, type ChatMessage } from '../load/chat-template.js';
import { runOnQueue, type QueuedJob } from './coordinator.js';
import { modelHash } from './model-hash.js';
import { LIMITS, type ChatMode, type GenerateJob, type GenerateSpec } from './protocol.js';
import { inputsHash, queueSettings } from './settings.js';

export type Prompt = string | readonly ChatMessage[];

/** Read a prompts file: every size bounded before it is read, a bad line named by file and line. */
export function readPrompts(file: string): Prompt[] {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size > LIMITS.maxInputBytes) throw new LoadError(file, `an input file of at most ${LIMITS.maxInputBytes} bytes`, `${size} bytes`, 'split it into several runs');
    } finally {
      closeSync(fd);
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof LoadError) throw e;
    throw new LoadError(file, 'a readable JSONL prompts file', (e as NodeJS.ErrnoException).code ?? 'an unreadable file');
  }
  const lines = text.split('\n');
  const out: Prompt[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    const where = `${file}:${i + 1}`;
    if (out.length >= LIMITS.maxInputLines) throw new LoadError(file, `at most ${LIMITS.maxInputLines} prompts`, 'more', 'split it into several runs');
    const bytes = Buffer.byteLength(line);
    if (bytes > LIMITS.maxLineBytes) throw new LoadError(where, `a line of at most ${LIMITS.maxLineBytes} bytes`, `${bytes} bytes`);
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new LoadError(where, 'a JSON object {"prompt": "…"} or {"messages": […]}', 'text that is not JSON');
    }
    const r = o as Record<string, unknown>;
    const keys = typeof o === 'object' && o !== null && !Array.isArray(o) ? Object.keys(r) : [];
    if (keys.length === 1 && typeof r.prompt === 'string') {
      out.push(r.prompt);
    } else if (keys.length === 1 && Array.isArray(r.messages) && r.messages.length > 0 &&
      r.messages.every((m) => typeof m === 'object' && m !== null && typeof (m as ChatMessage).role === 'string' && typeof (m as ChatMessage).content === 'string' && Object.keys(m).length === 2)) {
      out.push((r.messages as ChatMessage[]).map((m) => ({ role: m.role, content: m.content })));
    } else {
      throw new LoadError(where, 'an object with exactly one of "prompt" (a string) or "messages" (a non-empty list of {"role", "content"} strings)', JSON.stringify(o).slice(0, 60));
    }
  }
  if (out.length === 0) throw new LoadError(file, 'at least one prompt line', 'none');
  return out;
}

export interface QueuedGenerateRequest {
  readonly values: Record<string, unknown>;
  readonly dir: string;
  readonly input: string;
  readonly output: string;
  readonly chat: ChatMode;
  readonly gen: GenerateOptionsInput;
  readonly accel: AccelOptionsInput;
}

export async function queuedGenerate(r: QueuedGenerateRequest): Promise<void> {
  const q = queueSettings(r.values);
  // Options are checked against config.json before anything is queued, as a local generate does.
  const { config, generation } = loadConfig(r.dir);
  const options = resolveOptions(config, r.gen, generation);
  resolveAccel(config, r.accel, options);
  if (resolve(r.output) === resolve(r.input)) throw new UsageError('--output: expected a file other than --input');
  const outDir = dirname(resolve(r.output));
  if (!existsSync(outDir) || !statSync(outDir).isDirectory()) throw new LoadError(r.output, 'a path in an existing folder', `no folder ${outDir}`, 'create the folder first');
  const prompts = readPrompts(r.input);
  if ((r.chat === 'chat' || prompts.some((p) => typeof p !== 'string')) && (await loadChatTemplate(r.dir)) === null) {
    throw new LoadError(r.dir, 'a chat_template in tokenizer_config.json (for --chat or "messages" lines)', 'none', 'give "prompt" lines without --chat');
  }
  if (r.chat === 'raw' && prompts.some((p) => typeof p !== 'string')) {
    throw new UsageError(`--raw: ${r.input} has "messages" lines, which need the chat template; drop --raw or give "prompt" lines`);
  }
  const model = modelHash(r.dir);
  const digest = inputsHash({ command: 'generate', model, prompts, chat: r.chat, gen: r.gen, accel: r.accel });
  const run = q.runId ?? `generate-${digest.slice(0, 12)}`;
  const spec: GenerateSpec = {
    kind: 'generate', version: 1, run, inputs: digest, model, modelName: r.dir, total: prompts.length, created: new Date().toISOString(),
    chat: r.chat, gen: r.gen, accel: r.accel,
  };
  const jobs: QueuedJob[] = prompts.map((prompt, index) => {
    const data: GenerateJob = { kind: 'generate', run, model, index, prompt };
    return { id: `${run}.${index}`, data };
  });
  const out = await runOnQueue({ target: q.target, spec, jobs, resume: q.resume, attempts: q.attempts, backoffMs: q.backoffMs, label: 'generate', what: `${jobs.length} prompts` });
  let failed = 0;
  const lines = jobs.map((j, index) => {
    const rec = out.results.get(j.id)!;
    if (!rec.ok || rec.kind !== 'generate') {
      failed++;
      return JSON.stringify({ index, error: rec.ok ? 'not a generate result' : rec.error });
    }
    return JSON.stringify({ index, text: rec.text, tokens: rec.tokens, stats: rec.stats });
  });
  const tmp = `${r.output}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, lines.join('\n') + '\n');
    renameSync(tmp, r.output);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new LoadError(r.output, 'a writable output path', (e as NodeJS.ErrnoException).code ?? (e as Error).message);
  }
  process.stderr.write(`dyllm: wrote ${jobs.length - failed} answers${failed ? ` and ${failed} errors` : ''} to ${r.output} (${out.workers} worker${out.workers === 1 ? '' : 's'})\n`);
}
