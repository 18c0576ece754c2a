/**
 * The option schema (src/engine/schema.ts) as every surface sees it: each declared option is bounded, refused with
 * its own name, and the same declaration drives the CLI, the server and the library. A seeded fuzz then draws
 * option sets across the declared ranges and runs them through the denoising loop of both families with every
 * acceleration method: each draw either is refused up front with a one-line ConfigError or generates to the end.
 * Replay a failure with DYLLM_FUZZ_SEED=<seed>; DYLLM_FUZZ_CASES sets the budget (`npm run fuzz:options`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, cpSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { DenoiseRun, generateSteps } from '../../src/engine/generate.js';
import { GENERATION_OPTIONS, optionContext, resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { ACCEL_OPTIONS, resolveAccel, type AccelOptionsInput } from '../../src/engine/accel.js';
import { allOptions, cliMessage, httpMessage, OptionError, rangeOf, type OptionContext, type OptionSpec } from '../../src/engine/schema.js';
import { ConfigError } from '../../src/load/errors.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { parse, accelFlagConfig, generationFlagConfig, generationOptions, accelOptions, GENERATION_HELP, ACCEL_HELP, LOAD_FLAGS } from '../../src/cli/args.js';
import { QUANTIZE_FLAGS } from '../../src/cli/quantize.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';
import { Rng } from '../../src/sampler/rng.js';
import { QUEUE_FLAGS } from '../../src/queue/flags.js';
import { WORKER_FLAGS } from '../../src/queue/worker.js';

const bin = join(repoRoot, 'bin', 'dyllm.js');
const dyllm = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

test('every declared option has one flag, one field, help, and a range when it is a number', () => {
  const specs = allOptions();
  assert.ok(specs.length >= GENERATION_OPTIONS.length + ACCEL_OPTIONS.length);
  for (const key of ['flag', 'field', 'key'] as const) {
    const seen = specs.map((s) => s[key]);
    assert.equal(new Set(seen).size, seen.length, `duplicate ${key}`);
  }
  const ctx = { arch: 'llada' as const, vocabSize: 100, maxCanvas: 64, maxCanvasWhy: 'test', genLength: 32 };
  for (const s of specs) {
    assert.ok(s.help.length > 0, s.key);
    if (s.type === 'int' || s.type === 'number') {
      const r = rangeOf(s, ctx);
      assert.ok(r && Number.isFinite(r.min) && Number.isFinite(r.max), `${s.key} is unbounded`);
    }
    assert.ok(GENERATION_HELP.includes(`--${s.flag}`) || ACCEL_HELP.includes(`--${s.flag}`), `--${s.flag} missing from help`);
  }
});

/** Out-of-range and wrongly typed values, per declaration. */
function badValues(s: OptionSpec, ctx: OptionContext): unknown[] {
  const out: unknown[] = ['x', {}, [], Number.NaN, Infinity];
  if (s.type === 'boolean') return [1, 'true', null].filter((v) => !(v === null && s.nullable));
  if (s.type === 'enum') return ['', 'nope', 3];
  const r = rangeOf(s, ctx);
  out.push(r!.max + 1, r!.minExclusive ? r!.min : r!.min - 1, ...[1e15, 1e300, -1e15].filter((x) => x > r!.max || x < r!.min));
  if (s.type === 'int') out.push(1.5);
  return out;
}

test('each option refuses out-of-range and wrongly typed values, naming itself on every surface', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const ctx = { ...optionContext(p.config), genLength: 32 };
  for (const s of GENERATION_OPTIONS) {
    for (const v of badValues(s, ctx)) {
      const input = { genLength: 32, steps: 32, blockLength: 32, [s.key]: v } as GenerateOptionsInput;
      let err: unknown;
      try {
        resolveOptions(p.config, input, {});
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof OptionError, `${s.key} = ${String(v)} was accepted (or threw ${String(err)})`);
      assert.equal(err.option, s.key);
      assert.match(cliMessage(err), new RegExp(`^--${s.flag}: expected `));
      assert.deepEqual(httpMessage(err).param, s.field);
      assert.ok(!err.message.includes('\n'));
    }
  }
  for (const s of ACCEL_OPTIONS) {
    for (const v of badValues(s, ctx)) {
      assert.throws(() => resolveAccel(p.config, { [s.key]: v } as AccelOptionsInput, resolveOptions(p.config, { genLength: 32 })),
        (e: unknown) => e instanceof OptionError && e.option === s.key, `${s.key} = ${String(v)}`);
    }
  }
});

test('bounds that depend on the model and on other options', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const max = p.config.maxSequenceLength;
  assert.throws(() => resolveOptions(p.config, { genLength: 1e8 }), new RegExp(`^OptionError: genLength: expected an integer in \\[1, ${max}\\] \\(at most the model's maximum sequence length\\), found 100000000$`));
  assert.throws(() => resolveOptions(p.config, { genLength: 16, steps: 17 }), /^OptionError: steps: expected an integer in \[1, 16\] \(at most the gen length\), found 17$/);
  assert.throws(() => resolveOptions(p.config, { genLength: 16, topK: 1e6 }), /topK: expected an integer in \[1, \d+\] \(at most the vocabulary size\)/);
  // A canvas cap below the model's own maximum (the server sets one from --max-tokens and --max-prompt-tokens).
  assert.throws(() => resolveOptions(p.config, { genLength: 200 }, {}, { maxCanvas: 100 }), /at most the canvas cap of 100 positions/);
  // Dream runs more steps than positions when asked (its generation_config.json says 512 at any length).
  const d = await loadPipeline(fixturePath('dream-tiny'), { backend: new ReferenceBackend() });
  assert.equal(resolveOptions(d.config, { genLength: 16, steps: 512 }).steps, 512);
  assert.throws(() => resolveOptions(d.config, { genLength: 16, steps: 5000 }), /steps: expected an integer in \[1, 1024\]/);
  // The prompt's share is checked when the prompt is known, before anything is allocated.
  const o = resolveOptions(p.config, { genLength: 32, steps: 32 });
  assert.throws(() => generateSteps(p.model, p.ids, { prompts: [new Array(max).fill(5)], options: o }).next(),
    new RegExp(`genLength: prompt 0 has ${max} tokens, and ${max} \\+ 32 positions exceed the model's maximum sequence length ${max}`));
  assert.throws(() => resolveOptions(p.config, { genLenght: 3 } as never), /unknown generation option "genLenght"; did you mean "genLength"\?/);
});

test('a generation_config.json value out of range is refused naming the file and key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-opts-'));
  cpSync(fixturePath('llada-tiny'), dir, { recursive: true });
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ max_new_tokens: 1e9 }));
  const r = dyllm('generate', '--model', dir, '--prompt-ids', '1,2', '--backend', 'reference');
  // Refused at load (load/config.ts checkGeneration): the model folder cannot be used as it is (exit 1).
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^dyllm: error: .*generation_config\.json: "max_new_tokens": expected an integer in \[1, 4096\] \(the model's max_sequence_length\), found 1000000000\n$/);
});

test('the CLI refuses an oversized canvas at once, naming the flag as typed', () => {
  const r = dyllm('generate', '1+1=', '--gen-length', '100000000');
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^dyllm: --gen-length: expected an integer in \[1, 1024\] \(at most the model's maximum sequence length\), found 100000000\n$/);
  const s = dyllm('generate', '1+1=', '--steps', '96');
  assert.match(s.stderr, /^dyllm: --steps: expected an integer in \[1, 48\] \(at most the gen length\), found 96\n$/);
});

test('flags: negative numbers are values, unknown flags get a suggestion', () => {
  const { values } = parse(['--threshold', '-0.5', '--parallel-threshold', '-1', 'x'], { ...generationFlagConfig, ...accelFlagConfig }, true);
  assert.equal(accelOptions(values).threshold, -0.5);
  assert.equal(generationOptions(values).parallelThreshold, -1);
  assert.throws(() => parse(['--gen-lenght', '4'], generationFlagConfig, false), /^UsageError: unknown option --gen-lenght; did you mean "--gen-length"\?$/);
});

test('LLaDA: masks in the prompt with blocks filled early by parallel decoding end after the last block', async () => {
  // Found by the option fuzz (seed 2, case 814): the prompt's masks take commits from the blocks' schedules, parallel
  // decoding fills blocks early, and the run reached its last block with steps to spare and a mask left; the next
  // step read past the schedule. generate.py ends after its last block with the canvas as it is.
  const p = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
  const m = p.ids.mask;
  const options = resolveOptions(p.config, { genLength: 4, blockLength: 2, parallelThreshold: 0.5828046112181227 });
  const it = generateSteps(p.model, p.ids, { prompts: [[167, m, m, 110]], options });
  let r = it.next();
  while (!r.done) r = it.next();
  assert.equal(r.value.tokens[0].length, 4);
  assert.ok(r.value.stats.steps <= 4);
});

// ---- seeded fuzz of option sets through the loop ------------------------------------------------------------------

const CASES = Number(process.env.DYLLM_FUZZ_CASES ?? 60);
const SEED = Number(process.env.DYLLM_FUZZ_SEED ?? Date.now() % 1_000_000);

function draw(rng: Rng, s: OptionSpec, G: number, V: number): unknown {
  const u = rng.nextFloat64();
  if (u < 0.05) return null;
  switch (s.type) {
    case 'boolean':
      return rng.nextFloat64() < 0.5;
    case 'enum':
      return s.values![Math.floor(rng.nextFloat64() * s.values!.length)];
    default: {
      const r = rangeOf(s, { arch: 'llada', vocabSize: V, maxCanvas: 64, maxCanvasWhy: '', genLength: G })!;
      const lo = r.min;
      const hi = Math.min(r.max, s.key === 'steps' ? 3 * G : s.type === 'int' ? 40 : r.max);
      const x = lo + rng.nextFloat64() * (hi - lo);
      return s.type === 'int' ? Math.max(lo, Math.round(x)) : x;
    }
  }
}

test(`option fuzz: ${CASES} seeded option sets through both families and every method never break the loop (seed ${SEED})`, async () => {
  const rng = new Rng(SEED);
  const pipes: Pipeline[] = [
    await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() }),
    await loadPipeline(fixturePath('dream-tiny'), { backend: new ReferenceBackend() }),
  ];
  let refused = 0;
  let ran = 0;
  for (let c = 0; c < CASES; c++) {
    const p = pipes[c % 2];
    const V = p.config.vocabSize;
    const G = [4, 8, 12, 16][Math.floor(rng.nextFloat64() * 4)];
    const gen: Record<string, unknown> = { genLength: G };
    for (const s of GENERATION_OPTIONS) if (s.key !== 'genLength' && rng.nextFloat64() < 0.35) gen[s.key] = draw(rng, s, G, V);
    if (gen.cfgScale !== undefined && rng.nextFloat64() < 0.7) delete gen.cfgScale;
    const acc: Record<string, unknown> = { method: ACCEL_OPTIONS[0].values![Math.floor(rng.nextFloat64() * ACCEL_OPTIONS[0].values!.length)] };
    for (const s of ACCEL_OPTIONS.slice(1)) if (rng.nextFloat64() < 0.3) acc[s.key] = draw(rng, s, G, V);
    // Prompts with the mask token inside sometimes (generate.py fills those too), one or two per request.
    const prompts = Array.from({ length: 1 + Math.floor(rng.nextFloat64() * 2) }, () =>
      Array.from({ length: 1 + Math.floor(rng.nextFloat64() * 6) }, () => (rng.nextFloat64() < 0.15 ? p.ids.mask : Math.floor(rng.nextFloat64() * V))));
    const label = `case ${c} (seed ${SEED}): ${p.config.arch} ${JSON.stringify({ gen, acc, prompts })}`;
    let options;
    let accel;
    try {
      for (const k of Object.keys(gen)) if (gen[k] === null && !GENERATION_OPTIONS.find((s) => s.key === k)!.nullable) delete gen[k];
      for (const k of Object.keys(acc)) if (acc[k] === null) delete acc[k];
      options = resolveOptions(p.config, gen as GenerateOptionsInput, p.generation);
      accel = resolveAccel(p.config, acc as AccelOptionsInput, options);
    } catch (e) {
      assert.ok(e instanceof ConfigError && !e.message.includes('\n'), `${label}: ${String(e)}`);
      refused++;
      continue;
    }
    let run: DenoiseRun;
    try {
      run = new DenoiseRun(p.model, p.ids, { prompts, options, accel });
    } catch (e) {
      // Combinations only the request reveals (a cache block that does not divide the block): refused up front.
      assert.ok(e instanceof ConfigError && !e.message.includes('\n'), `${label}: ${String(e)}`);
      refused++;
      continue;
    }
    // Once a request has started, no step may throw.
    let steps = 0;
    try {
      for (let b = run.prepare(); b; b = run.prepare()) {
        run.finish(run.forwardOwn(b), 0);
        steps++;
      }
    } catch (e) {
      assert.fail(`${label}: step ${steps} threw ${(e as Error).stack}`);
    }
    assert.ok(steps <= options.steps, `${label}: ${steps} steps > ${options.steps}`);
    const r = run.result();
    assert.equal(r.tokens.length, prompts.length);
    for (const t of r.tokens) assert.equal(t.length, options.genLength, label);
    ran++;
  }
  assert.ok(ran > CASES / 4, `only ${ran} of ${CASES} draws ran (refused ${refused})`);
});

test('the README documents no option the schema does not declare', () => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  // Option flags, the load flags (--quant), dyllm quantize's, and the queue commands' own (dyllm worker; eval, bench and
  // generate with --queue).
  const flags = new Set([...allOptions().map((s) => s.flag), ...Object.keys(LOAD_FLAGS), ...Object.keys(QUANTIZE_FLAGS), ...Object.keys(QUEUE_FLAGS),
    ...Object.keys(WORKER_FLAGS), 'input', 'output']);
  const generic = new Set(['model', 'prompt', 'prompt-ids', 'chat', 'raw', 'backend', 'json', 'help', 'port', 'tasks', 'limit', 'template', 'out',
    'fewshot', 'fewshot-file', 'batch', 'steps-per-token', 'no-parallel', 'host', 'max-batch', 'max-queue', 'max-tokens', 'max-prompt-tokens',
    'timeout-ms', 'body-limit', 'model-name', 'e2e', 'synthetic-8b', 'gen', 'layers', 'api-key', 'cors-origin', 'quiet', 'verbose', 'threads', 'version',
    'no-chat', 'stop', 'force', 'infill']);
  for (const m of readme.matchAll(/`--([a-z0-9-]+)/g)) {
    assert.ok(flags.has(m[1]) || generic.has(m[1]), `README mentions --${m[1]}, which nothing declares`);
  }
});
