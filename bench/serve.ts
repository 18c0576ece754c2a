/**
 * Server load benchmark (not a test): `npm run bench:serve` (= tsc -p . && node dist/bench/serve.js).
 *
 * Starts `dyllm serve` in-process on a loopback ephemeral port (the engine in its worker thread) and measures:
 *  1. load: N concurrent streaming clients, each sending chat requests back to back for D seconds: requests/s,
 *     completion tokens/s, p50/p99 request latency and time to first content delta, errors, RSS before/after;
 *  2. batching: the same N requests (N distinct prompts) served one at a time vs all at once (merged into one
 *     forward per step by the scheduler), wall time of each and the speed-up; the answers must be identical.
 * Flags: --clients N (8), --duration S (15), --max-tokens G (48), --model DIR (bundled), --backend B, --accel.
 * Prints a human summary and one JSON line.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startServer } from '../src/server/app.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '8' },
    duration: { type: 'string', default: '15' },
    'max-tokens': { type: 'string', default: '48' },
    model: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    accel: { type: 'boolean', default: false },
  },
});
const N = Number(values.clients);
const D = Number(values.duration) * 1000;
const G = Number(values['max-tokens']);
const modelDir = values.model ?? fileURLToPath(new URL('../../models/dyllm-demo', import.meta.url));

const NAMES = ['Tom', 'Mia', 'Ben', 'Ann', 'Sam', 'Lia', 'Max', 'Zoe', 'Kai', 'Eva', 'Leo', 'Ivy', 'Noa', 'Ada', 'Eli', 'Uma'];
const prompt = (i: number): string => `${NAMES[i % NAMES.length]} has ${10 + (i % 17)} apples. ${NAMES[i % NAMES.length]} buys ${2 + (i % 9)} more. How many apples does ${NAMES[i % NAMES.length]} have now?`;

const mb = (x: number): number => Math.round(x / 2 ** 20);
const pct = (a: number[], p: number): number => {
  if (a.length === 0) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

interface One { ok: boolean; ms: number; firstMs: number; tokens: number; text: string }

async function streamOne(url: string, i: number): Promise<One> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: prompt(i) }], max_tokens: G, stream: true, stream_options: { include_usage: true }, ...(values.accel ? { dyllm: { accel: 'dyllm' } } : {}) }),
    });
    if (res.status !== 200) return { ok: false, ms: performance.now() - t0, firstMs: NaN, tokens: 0, text: '' };
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let text = '';
    let firstMs = NaN;
    let tokens = 0;
    let done = false;
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      buf += r.value;
      let k: number;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const data = buf.slice(6, k);
        buf = buf.slice(k + 2);
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const j = JSON.parse(data) as { error?: unknown; usage?: { completion_tokens: number }; choices: { delta: { content?: string } }[] };
        if (j.error) return { ok: false, ms: performance.now() - t0, firstMs, tokens: 0, text };
        if (j.usage) tokens = j.usage.completion_tokens;
        const c = j.choices[0]?.delta.content;
        if (c) {
          if (Number.isNaN(firstMs)) firstMs = performance.now() - t0;
          text += c;
        }
      }
    }
    return { ok: done, ms: performance.now() - t0, firstMs, tokens, text };
  } catch {
    return { ok: false, ms: performance.now() - t0, firstMs: NaN, tokens: 0, text: '' };
  }
}

const rss0 = process.memoryUsage().rss;
const server = await startServer({ modelDir, backend: values.backend as 'auto', port: 0, maxBatch: N, maxQueue: N, maxTokens: Math.max(G, 64) });
const rssLoaded = process.memoryUsage().rss;
console.log(`dyllm serve benchmark — ${server.model.arch} ${modelDir}, backend ${server.model.backend}, ${N} clients, max_tokens ${G}${values.accel ? ', DyLLM' : ''}, node ${process.version}`);

// Warm-up.
await streamOne(server.url, 0);

// 1. Load: N clients back to back for D ms.
const results: One[] = [];
const tLoad = performance.now();
await Promise.all(Array.from({ length: N }, async (_, c) => {
  for (let i = c; performance.now() - tLoad < D; i += N) results.push(await streamOne(server.url, i));
}));
const loadS = (performance.now() - tLoad) / 1000;
const ok = results.filter((r) => r.ok);
const load = {
  requests: results.length,
  errors: results.length - ok.length,
  seconds: +loadS.toFixed(2),
  requests_per_s: +(ok.length / loadS).toFixed(2),
  tokens_per_s: +(ok.reduce((n, r) => n + r.tokens, 0) / loadS).toFixed(1),
  p50_ms: +pct(ok.map((r) => r.ms), 50).toFixed(0),
  p99_ms: +pct(ok.map((r) => r.ms), 99).toFixed(0),
  first_delta_p50_ms: +pct(ok.map((r) => r.firstMs).filter((x) => !Number.isNaN(x)), 50).toFixed(0),
};
const rssAfterLoad = process.memoryUsage().rss;

// 2. The same N requests one at a time, then all at once.
const tSeq = performance.now();
const seq: One[] = [];
for (let i = 0; i < N; i++) seq.push(await streamOne(server.url, i));
const seqS = (performance.now() - tSeq) / 1000;
const tPar = performance.now();
const par = await Promise.all(Array.from({ length: N }, (_, i) => streamOne(server.url, i)));
const parS = (performance.now() - tPar) / 1000;
const identical = seq.every((r, i) => r.ok && par[i].ok && r.text === par[i].text);
const tokensN = seq.reduce((n, r) => n + r.tokens, 0);
const batching = {
  one_at_a_time_s: +seqS.toFixed(2),
  batched_s: +parS.toFixed(2),
  speedup: +(seqS / parS).toFixed(2),
  one_at_a_time_tokens_per_s: +(tokensN / seqS).toFixed(1),
  batched_tokens_per_s: +(tokensN / parS).toFixed(1),
  identical_answers: identical,
};
const mergedMean = server.metrics.ticks ? server.metrics.mergedRequests / server.metrics.ticks : 0;
const rssEnd = process.memoryUsage().rss;
await server.close();

console.log('');
console.log(`load (${N} streaming clients, ${load.seconds} s): ${load.requests} requests, ${load.errors} errors, ${load.requests_per_s} req/s, ${load.tokens_per_s} completion tokens/s`);
console.log(`  latency p50 ${load.p50_ms} ms, p99 ${load.p99_ms} ms; first content delta p50 ${load.first_delta_p50_ms} ms; mean requests per merged forward ${mergedMean.toFixed(2)}`);
console.log(`  RSS (process, engine worker included): ${mb(rss0)} MiB before load of the model, ${mb(rssLoaded)} MiB loaded, ${mb(rssAfterLoad)} MiB after the load phase, ${mb(rssEnd)} MiB at the end`);
console.log(`batching (${N} requests): one at a time ${batching.one_at_a_time_s} s (${batching.one_at_a_time_tokens_per_s} tok/s), batched ${batching.batched_s} s (${batching.batched_tokens_per_s} tok/s): ${batching.speedup}×; identical answers: ${identical}`);
console.log(JSON.stringify({ bench: 'serve', clients: N, max_tokens: G, accel: values.accel ? 'dyllm' : 'none', backend: server.model.backend, load, batching, merged_mean: +mergedMean.toFixed(2), rss_mib: { start: mb(rss0), loaded: mb(rssLoaded), after_load: mb(rssAfterLoad), end: mb(rssEnd) } }));
