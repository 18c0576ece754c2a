/**
 * `dyllm eval` / `dyllm bench` (src/cli/eval.ts): answer extraction as lm-eval's gsm8k flexible-extract, one JSON
 * object with accuracy and the numbers, one-line errors naming file and line for a bad task file, and a bench
 * table + SVG. Runs the bundled demo model on a few problems (fast), in process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractAnswer, readTasks } from '../../src/eval/tasks.js';
import { LoadError } from '../../src/load/errors.js';
import { repoRoot } from '../helpers/paths.js';
import { NATIVE_SPEED, needsNative } from '../helpers/native.js';

const tasksFile = join(repoRoot, 'data', 'arith-test.jsonl');
const fewshotFile = join(repoRoot, 'data', 'arith-fewshot.jsonl');

/**
 * Run `dyllm eval|bench` in a child process through the commands' entry points (cli/eval.ts, cli/bench.ts):
 * stdout, stderr and the exit code as the CLI maps them (2 usage/config, 1 load).
 */
function dyllm(cmd: 'eval' | 'bench', ...args: string[]) {
  const mod = pathToFileURL(join(repoRoot, 'dist', 'src', 'cli', `${cmd}.js`)).href;
  const code = `const m = await import(${JSON.stringify(mod)});
try { await m.${cmd === 'eval' ? 'cmdEval' : 'cmdBench'}(process.argv.slice(1)); }
catch (e) { process.stderr.write('dyllm: ' + e.message + '\\n'); process.exitCode = e.name === 'UsageError' || e.name === 'ConfigError' ? 2 : 1; }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code, '--', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('flexible-extract takes the last number and normalises it as lm-eval does', () => {
  assert.equal(extractAnswer('25-8=17. 17*3=51. #### 51'), '51');
  assert.equal(extractAnswer('It costs $1,234.'), '1234');
  assert.equal(extractAnswer('-5 then 7'), '7');
  assert.equal(extractAnswer('down to -12.'), '-12');
  assert.equal(extractAnswer('no digits here'), null);
  assert.equal(extractAnswer('x 3'), '3');
});

test('a bad task file is a one-line LoadError naming the file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-eval-'));
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"question": "a?", "answer": "1+1=2. #### 2"}\n{"question": "b?", "answer": "no marker"}\n');
  assert.throws(() => readTasks(bad), (e: unknown) => e instanceof LoadError && e.message.startsWith(`${bad}:2: expected`) && !e.message.includes('\n'));
  writeFileSync(bad, '{"question": "a?", "answer": "#### 2"}\nnot json\n');
  assert.throws(() => readTasks(bad), (e: unknown) => e instanceof LoadError && e.message.startsWith(`${bad}:2:`));
  assert.throws(() => readTasks(join(dir, 'missing.jsonl')), LoadError);
  assert.deepEqual(readTasks(tasksFile).length, 500);
});

test('eval --json prints one object with accuracy, tokens/s, NFE and salient fraction', () => {
  const res = dyllm('eval', '--tasks', tasksFile, '--chat', '--limit', '3', '--batch', '2', '--gen-length', '48', '--steps', '24', '--block-length', '16', '--accel', 'dyllm', '--json');
  assert.equal(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const r = JSON.parse(lines[0]);
  assert.equal(r.n, 3);
  assert.ok(r.accuracy >= 0 && r.accuracy <= 1);
  assert.equal(r.generated_tokens, 3 * 48);
  assert.ok(r.tokens_per_s > 0 && r.salient_fraction > 0 && r.salient_fraction < 1);
  assert.equal(r.nfe, 24);
  assert.equal(r.method, 'dyllm τ=0.99');
});

test('eval runs the baselines and few-shot prompts; bad input exits with one line', () => {
  const res = dyllm('eval', '--tasks', tasksFile, '--limit', '2', '--fewshot', '2', '--fewshot-file', fewshotFile, '--gen-length', '16', '--steps', '16', '--block-length', '16', '--accel', 'dllm-cache', '--json');
  assert.equal(res.code, 0, res.stderr);
  const r = JSON.parse(res.stdout);
  assert.equal(r.method, 'dllm-cache');
  assert.ok(r.salient_fraction < 1);
  const oneLine = (x: { stderr: string }) => x.stderr.trim().split('\n').length === 1;
  const u1 = dyllm('eval', '--limit', '2');
  assert.ok(u1.code === 2 && oneLine(u1) && /--tasks/.test(u1.stderr), u1.stderr);
  const u2 = dyllm('eval', '--tasks', tasksFile, '--fewshot', '2');
  assert.ok(u2.code === 2 && /--fewshot-file/.test(u2.stderr), u2.stderr);
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-eval-'));
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"question": "a?", "answer": "#### 2"}\n{"question": 3}\n');
  const l = dyllm('eval', '--tasks', bad);
  assert.ok(l.code === 1 && oneLine(l) && l.stderr.includes(`${bad}:2:`), l.stderr);
});

test('bench writes the table and the SVG with every method', needsNative(NATIVE_SPEED), () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-bench-'));
  const res = dyllm('bench', '--tasks', tasksFile, '--chat', '--limit', '1', '--gen-length', '16', '--steps', '16', '--block-length', '8', '--no-parallel', '--out', dir);
  assert.equal(res.code, 0, res.stderr);
  const md = res.stdout;
  for (const m of ['dense', 'DyLLM τ=0.99', 'DyLLM τ=0.995', 'Fast-dLLM prefix', 'Fast-dLLM dual', 'dLLM-Cache']) assert.ok(md.includes(`| ${m} |`), m);
  assert.ok(md.includes('| dense | 16 |') && md.includes('1.00×'));
  assert.equal(readFileSync(join(dir, 'bench.md'), 'utf8'), md);
  const svg = readFileSync(join(dir, 'bench.svg'), 'utf8');
  assert.ok(svg.startsWith('<svg') && (svg.match(/<circle/g) ?? []).length >= 12);
});
