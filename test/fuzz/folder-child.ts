/**
 * Child process of the loader fuzz (folders.test.ts): reads one case folder path per stdin line, loads it the way
 * every surface does (loadPipeline), and when it loads, uses it the way a request does (options from its
 * generation_config.json, the chat template, a 4-position generation), then prints one JSON line per case:
 * {"i", "outcome": "loaded" | "load-error" | "other", "message", "ms"}. "other" is any failure that is not a one-line
 * LoadError at load (or a one-line LoadError / ConfigError refusing a request): a crash of the contract.
 */
import { createInterface } from 'node:readline';
import { encodePrompt, loadPipeline } from '../../src/engine/pipeline.js';
import { generateSteps } from '../../src/engine/generate.js';
import { resolveOptions } from '../../src/engine/options.js';
import { ConfigError, LoadError } from '../../src/load/errors.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';

const backend = new ReferenceBackend();

function oneLine(e: unknown): boolean {
  return e instanceof Error && !e.message.includes('\n') && e.message.length > 0;
}

/** Use a loaded folder as a request would; a request may be refused with a one-line LoadError or ConfigError. */
function use(p: Awaited<ReturnType<typeof loadPipeline>>): string | null {
  const refusals: string[] = [];
  const tryRequest = (f: () => void): void => {
    try {
      f();
    } catch (e) {
      if ((e instanceof LoadError || e instanceof ConfigError) && oneLine(e)) refusals.push(e.message);
      else throw e;
    }
  };
  tryRequest(() => {
    resolveOptions(p.config, {}, p.generation);
  });
  let prompt = p.tokenizer.encode('1+1=');
  if (p.chatTemplate) tryRequest(() => {
    prompt = encodePrompt(p, [{ role: 'user', content: '1+1=' }], true);
  });
  if (prompt.length === 0) prompt = [p.ids.eos];
  // A short generation: a folder that loads must also run (a model whose limits refuse even this may say so).
  tryRequest(() => {
    const options = resolveOptions(p.config, { genLength: 4, steps: 4 }, p.generation);
    const it = generateSteps(p.model, p.ids, { prompts: [prompt], options });
    let r = it.next();
    while (!r.done) r = it.next();
    for (const row of r.value.tokens) p.tokenizer.decode(Array.from(row), { skipSpecialTokens: true });
  });
  return refusals.length ? refusals.join(' | ') : null;
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const { i, dir } = JSON.parse(line) as { i: number; dir: string };
  const t0 = performance.now();
  let out: Record<string, unknown>;
  try {
    const p = await loadPipeline(dir, { backend });
    const refused = use(p);
    out = { i, outcome: 'loaded', message: refused };
  } catch (e) {
    if (e instanceof LoadError && oneLine(e)) out = { i, outcome: 'load-error', message: e.message };
    else out = { i, outcome: 'other', message: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e) };
  }
  out.ms = Math.round(performance.now() - t0);
  process.stdout.write(JSON.stringify(out) + '\n');
}
