/**
 * Quantisation as a user meets it: `dyllm quantize IN OUT --quant int8|q4` (one line out, exit codes, one-line
 * refusals, never overwriting), `--quant` on generate / eval / serve as a load option (a quantised folder and load-time
 * quantisation generate the same tokens), and the bundled model still answering with int8 and 4-bit weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';
import { NATIVE_SPEED, nativeStatus, needsNative } from '../helpers/native.js';

const bin = join(repoRoot, 'bin', 'dyllm.js');
const tmp = mkdtempSync(join(tmpdir(), 'dyllm-quant-cli-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function dyllm(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** stderr without the fallback warning a machine without the native addon prints first. */
function errLines(stderr: string): string[] {
  const fallback = nativeStatus().reason !== null ? /^dyllm: warning: native kernels unavailable / : null;
  return stderr.trim().split('\n').filter((l) => l !== '' && !fallback?.test(l));
}

test('dyllm quantize writes a folder that generates what --quant generates', () => {
  const out = join(tmp, 'llada-q4');
  const r = dyllm('quantize', fixturePath('llada-tiny'), out, '--quant', 'q4');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^dyllm: wrote ${out}: 15 matrices as q4 \\(LM head int8\\), 0\\.\\d+ GiB of tensors \\(from 0\\.\\d+ GiB\\) in 1 file\\n$`));
  assert.match(r.stderr, /quantize: 15\/15 matrices/);
  const gen = (...extra: string[]) => dyllm('generate', '--prompt-ids', '5,6,7,8', '--gen-length', '16', '--steps', '16', '--backend', 'reference', '--json', ...extra);
  const viaFolder = gen('--model', out);
  const atLoad = gen('--model', fixturePath('llada-tiny'), '--quant', 'q4');
  const dense = gen('--model', fixturePath('llada-tiny'));
  for (const x of [viaFolder, atLoad, dense]) assert.equal(x.code, 0, x.stderr);
  assert.deepEqual(JSON.parse(viaFolder.stdout).tokens, JSON.parse(atLoad.stdout).tokens);
  assert.equal(JSON.parse(dense.stdout).tokens.length, 16);
});

test('quantize, generate, eval and serve refuse bad values with one line and exit 2', () => {
  const existing = join(tmp, 'exists');
  assert.equal(dyllm('quantize', fixturePath('dream-tiny'), existing, '--quant', 'int8').code, 0);
  const cases: Array<[string[], RegExp]> = [
    [['quantize'], /^dyllm: expected IN and OUT folders, found 0 arguments \(dyllm quantize IN OUT --quant int8\|q4\)$/],
    [['quantize', fixturePath('llada-tiny'), join(tmp, 'x1')], /^dyllm: --quant: expected int8 or q4, found nothing$/],
    [['quantize', fixturePath('llada-tiny'), join(tmp, 'x2'), '--quant', 'q2'], /^dyllm: --quant: expected int8 or q4, found "q2"$/],
    [['quantize', fixturePath('llada-tiny'), join(tmp, 'x3'), '--quant', 'q4', '--lm-head', 'fp8'], /^dyllm: --lm-head: expected int8, q4 or none, found "fp8"$/],
    [['quantize', fixturePath('llada-tiny'), existing, '--quant', 'q4'], /^dyllm: OUT: .* already exists; give a new folder \(dyllm quantize never overwrites\)$/],
    [['quantize', fixturePath('llada-tiny'), join(tmp, 'no', 'such', 'parent'), '--quant', 'q4'], /^dyllm: OUT: the parent folder .* does not exist$/],
    [['generate', '--model', fixturePath('llada-tiny'), '--quant', 'int4', 'x'], /^dyllm: --quant: expected none, int8 or q4, found "int4"$/],
    [['eval', '--tasks', join(repoRoot, 'data', 'arith-test.jsonl'), '--quant', 'fp16'], /^dyllm: --quant: expected none, int8 or q4, found "fp16"$/],
    [['eval', '--tasks', join(repoRoot, 'data', 'arith-test.jsonl'), '--quant', 'int8', '--queue', 'redis://127.0.0.1:1'],
      /^dyllm: --quant: with --queue the workers load the model; write a quantised folder \(dyllm quantize IN OUT --quant Q\) and give it as --model to the coordinator and the workers$/],
    [['serve', '--quant', 'q8', '--port', '0'], /^dyllm: --quant: expected none, int8 or q4, found "q8"$/],
  ];
  for (const [args, want] of cases) {
    const r = dyllm(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = errLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], want);
    assert.equal(r.stdout, '');
  }
  for (const d of ['x1', 'x2', 'x3']) assert.equal(existsSync(join(tmp, d)), false);
  // An already quantised folder is a model error (exit 1), as is --quant against its format.
  const again = dyllm('quantize', existing, join(tmp, 'x4'), '--quant', 'q4');
  assert.equal(again.code, 1);
  assert.match(errLines(again.stderr)[0], /^dyllm: error: .*config\.json: expected a dense \(bf16 \/ f32\) model folder, found one already quantised as int8/);
  const clash = dyllm('generate', '--model', existing, '--quant', 'q4', '--prompt-ids', '5,6', '--gen-length', '4', '--steps', '4');
  assert.equal(clash.code, 1);
  assert.match(errLines(clash.stderr)[0], /^dyllm: error: .*config\.json: expected --quant none or int8 for a folder quantised as int8/);
});

test('the bundled model still answers with int8 and 4-bit weights (dense and DyLLM)', needsNative(NATIVE_SPEED), () => {
  // Quantisation (like DyLLM's reuse) may flip a close token: int8, and bf16 with --accel dyllm, answer this question
  // "9-3=5". So only bf16 dense is held to the right answer and the rest to the answer's form; closeness to bf16 is
  // test/load/quant.test.ts's logit KL bound, accuracy is measured in BENCHMARKS.md.
  const q = 'Ruby has 6 marbles. Ruby buys 3 more. Ruby sells 3 marbles. How many marbles does Ruby have now?';
  for (const accel of ['none', 'dyllm']) {
    for (const quant of ['none', 'int8', 'q4']) {
      const r = dyllm('generate', '--quant', quant, '--accel', accel, '--json', q);
      assert.equal(r.code, 0, r.stderr);
      const text = JSON.parse(r.stdout).text as string;
      assert.match(text, quant === 'none' && accel === 'none' ? /^6\+3=9\. 9-3=6\. #### 6$/ : /^6\+3=9\. 9-3=\d+\. #### \d+$/, `--quant ${quant} --accel ${accel}`);
    }
  }
});
