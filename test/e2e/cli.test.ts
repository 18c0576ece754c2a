/** The dyllm command as a user runs it: JSON output, exit codes, one-line errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fixturePath, readJsonFixture } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';
import { NATIVE_SPEED, nativeStatus, needsNative } from '../helpers/native.js';

const bin = join(repoRoot, 'bin', 'dyllm.js');
function dyllm(...args: string[]) {
  return dyllmEnv({}, ...args);
}

function dyllmEnv(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('generate --json prints exactly one JSON object with the reference tokens', () => {
  const fx = readJsonFixture<{ cases: { name: string; prompt_ids: number[][]; generated: number[][] }[] }>('llada-tiny', 'generate.json');
  const c = fx.cases.find((x) => x.name === 'single_block')!;
  const r = dyllm('generate', '--model', fixturePath('llada-tiny'), '--prompt-ids', c.prompt_ids[0].join(','), '--gen-length', '16', '--steps', '16', '--backend', 'reference', '--json');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const out = JSON.parse(lines[0]);
  assert.deepEqual(out.tokens, c.generated[0]);
  assert.equal(typeof out.text, 'string');
  for (const k of ['steps', 'nfe', 'elapsed_ms', 'tokens_per_s']) assert.equal(typeof out.stats[k], 'number', k);
  assert.equal(out.stats.steps, 16);
});

test('generate --accel dyllm --json reports the telemetry', () => {
  const r = dyllm('generate', '--model', fixturePath('dream-tiny'), '--prompt-ids', '5,6,7,8,9', '--gen-length', '24', '--steps', '24', '--alg', 'entropy', '--accel', 'dyllm', '--threshold', '0.9', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout).stats;
  assert.equal(s.accel, 'dyllm');
  assert.ok(s.salient_fraction > 0 && s.salient_fraction < 1);
  assert.equal(s.salient_rows_per_layer.length, 2);
  assert.equal(s.cache_bytes_per_token, 2 * (2 * 2 * 16 + 64 + 64 + 4 + 64) * 4); // K, V, C, F, lse and the kept o_proj outputs
});

test('the bundled model answers a question with a worked answer (chat template by default)', needsNative(NATIVE_SPEED), () => {
  const r = dyllm('generate', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /12\+7=19\. #### 19/);
  const chat = dyllm('generate', '--chat', '--json', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  const dflt = dyllm('generate', '--json', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  const raw = dyllm('generate', '--raw', '--json', 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?');
  assert.deepEqual(JSON.parse(dflt.stdout).tokens, JSON.parse(chat.stdout).tokens);
  assert.notDeepEqual(JSON.parse(raw.stdout).tokens, JSON.parse(chat.stdout).tokens);
});

test('wrong flags and values exit 2 with one line', () => {
  for (const args of [
    ['generate', '--steps', 'abc', 'x'],
    ['generate', '--bogus', 'x'],
    ['generate', 'a', 'b'],
    ['generate'],
    ['generate', '--prompt-ids', '1,x'],
    ['generate', '--chat', '--raw', 'x'],
    ['generate', '--model', fixturePath('llada-tiny'), '--gen-length', '16', '--block-length', '5', 'x'],
    ['frobnicate'],
  ]) {
    const r = dyllm(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    // Without the native addon a command that loads the model before it fails also prints the fallback warning
    // (its own test is below); the error itself is still one line.
    const fallback = nativeStatus().reason !== null ? /^dyllm: warning: native kernels unavailable / : null;
    assert.equal(r.stderr.trim().split('\n').filter((l) => !fallback?.test(l)).length, 1, r.stderr);
    assert.match(r.stderr, /^dyllm: /);
    assert.equal(r.stdout, '');
  }
});

test('an unusable model folder exits 1 naming the reason', () => {
  const r = dyllm('generate', '--model', '/nonexistent/folder', 'hi');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dyllm: error: \/nonexistent\/folder: expected a model folder, a bundled model name \(dyllm-demo\) or a Hugging Face id org\/name\[@revision\], found no such folder\n$/);
  const r2 = dyllm('generate', '--model', join(repoRoot, 'test'), 'hi');
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /config\.json/);
});

test('without the native addon the engine falls back to the reference backend with one warning line', () => {
  const r = dyllmEnv({ DYLLM_NATIVE: 'off' }, 'generate', '--model', fixturePath('llada-tiny'), '--prompt-ids', '5,6,7', '--gen-length', '4', '--steps', '4', '--json');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^dyllm: warning: native kernels unavailable \(disabled by DYLLM_NATIVE=off\); using the slow TypeScript reference backend$/);
  assert.equal(JSON.parse(r.stdout).stats.backend, 'reference');
  const forced = dyllmEnv({ DYLLM_NATIVE: 'off' }, 'generate', '--model', fixturePath('llada-tiny'), '--prompt-ids', '5,6,7', '--backend', 'native');
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /^dyllm: error: native kernels unavailable \(disabled by DYLLM_NATIVE=off\)/);
});
