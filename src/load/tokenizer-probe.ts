/**
 * A tokenizer.json is data, but its `Regex` patterns (Split / Replace pre-tokenizers and normalizers) run as
 * JavaScript RegExps, which backtrack: a pattern such as `(a+)+$` takes exponential time on a run of letters that
 * does not end the way it wants, and would make every encode of such text hang. So at load, where a tokenizer.json
 * brings patterns of its own, its normalizer and pre-tokenizer (those patterns, as the library compiles them) encode
 * probe texts in a helper thread: long runs of letters, digits, spaces, newlines, punctuation and non-ASCII letters,
 * each ended by a character no tokenizer expects. Real patterns encode them all in milliseconds; one that does not
 * finish within the time limit is refused with a LoadError naming the file, its patterns and the fix, and the helper
 * is terminated. (The browser build swaps this module for src/web/shims/tokenizer-probe.ts, which probes nothing.)
 *
 * It runs before the loader builds the tokenizer itself, since building runs the added tokens through the normalizer.
 * Limit: 5 s (`DYLLM_TOKENIZER_TIMEOUT_MS`, 1 to 60000), counted from when the helper thread has started.
 * Cost: 0.3-0.6 s per load on a busy 2-core machine (Qwen2's split pattern; the helper's start included), only for
 * files with patterns of their own.
 */
import { Worker } from 'node:worker_threads';
import { LoadError } from './errors.js';

export const DEFAULT_TOKENIZER_TIMEOUT_MS = 5000;
export const MAX_TOKENIZER_TIMEOUT_MS = 60_000;
/** How long the helper thread may take to start (not counted against the patterns). */
const STARTUP_MS = 30_000;
/** Characters of each probe run: exponential patterns never finish on it, cubic ones take minutes. */
const RUN = 4096;

/** The probe texts: runs of common character classes, each ended by a character no pattern expects there. */
export function probeTexts(): string[] {
  const runs = ['a', 'A', 'é', '中', '0', ' ', '\n', '\t', '.', '_', "'", '-', 'a ', 'ab', 'a\n', '1 '];
  const out: string[] = [];
  for (const r of runs) {
    const body = r.repeat(Math.ceil(RUN / r.length));
    out.push(body + '\u0007', body + '!');
  }
  out.push('The quick brown fox jumps over the lazy dog. 12 + 7 = 19\n');
  return out;
}

/** The `Regex` patterns of a normalizer / pre-tokenizer config, in order (nested Sequences included). */
export function regexPatterns(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) {
    for (const x of node) regexPatterns(x, out);
  } else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      if (k === 'Regex' && typeof v === 'string') out.push(v);
      else regexPatterns(v, out);
    }
  }
  return out;
}

/** The time limit: `DYLLM_TOKENIZER_TIMEOUT_MS` when set (an integer in [1, 60000]), else 5 s. */
export function tokenizerTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.DYLLM_TOKENIZER_TIMEOUT_MS;
  if (v === undefined || v === '') return DEFAULT_TOKENIZER_TIMEOUT_MS;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1 || n > MAX_TOKENIZER_TIMEOUT_MS) {
    throw new LoadError('DYLLM_TOKENIZER_TIMEOUT_MS', `an integer number of milliseconds in [1, ${MAX_TOKENIZER_TIMEOUT_MS}]`, JSON.stringify(v));
  }
  return n;
}

/**
 * Refuses (LoadError on `file`) a tokenizer whose normalizer or pre-tokenizer does not encode the probe texts within
 * `timeoutMs`. Resolves at once when neither holds a `Regex` pattern (the library's own patterns are linear).
 */
export async function probeTokenizerPatterns(file: string, normalizer: unknown, preTokenizer: unknown, addedTokens: unknown[] = [], timeoutMs = tokenizerTimeoutMs()): Promise<void> {
  const patterns = [...regexPatterns(normalizer), ...regexPatterns(preTokenizer)];
  if (patterns.length === 0) return;
  const named = patterns.map((p) => JSON.stringify(p.length > 60 ? `${p.slice(0, 57)}...` : p)).join(', ');
  const outcome = await new Promise<{ ok: true } | { ok: false; why: string }>((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./tokenizer-probe-worker.js', import.meta.url), {
        workerData: { normalizer, preTokenizer, addedTokens, texts: probeTexts() },
        execArgv: [],
        resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
      });
    } catch (e) {
      resolve({ ok: false, why: `the probe thread could not start (${(e as Error).message.split('\n')[0]})` });
      return;
    }
    let timer = setTimeout(() => finish({ ok: false, why: `the probe thread did not start within ${STARTUP_MS / 1000} s` }), STARTUP_MS);
    let done = false;
    const finish = (r: { ok: true } | { ok: false; why: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void worker.terminate().catch(() => {});
      resolve(r);
    };
    worker.on('message', (m: { type: 'started' } | { type: 'done' } | { type: 'error'; message: string }) => {
      if (m.type === 'started') {
        clearTimeout(timer);
        timer = setTimeout(() => finish({ ok: false, why: `encoding the probe texts did not finish within ${timeoutMs} ms` }), timeoutMs);
      } else if (m.type === 'done') {
        finish({ ok: true });
      } else {
        finish({ ok: false, why: `encoding the probe texts failed (${m.message})` });
      }
    });
    worker.on('error', (e) => finish({ ok: false, why: `the probe thread failed (${(e as Error).message.split('\n')[0]})` }));
    worker.on('exit', () => finish({ ok: false, why: 'the probe thread exited before it finished' }));
  });
  if (!outcome.ok) {
    throw new LoadError(
      file,
      `normalizer and pre-tokenizer patterns that encode text in linear time (each ${RUN}-character probe run within ${timeoutMs} ms)`,
      `${outcome.why} with the Regex patterns ${named}`,
      'a pattern with nested quantifiers such as (a+)+ backtracks catastrophically: fix it, or raise DYLLM_TOKENIZER_TIMEOUT_MS on a slow machine',
    );
  }
}
