/**
 * `dyllm eval` / `dyllm bench` (src/cli/eval.ts): answer extraction as lm-eval's gsm8k flexible-extract, one JSON
 * object with accuracy and the numbers, one-line errors naming file and line for a bad task file, and a bench
 * table + SVG. Runs the bundled demo model on a few problems (fast), in process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cutAtStop, defaultStops, extractAnswer, extractStrict, readTasks, scoreResponse } from '../../src/eval/tasks.js';
import { outDir } from '../../src/cli/bench.js';
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

test('strict-match takes the first "#### N" as lm-eval\'s regex does; flexible-extract the last number', () => {
  assert.equal(extractStrict('3+4=7. #### 7'), '7');
  assert.equal(extractStrict('#### 1,234. then #### 9'), '1234');
  assert.equal(extractStrict('#### -5'), '-5');
  assert.equal(extractStrict('the answer is 7'), null);
  assert.equal(extractStrict('####7'), null); // the regex needs the space
  const s = scoreResponse('so 12. #### 12\n\nQ: next question 99', '12', defaultStops(false, 'Q: {question}\nA:'));
  assert.deepEqual(s, { text: 'so 12. #### 12', prediction: '12', correct: true, strictPrediction: '12', strictCorrect: true });
  const f = scoreResponse('it is 12<|im_end|> 13', '12', defaultStops(true, 'Q: {question}\nA:'));
  assert.deepEqual(f, { text: 'it is 12', prediction: '12', correct: true, strictPrediction: null, strictCorrect: false });
});

test('stop strings: lm-eval gsm8k\'s until plus the raw template\'s separator; the earliest one cuts', () => {
  assert.deepEqual(defaultStops(true, 'Q: {question}\nA:'), ['Question:', '</s>', '<|im_end|>']);
  assert.deepEqual(defaultStops(false, 'Q: {question}\nA:'), ['Question:', '</s>', '<|im_end|>', '\n\nQ:']);
  assert.deepEqual(defaultStops(false, '{question}'), ['Question:', '</s>', '<|im_end|>']);
  assert.equal(cutAtStop('a</s>b Question: c', ['Question:', '</s>']), 'a');
  assert.equal(cutAtStop('no stop here', ['Question:']), 'no stop here');
});

test('eval defaults to the chat template; --no-chat and --template use the raw one; --stop is applied', () => {
  const base = ['--tasks', tasksFile, '--limit', '2', '--batch', '2', '--gen-length', '16', '--steps', '16', '--block-length', '16', '--json'];
  const chat = dyllm('eval', ...base);
  assert.equal(chat.code, 0, chat.stderr);
  assert.equal(JSON.parse(chat.stdout).chat, true);
  assert.equal(JSON.parse(dyllm('eval', ...base, '--chat').stdout).chat, true);
  const raw = dyllm('eval', ...base, '--no-chat');
  assert.equal(raw.code, 0, raw.stderr);
  const r = JSON.parse(raw.stdout);
  assert.equal(r.chat, false);
  assert.ok(Number.isInteger(r.strict_correct) && r.strict_accuracy === r.strict_correct / r.n);
  assert.equal(JSON.parse(dyllm('eval', ...base, '--template', 'Question: {question}\nAnswer:').stdout).chat, false);
  // Cut at "#": no "#### N" survives, so strict-match finds nothing (the chat answers end "#### N").
  assert.ok(JSON.parse(chat.stdout).strict_correct > 0, chat.stdout);
  const cut = dyllm('eval', ...base, '--stop', '#');
  assert.equal(cut.code, 0, cut.stderr);
  assert.equal(JSON.parse(cut.stdout).strict_correct, 0);
});

test('eval flag errors are one exact line', () => {
  const e1 = dyllm('eval', '--tasks', tasksFile, '--chat', '--no-chat');
  assert.equal(e1.code, 2);
  assert.equal(e1.stderr, 'dyllm: --chat and --no-chat contradict each other: give one\n');
  const e2 = dyllm('eval', '--tasks', tasksFile, '--stop', '');
  assert.equal(e2.stderr, 'dyllm: --stop: expected a non-empty string, found ""\n');
  const e3 = dyllm('eval', '--tasks', tasksFile, '--chat', '--template', '{question}');
  assert.equal(e3.stderr, 'dyllm: --template is the raw template and --chat the chat template: give one\n');
});

test('eval and bench help: --threads and --no-chat listed, each --accel value once, defaults from generation_config', () => {
  for (const cmd of ['eval', 'bench'] as const) {
    const h = dyllm(cmd, '--help').stdout;
    assert.equal(h.match(/--threads N/g)?.length, 1, cmd);
    assert.ok(h.includes('--no-chat') && h.includes('--stop S'), cmd);
    assert.ok(h.includes("generation_config.json's max_new_tokens"), cmd);
    if (cmd === 'eval') {
      const accel = h.slice(h.indexOf('--accel M'), h.indexOf('--threshold'));
      for (const m of ['none', 'dyllm', 'prefix', 'dual', 'dllm-cache']) assert.equal(accel.match(new RegExp(`(^|[ |])${m}( |$)`, 'gm'))?.length, 1, `${m} in ${accel}`);
    }
  }
});

test('bench results go to a fresh folder: --out must be new or empty unless --force; default bench-results/<time>/', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-bench-out-'));
  writeFileSync(join(dir, 'keep.md'), 'x');
  const e1 = dyllm('bench', '--tasks', tasksFile, '--out', dir);
  assert.equal(e1.code, 2);
  assert.equal(e1.stderr, `dyllm: --out: ${dir} is not empty (1 entry); give a new or empty folder, or add --force to overwrite bench.md, bench.svg and bench.json there\n`);
  assert.equal(outDir(dir, true), dir);
  assert.equal(outDir(join(dir, 'new', 'deeper'), false), join(dir, 'new', 'deeper'));
  const e2 = dyllm('bench', '--tasks', tasksFile, '--force');
  assert.equal(e2.stderr, 'dyllm: --force: only applies to --out DIR; give --out DIR or drop --force\n');
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const now = new Date('2025-01-02T03:04:05.678Z');
    assert.equal(outDir(undefined, false, now), join('bench-results', '2025-01-02T03-04-05Z'));
    assert.equal(outDir(undefined, false, now), join('bench-results', '2025-01-02T03-04-05Z-2'));
    assert.deepEqual(readdirSync('bench-results').sort(), ['2025-01-02T03-04-05Z', '2025-01-02T03-04-05Z-2']);
  } finally {
    process.chdir(cwd);
  }
  assert.ok(existsSync(join(dir, 'keep.md')));
});
