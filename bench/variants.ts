/**
 * DyLLM beyond the paper on a held-out task set (not a test):
 *
 *   npm run bench:variants -- [--tasks data/arith-test.jsonl] [--limit 100] [--model M] [--qkv-tol 0,0.01] [--head-tol 0,0.01]   (env DYLLM_THREADS: kernel threads)
 *
 * Runs dense, DyLLM as published and DyLLM with each given `qkvTol` / `headTol` (engine/accel/dyllm.ts) over the same
 * problems, exactly as `dyllm eval` does (chat template when the model has one), and prints a markdown table:
 * accuracy (flexible / strict), tokens/s, answers token-for-token identical to dense and to DyLLM.
 */
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { evalInputs, common } from '../src/cli/eval.js';
import { runEval, type EvalSummary } from '../src/eval/tasks.js';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: 'data/arith-test.jsonl' },
    limit: { type: 'string', default: '100' },
    model: { type: 'string' },
    'qkv-tol': { type: 'string', default: '0,0.01,0.05' },
    'head-tol': { type: 'string', default: '0,0.01,0.05' },
  },
});
const list = (v: string): number[] => (v ? v.split(',').map(Number) : []);
const inputs = await evalInputs({ tasks: values.tasks, limit: values.limit, model: values.model });
const c = await common(inputs);
const methods = [
  { name: 'dense', gen: {}, accel: {} },
  { name: 'DyLLM (paper)', gen: {}, accel: { method: 'dyllm' } },
  ...list(values['qkv-tol']).map((e) => ({ name: `DyLLM --qkv-tol ${e}`, gen: {}, accel: { method: 'dyllm', qkvTol: e } })),
  ...list(values['head-tol']).map((e) => ({ name: `DyLLM --head-tol ${e}`, gen: {}, accel: { method: 'dyllm', headTol: e } })),
];
const same = (a: EvalSummary, b: EvalSummary): number => a.outputs.filter((o, i) => o.length === b.outputs[i].length && o.every((t, j) => t === b.outputs[i][j])).length;
const results: EvalSummary[] = [];
console.log(`# bench:variants — ${c.dir}, ${c.tasks.length} problems of ${values.tasks}, ${c.style.chat ? 'chat template' : 'raw template'}, backend ${c.p.model.backend.name}`);
console.log(`machine: ${cpus()[0].model}, ${new Date().toISOString()}`);
console.log('| method | accuracy | strict | tokens/s | salient fraction | identical to dense | identical to DyLLM |');
console.log('|---|---|---|---|---|---|---|');
for (const m of methods) {
  const s = await runEval(c.p, c.tasks, c.style, m, c.batch);
  results.push(s);
  const dense = results[0];
  const dy = results[1] ?? s;
  console.log(`| ${m.name} | ${s.accuracy.toFixed(2)} | ${s.strictAccuracy.toFixed(2)} | ${s.tokensPerS.toFixed(1)} | ${s.salientFraction.toFixed(3)} | ${same(s, dense)}/${s.n} | ${same(s, dy)}/${s.n} |`);
}
