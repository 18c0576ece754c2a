/**
 * The command-line conventions users expect: --version, "did you mean" for commands, --threads / DYLLM_THREADS
 * (checked, and reported as the threads that ran), --quiet / --verbose, `dyllm info`, the weight-loading progress
 * callback and bar, and the live view's special-token marks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { LiveView, LoadBar } from '../../src/cli/live-view.js';
import { loadModel } from '../../src/models/load-model.js';
import { Checkpoint } from '../../src/load/safetensors.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { nativeIsaTiers } from '../../src/kernels/native.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';

const bin = join(repoRoot, 'bin', 'dyllm.js');
const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const native = nativeIsaTiers().length > 0;

function dyllm(env: Record<string, string | undefined>, ...args: string[]) {
  const e = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete e[k];
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, env: e });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const NO_THREADS_ENV = { DYLLM_THREADS: undefined };
const TINY = ['--model', fixturePath('llada-tiny'), '--prompt-ids', '5,6,7', '--gen-length', '4', '--steps', '4'];

function oneLineError(r: { code: number | null; stdout: string; stderr: string }, code: number, msg: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.split('\n').length, 2, r.stderr);
  assert.match(r.stderr, msg);
}

test('--version and -v print the package version', () => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const r = dyllm({}, flag);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `dyllm ${version}\n`);
  }
  assert.match(dyllm({}, '--help').stdout, /info MODEL/);
});

test('an unknown command gets a "did you mean"', () => {
  oneLineError(dyllm({}, 'genrate', 'x'), 2, /^dyllm: unknown command "genrate" \(expected: generate, serve, eval, bench, worker, info, pull, quantize, pack\); did you mean "generate"\?$/m);
  oneLineError(dyllm({}, 'serv'), 2, /did you mean "serve"\?$/m);
  oneLineError(dyllm({}, 'frobnicate'), 2, /^dyllm: unknown command "frobnicate" \(expected: [^)]+\)$/m);
});

test('--threads N and DYLLM_THREADS set the kernel threads; --json reports how many ran', () => {
  const threads = (r: { code: number | null; stdout: string; stderr: string }) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).stats.threads as number;
  };
  if (native) {
    assert.equal(threads(dyllm(NO_THREADS_ENV, 'generate', ...TINY, '--threads', '1', '--json')), 1);
    assert.equal(threads(dyllm(NO_THREADS_ENV, 'generate', ...TINY, '--threads=3', '--json')), 3);
    assert.equal(threads(dyllm(NO_THREADS_ENV, '--threads', '2', 'generate', ...TINY, '--json')), 2);
    assert.equal(threads(dyllm({ DYLLM_THREADS: '1' }, 'generate', ...TINY, '--json')), 1);
    assert.equal(threads(dyllm({ DYLLM_THREADS: '1' }, 'generate', ...TINY, '--threads', '2', '--json')), 2, 'the flag wins over the variable');
    assert.equal(threads(dyllm(NO_THREADS_ENV, 'generate', ...TINY, '--json')), availableParallelism(), 'default: os.availableParallelism()');
    // the default follows the CPUs the process may run on (a container's or taskset's), not every CPU of the host
    const taskset = spawnSync('taskset', ['-c', '0', process.execPath, bin, 'generate', ...TINY, '--json'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, DYLLM_THREADS: '' } });
    if (!taskset.error) assert.equal(threads({ code: taskset.status, stdout: taskset.stdout, stderr: taskset.stderr }), 1, 'taskset -c 0');
  }
  const ref = dyllm({ DYLLM_NATIVE: 'off' }, 'generate', ...TINY, '--threads', '2', '--json');
  assert.equal(threads(ref), 1, 'the reference backend runs one thread');
  for (const [args, msg] of [
    [['--threads', '0'], /^dyllm: --threads: expected an integer in \[1, 256\], found "0"$/m],
    [['--threads', 'many'], /^dyllm: --threads: expected an integer in \[1, 256\], found "many"$/m],
    [['--threads=257'], /^dyllm: --threads: expected an integer in \[1, 256\], found "257"$/m],
    [['--threads'], /^dyllm: --threads: expected a thread count, found nothing$/m],
  ] as const) {
    oneLineError(dyllm(NO_THREADS_ENV, 'generate', ...TINY, ...args), 2, msg);
  }
  oneLineError(dyllm({ DYLLM_THREADS: 'lots' }, 'generate', ...TINY), 2, /^dyllm: DYLLM_THREADS: expected an integer in \[1, 256\], found "lots"$/m);
  // eval and bench take it too (they never see the flag).
  oneLineError(dyllm(NO_THREADS_ENV, 'eval', '--threads', '0', '--tasks', 'x.jsonl'), 2, /--threads: expected an integer/);
  oneLineError(dyllm(NO_THREADS_ENV, 'bench', '--threads', '-1', '--tasks', 'x.jsonl'), 2, /--threads: expected an integer/);
});

test('serve --threads: /v1/models reports the threads the engine runs', { skip: !native && 'native kernels unavailable' }, async () => {
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYLLM_THREADS: '' } });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.stderr.on('data', (d) => (err += d));
      child.on('exit', () => reject(new Error(`serve exited: ${err}`)));
    });
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { dyllm: { threads: number } }[] };
    assert.equal(models.data[0].dyllm.threads, 1);
  } finally {
    child.kill('SIGKILL');
  }
});

test('--quiet prints only the answer; --verbose adds load timings, the backend and its threads, and the options', () => {
  const q = dyllm({}, 'generate', '--quiet', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stdout, '12+7=19. #### 19\n');
  assert.equal(q.stderr, '');
  const plain = dyllm({}, 'generate', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  assert.match(plain.stderr, /^48 tokens in [\d.]+ s: [\d.]+ tokens\/s, 48 steps, 48 NFE \((native-\w+|reference), \d+ threads?\)\n$/);
  const v = dyllm({}, 'generate', '--verbose', ...TINY, '--threads', '1');
  assert.equal(v.code, 0, v.stderr);
  const lines = v.stderr.trim().split('\n');
  assert.match(lines[0], /^dyllm: read [\d.]+ (KiB|MiB) of weights in [\d.]+ s$/);
  assert.match(v.stderr, /^dyllm: loaded .*llada-tiny \(llada\): config \d+ ms, model, tokenizer and template \d+ ms$/m);
  assert.match(v.stderr, native ? /^dyllm: backend native-\w+, 1 thread$/m : /^dyllm: backend reference, 1 thread$/m);
  const opts = /^dyllm: options (\{.*\})$/m.exec(v.stderr);
  assert.ok(opts, v.stderr);
  assert.equal(JSON.parse(opts[1]).genLength, 4);
  assert.match(v.stderr, /^dyllm: acceleration \{"method":"none"/m);
  assert.match(v.stderr, /^dyllm: prompt: 3 tokens$/m);
  oneLineError(dyllm({}, 'generate', '--quiet', '--verbose', 'x'), 2, /^dyllm: --quiet and --verbose contradict each other: give one$/m);
});

test('dyllm info: architecture, sizes, tokenizer, special tokens, defaults and backend (text and --json)', () => {
  const j = dyllm({}, 'info', 'dyllm-demo', '--json');
  assert.equal(j.code, 0, j.stderr);
  assert.equal(j.stdout.trim().split('\n').length, 1);
  const info = JSON.parse(j.stdout);
  // Parameters counted independently from the safetensors header.
  const ckpt = new Checkpoint(DEMO);
  const params = ckpt.names().reduce((n, name) => n + ckpt.info(name)!.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(info.parameters, params);
  assert.deepEqual(info.dtypes, { bf16: ckpt.names().length });
  assert.equal(info.weight_bytes, ckpt.nbytes());
  assert.ok(info.disk_bytes > info.weight_bytes);
  const cfg = JSON.parse(readFileSync(join(DEMO, 'config.json'), 'utf8'));
  assert.equal(info.arch, 'llada');
  assert.equal(info.layers, cfg.n_layers);
  assert.equal(info.hidden_size, cfg.d_model);
  assert.equal(info.heads, cfg.n_heads);
  assert.equal(info.context_length, cfg.max_sequence_length);
  assert.equal(info.vocab_size, cfg.embedding_size);
  assert.equal(info.tokenizer.kind, 'tokenizer.json');
  assert.equal(info.chat_template, true);
  assert.deepEqual(info.special_tokens.mask, { id: cfg.mask_token_id, token: '<|mdm_mask|>' });
  assert.deepEqual(info.special_tokens.eot, { id: 430, token: '<|eot_id|>' });
  assert.equal(info.generation_config.steps, 48);
  assert.match(info.backend.name, native ? /^native-/ : /^reference$/);
  const t = dyllm({}, 'info', DEMO);
  assert.equal(t.code, 0, t.stderr);
  for (const re of [/^architecture\s+LLaDA$/m, /^parameters\s+7\.9M \(7,909,440\)$/m, /^special tokens\s+mask 427 <\|mdm_mask\|>, eos 426 <\|endoftext\|>, eot 430 <\|eot_id\|>/m, /^context\s+1024 tokens/m, /^backend\s+(native-\w+|reference), \d+ threads?/m]) {
    assert.match(t.stdout, re);
  }
  const dream = JSON.parse(dyllm({}, 'info', '--json', fixturePath('dream-tiny')).stdout);
  assert.equal(dream.arch, 'dream');
  assert.equal(dream.special_tokens.eot.token, '<|im_end|>');
  oneLineError(dyllm({}, 'info'), 2, /^dyllm: expected one MODEL/m);
  oneLineError(dyllm({}, 'info', 'dyllm-demo', '--bogus'), 2, /^dyllm: unknown option --bogus/m);
  oneLineError(dyllm({}, 'info', '/nonexistent/folder'), 1, /^dyllm: error: \/nonexistent\/folder: expected a model folder/m);
  const off = JSON.parse(dyllm({ DYLLM_NATIVE: 'off' }, 'info', '--json', 'dyllm-demo').stdout);
  assert.deepEqual(off.backend, { name: 'reference', threads: 1, reason: 'disabled by DYLLM_NATIVE=off' });
});

test('loadModel reports weight-loading progress: increasing byte counts ending at the checkpoint total', () => {
  const calls: [number, number][] = [];
  loadModel(fixturePath('llada-tiny-f32-sharded'), { backend: new ReferenceBackend(), onProgress: (d, t) => calls.push([d, t]) });
  const total = new Checkpoint(fixturePath('llada-tiny-f32-sharded')).nbytes();
  assert.ok(calls.length > 3, `${calls.length} calls`);
  for (let i = 1; i < calls.length; i++) assert.ok(calls[i][0] >= calls[i - 1][0]);
  assert.ok(calls.every(([d, t]) => t === total && d <= total));
  assert.deepEqual(calls.at(-1), [total, total]);
});

/** A stream that records what is written to it. */
function sink(columns = 100): { out: { write(s: string): boolean; columns: number }; text: () => string } {
  const parts: string[] = [];
  return { out: { write: (s: string) => parts.push(s) > 0, columns }, text: () => parts.join('') };
}

test('the load bar: drawn and erased on a terminal, one line with --verbose elsewhere, silent otherwise', () => {
  const tty = sink();
  const bar = new LoadBar(tty.out, { tty: true, verbose: false, afterMs: 0 });
  bar.update(512, 2048);
  bar.update(2048, 2048);
  bar.finish();
  assert.match(tty.text(), /^\rloading weights \[#{8}\.{22}\] 512 B \/ 2 KiB\x1b\[K/);
  assert.ok(tty.text().endsWith('\r\x1b[K'), 'erased when done');
  const log = sink();
  const verbose = new LoadBar(log.out, { tty: false, verbose: true, afterMs: 0 });
  verbose.update(2048, 2048);
  verbose.finish();
  assert.match(log.text(), /^dyllm: read 2 KiB of weights in [\d.]+ s\n$/);
  const quiet = sink();
  const silent = new LoadBar(quiet.out, { tty: false, verbose: false, afterMs: 0 });
  silent.update(2048, 2048);
  silent.finish();
  assert.equal(quiet.text(), '');
  const fast = sink();
  const quick = new LoadBar(fast.out, { tty: true, verbose: false }); // under a second: no bar
  quick.update(2048, 2048);
  quick.finish();
  assert.equal(fast.text(), '');
});

test('the live view draws end tokens as a dim ∎ and special tokens dim, never their text; threads on the progress line', async () => {
  const p = await loadPipeline(DEMO, { backend: new ReferenceBackend() });
  const s = sink();
  const view = new LiveView(p, s.out, { threads: 2 });
  const a = p.tokenizer.encode('12+7')[0];
  const canvas = Int32Array.from([a, p.ids.mask, p.ids.eot!, p.ids.eos, p.ids.eos, 428]);
  view.step({ step: 3, maxSteps: 8, sequences: [{ canvas, committed: Int32Array.from([2]), done: false }], forwardMs: 1, sampleMs: 1, nfe: 4, accel: null });
  const text = s.text();
  assert.ok(!text.includes('<|eot_id|>') && !text.includes('<|endoftext|>'), JSON.stringify(text));
  assert.ok(text.includes('\x1b[7m\x1b[2m∎\x1b[22m\x1b[27m'), 'the end of turn committed this step: highlighted ∎');
  assert.equal(text.split('\x1b[2m∎\x1b[22m').length - 1, 3, 'end of turn and both end-of-text tokens drawn as ∎');
  assert.ok(text.includes('\x1b[2m<|start_header_id|>\x1b[22m'), 'another special token: dim');
  assert.match(text, /step 4\/8 · reference, 2 threads\n$/);
});
