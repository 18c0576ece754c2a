/**
 * A tokenizer.json whose normalizer or pre-tokenizer Regex backtracks catastrophically (load/tokenizer-probe.ts) is
 * refused at load with one LoadError line naming the file, the patterns and the fix, within the time limit: by
 * loadTokenizer (the library, the server's workers) and by the CLI (`dyllm generate`), which would otherwise hang
 * encoding the prompt. Real patterns (Qwen2's, the bundled model's) still load. The hostile folder is the bundled
 * model's, with a pattern and a place (pre-tokenizer Split, normalizer Replace) drawn from a seeded generator:
 * DYLLM_FUZZ_SEED=<seed> replays a run (the seed is printed).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QWEN2_PRETOKENIZE_REGEX_JS, loadTokenizer } from '../../src/load/tokenizer.js';
import { probeTokenizerPatterns, probeTexts, regexPatterns, tokenizerTimeoutMs } from '../../src/load/tokenizer-probe.js';
import { LoadError } from '../../src/load/errors.js';
import { mulberry32 } from '../helpers/kernel-suite.js';
import { repoRoot } from '../helpers/paths.js';

const SEED = Number(process.env.DYLLM_FUZZ_SEED ?? Date.now() % 1_000_000);
const rnd = mulberry32(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const BIN = join(repoRoot, 'bin', 'dyllm.js');
/** Short, so the test is quick; each hostile pattern would run for hours. */
const LIMIT_MS = 1000;

/** Patterns with nested quantifiers: each takes exponential time on one of the probe texts. */
const CATASTROPHIC = ['(a+)+$', '([a-z]+)*\\d$', '(\\w+\\s?)*$', '(\\d+)*[a-z]$', '(\\s+)+x', '(.*a){20}$', '(é|\\p{L})+!x'];

type Place = 'split' | 'replace';
function hostileTokenizer(pattern: string, place: Place): Record<string, unknown> {
  const t = JSON.parse(readFileSync(join(DEMO, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  if (place === 'split') {
    t.pre_tokenizer = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    };
  } else {
    t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: pattern }, content: ' ' }] };
  }
  return t;
}

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
/** The bundled model folder in a temp dir, its tokenizer.json replaced. */
function folderWith(tokenizer: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-redos-'));
  dirs.push(dir);
  for (const f of readdirSync(DEMO)) copyFileSync(join(DEMO, f), join(dir, f));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  return dir;
}

const message = (file: string, pattern: string) =>
  `${file}: expected normalizer and pre-tokenizer patterns that encode text in linear time (each 4096-character probe run within ${LIMIT_MS} ms), ` +
  `found encoding the probe texts did not finish within ${LIMIT_MS} ms with the Regex patterns ${JSON.stringify(pattern)} ` +
  '(a pattern with nested quantifiers such as (a+)+ backtracks catastrophically: fix it, or raise DYLLM_TOKENIZER_TIMEOUT_MS on a slow machine)';

test(`a catastrophic pattern is refused at load within the limit, one line naming the file and the fix (seed ${SEED})`, { timeout: 120_000 }, async (t) => {
  t.diagnostic(`seed ${SEED}: replay with DYLLM_FUZZ_SEED=${SEED}`);
  const pattern = pick(CATASTROPHIC);
  const place = pick(['split', 'replace'] as const);
  t.diagnostic(`pattern ${JSON.stringify(pattern)} as a ${place}`);
  const dir = folderWith(hostileTokenizer(pattern, place));
  const file = join(dir, 'tokenizer.json');
  const saved = process.env.DYLLM_TOKENIZER_TIMEOUT_MS;
  process.env.DYLLM_TOKENIZER_TIMEOUT_MS = String(LIMIT_MS);
  const t0 = performance.now();
  try {
    await assert.rejects(loadTokenizer(dir), (e: unknown) => {
      assert.ok(e instanceof LoadError);
      assert.equal(e.message, message(file, pattern));
      return true;
    });
  } finally {
    if (saved === undefined) delete process.env.DYLLM_TOKENIZER_TIMEOUT_MS;
    else process.env.DYLLM_TOKENIZER_TIMEOUT_MS = saved;
  }
  // The limit plus a helper thread's start, with a wide margin for a loaded machine (never hours).
  assert.ok(performance.now() - t0 < 30_000);
});

test(`CLI: dyllm generate with a catastrophic split pattern ends with one line and exit 1, not a hang (seed ${SEED})`, { timeout: 120_000 }, (t) => {
  const pattern = pick(CATASTROPHIC);
  t.diagnostic(`pattern ${JSON.stringify(pattern)}`);
  const dir = folderWith(hostileTokenizer(pattern, 'split'));
  const r = spawnSync(process.execPath, [BIN, 'generate', '--model', dir, '--gen-length', '8', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, DYLLM_TOKENIZER_TIMEOUT_MS: String(LIMIT_MS) },
  });
  assert.equal(r.signal, null, 'the CLI hung until the test killed it');
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `dyllm: error: ${message(join(dir, 'tokenizer.json'), pattern)}\n`);
  assert.equal(r.status, 1);
});

test('real patterns pass the probe: Qwen2\'s split regex, a Replace normalizer, the bundled model (no patterns: no probe)', { timeout: 60_000 }, async () => {
  const qwen = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_PRETOKENIZE_REGEX_JS }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] };
  await probeTokenizerPatterns('x/tokenizer.json', { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }, qwen, [], 10_000);
  assert.deepEqual(regexPatterns(qwen), [QWEN2_PRETOKENIZE_REGEX_JS]);
  const dir = folderWith(hostileTokenizer(QWEN2_PRETOKENIZE_REGEX_JS, 'split'));
  const tok = await loadTokenizer(dir);
  assert.ok(tok.encode('Hello world, 12 apples').length > 0);
  // The probe texts are what the message says they are.
  assert.ok(probeTexts().every((s) => s.length <= 4096 + 2));
});

test('DYLLM_TOKENIZER_TIMEOUT_MS is checked', () => {
  assert.equal(tokenizerTimeoutMs({}), 5000);
  assert.equal(tokenizerTimeoutMs({ DYLLM_TOKENIZER_TIMEOUT_MS: '250' }), 250);
  assert.throws(() => tokenizerTimeoutMs({ DYLLM_TOKENIZER_TIMEOUT_MS: '0' }), {
    message: 'DYLLM_TOKENIZER_TIMEOUT_MS: expected an integer number of milliseconds in [1, 60000], found "0"',
  });
});
