/**
 * Quantised weights on a real model: `npm run bench:quant -- [--model DIR] [--tasks FILE] [--limit N]`
 * (= tsc -p . && node dist/bench/quant.js; default the bundled model, data/arith-test.jsonl, 100 tasks, chat template).
 *
 * For --quant none / int8 / q4 (docs/quantization.md) and each method (dense, DyLLM with its defaults): accuracy, how
 * many answers are token for token the bf16 answer of the same method, tokens/s (noisy on a shared machine). Then the
 * logit KL divergence KL(bf16 ‖ quantised) and argmax agreement per position on a few partly masked canvases: the
 * first --kl-prompts tasks' prompts followed by their bf16 dense answers with every other answer token masked.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { loadPipeline, type Pipeline } from '../src/engine/pipeline.js';
import { buildPrompt, defaultStops, readTasks, runEval, type EvalMethod, type EvalSummary } from '../src/eval/tasks.js';
import { paddedBatch } from '../src/models/types.js';
import type { QuantOption } from '../src/models/load-model.js';
import { repoRoot } from '../test/helpers/paths.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(repoRoot, 'models', 'dyllm-demo') },
    tasks: { type: 'string', default: join(repoRoot, 'data', 'arith-test.jsonl') },
    limit: { type: 'string', default: '100' },
    'kl-prompts': { type: 'string', default: '8' },
  },
});
const limit = Number(values.limit);
const klPrompts = Number(values['kl-prompts']);
const tasks = readTasks(values.tasks!).slice(0, limit);
const style = { chat: true, template: 'Q: {question}\nA:', fewshot: [], stop: defaultStops(true, 'Q: {question}\nA:') };
const methods: EvalMethod[] = [
  { name: 'dense', gen: {}, accel: {} },
  { name: 'dyllm', gen: {}, accel: { method: 'dyllm' } },
];
const quants: QuantOption[] = ['none', 'int8', 'q4'];

const results = new Map<string, EvalSummary>();
const pipes = new Map<QuantOption, Pipeline>();
for (const q of quants) {
  const t0 = performance.now();
  const p = await loadPipeline(values.model!, { quant: q });
  console.error(`loaded --quant ${q} in ${((performance.now() - t0) / 1000).toFixed(2)} s (${p.model.backend.name})`);
  pipes.set(q, p);
  for (const m of methods) results.set(`${q}:${m.name}`, await runEval(p, tasks, style, m, 1));
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
console.log(`${tasks.length} tasks of ${values.tasks}, chat template, backend ${pipes.get('none')!.model.backend.name}, ${new Date().toISOString()}`);
console.log('');
console.log('| --quant | method | accuracy | identical to bf16 (same method) | tokens/s |');
console.log('|---|---|---|---|---|');
for (const m of methods) {
  const base = results.get(`none:${m.name}`)!;
  for (const q of quants) {
    const s = results.get(`${q}:${m.name}`)!;
    const ident = s.outputs.filter((o, i) => same(o, base.outputs[i])).length;
    console.log(`| ${q} | ${m.name} | ${(s.accuracy * 100).toFixed(0)} % (${s.correct}/${s.n}) | ${ident}/${s.n} | ${s.tokensPerS.toFixed(1)} |`);
  }
}

// ---- logit KL on partly masked canvases ----
const logSoftmax = (a: Float32Array): Float64Array => {
  let m = -Infinity;
  for (const x of a) m = Math.max(m, x);
  let s = 0;
  for (const x of a) s += Math.exp(x - m);
  const l = m + Math.log(s);
  return Float64Array.from(a, (x) => x - l);
};
const dense = pipes.get('none')!;
const maskId = dense.config.maskTokenId;
const V = dense.config.vocabSize;
const stats = new Map<QuantOption, { kl: number[]; agree: number; n: number }>();
const base = results.get('none:dense')!;
for (let t = 0; t < Math.min(klPrompts, tasks.length); t++) {
  const prompt = buildPrompt(dense, tasks[t], style);
  const answer = base.outputs[t];
  const tokens = Int32Array.from([...prompt, ...answer.map((x, i) => (i % 2 ? maskId : x))]);
  const L = tokens.length;
  const masked: number[] = [];
  for (let i = 0; i < L; i++) if (tokens[i] === maskId) masked.push(i);
  const logits = new Map<QuantOption, Float32Array>();
  for (const q of quants) logits.set(q, pipes.get(q)!.model.forward(paddedBatch(tokens, 1, L, new Uint8Array(L).fill(1))));
  for (const q of quants.slice(1)) {
    const st = stats.get(q) ?? { kl: [], agree: 0, n: 0 };
    for (const i of masked) {
      const p = logSoftmax(logits.get('none')!.subarray(i * V, (i + 1) * V));
      const r = logSoftmax(logits.get(q)!.subarray(i * V, (i + 1) * V));
      let kl = 0;
      let a = 0;
      let b = 0;
      for (let v = 0; v < V; v++) {
        kl += Math.exp(p[v]) * (p[v] - r[v]);
        if (p[v] > p[a]) a = v;
        if (r[v] > r[b]) b = v;
      }
      st.kl.push(kl);
      if (a === b) st.agree++;
      st.n++;
    }
    stats.set(q, st);
  }
}
console.log('');
console.log(`Logit KL(bf16 ‖ quantised) at the masked positions of ${Math.min(klPrompts, tasks.length)} canvases (prompt + bf16 dense answer, every other answer token masked):`);
console.log('');
console.log('| --quant | positions | mean KL (nats) | median KL | max KL | argmax = bf16 |');
console.log('|---|---|---|---|---|---|');
for (const [q, st] of stats) {
  const s = [...st.kl].sort((x, y) => x - y);
  const mean = s.reduce((x, y) => x + y, 0) / s.length;
  console.log(`| ${q} | ${st.n} | ${mean.toExponential(2)} | ${s[s.length >> 1].toExponential(2)} | ${s[s.length - 1].toExponential(2)} | ${st.agree}/${st.n} |`);
}
