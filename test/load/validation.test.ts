/**
 * What the loader checks before a model is used: special token ids inside the embedding, generation_config.json's
 * values (type and range, naming the file and the key), and a tokenizer that fits the model. Each refusal is one
 * exact LoadError line; the same values are accepted at load exactly when the engine accepts them per request.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/load/config.js';
import { LoadError } from '../../src/load/errors.js';
import { encodePrompt, loadPipeline } from '../../src/engine/pipeline.js';
import { resolveOptions } from '../../src/engine/options.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { ChatTemplateError } from '../../src/load/chat-template.js';
import { fixturePath } from '../helpers/fixtures.js';

const made: string[] = [];
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

type Json = Record<string, unknown>;

/** A copy of a fixture folder with some files rewritten. */
function folder(fixture: string, edit: Record<string, (j: Json) => void> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-val-'));
  made.push(dir);
  cpSync(fixturePath(fixture), dir, { recursive: true });
  for (const [file, f] of Object.entries(edit)) {
    const p = join(dir, file);
    let j: Json = {};
    try {
      j = JSON.parse(readFileSync(p, 'utf8')) as Json;
    } catch {
      /* a new file */
    }
    f(j);
    writeFileSync(p, JSON.stringify(j));
  }
  return dir;
}

function refusedExactly(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof LoadError, String(e));
    assert.equal(e.message, message);
    return true;
  });
}

async function rejectsExactly(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LoadError, String(e));
    assert.equal(e.message, message);
    return true;
  });
}

test('config.json special ids must be rows of the embedding, named by key', () => {
  for (const key of ['mask_token_id', 'eos_token_id', 'pad_token_id', 'bos_token_id']) {
    for (const bad of [384, -1, 1.5, '297']) {
      // LLaDA's generation_config.json sets bos/eos itself, so clear it to reach config.json's.
      const dir = folder('llada-tiny', { 'config.json': (c) => { c[key] = bad; }, 'generation_config.json': (g) => { delete g.eos_token_id; delete g.bos_token_id; } });
      refusedExactly(() => loadConfig(dir), `${join(dir, 'config.json')}: "${key}": expected a token id: an integer in [0, 384) (the model's embedding rows: embedding_size), found ${JSON.stringify(bad)}`);
    }
  }
  const dream = folder('dream-tiny', { 'config.json': (c) => { c.mask_token_id = 352; } });
  refusedExactly(() => loadConfig(dream), `${join(dream, 'config.json')}: "mask_token_id": expected a token id: an integer in [0, 352) (the model's embedding rows: vocab_size), found 352`);
});

test('generation_config.json ids override config.json and are checked there', () => {
  const dir = folder('llada-tiny', { 'generation_config.json': (g) => { g.eos_token_id = 100000; } });
  refusedExactly(() => loadConfig(dir), `${join(dir, 'generation_config.json')}: "eos_token_id": expected a token id: an integer in [0, 384) (the model's embedding rows: embedding_size), found 100000`);
  const list = folder('dream-tiny', { 'generation_config.json': (g) => { g.eos_token_id = [296, 300]; } });
  refusedExactly(
    () => loadConfig(list),
    `${join(list, 'generation_config.json')}: "eos_token_id": expected a token id: an integer in [0, 352) (the model's embedding rows: vocab_size), found [296,300] (a list of ids is not supported here; give one id)`,
  );
  const ok = folder('llada-tiny', { 'generation_config.json': (g) => { g.eos_token_id = 300; g.mask_token_id = null; } });
  assert.equal(loadConfig(ok).config.eosTokenId, 300);
});

test('generation_config.json values are type- and range-checked at load, naming the file and key', () => {
  const cases: [string, string, unknown, string][] = [
    // [fixture, key, value, expected …]
    ['llada-tiny', 'max_new_tokens', 1e9, "an integer in [1, 4096] (the model's max_sequence_length)"],
    ['llada-tiny', 'max_new_tokens', 0, "an integer in [1, 4096] (the model's max_sequence_length)"],
    ['llada-tiny', 'steps', '64', "an integer in [1, 4096] (the model's max_sequence_length)"],
    ['llada-tiny', 'block_length', 2.5, "an integer in [1, 4096] (the model's max_sequence_length)"],
    ['dream-tiny', 'max_new_tokens', 131073, "an integer in [1, 131072] (the model's max_position_embeddings)"],
    ['dream-tiny', 'steps', -512, "an integer in [1, 131072] (the model's max_position_embeddings)"],
    ['dream-tiny', 'temperature', -0.1, 'a number in [0, 100]'],
    ['dream-tiny', 'temperature', 'hot', 'a number in [0, 100]'],
    ['dream-tiny', 'top_p', 0, 'a number in (0, 1]'],
    ['dream-tiny', 'top_p', 1.01, 'a number in (0, 1]'],
    ['dream-tiny', 'top_k', 0, "an integer in [1, 352] (the model's vocabulary size)"],
    ['dream-tiny', 'top_k', 353, "an integer in [1, 352] (the model's vocabulary size)"],
    ['dream-tiny', 'eps', 0.6, 'a number in [0, 0.5]'],
    ['dream-tiny', 'alg', 'greedy', 'one of origin, maskgit_plus, topk_margin, entropy'],
    ['dream-tiny', 'alg_temp', -1, 'a number in [0, 100]'],
    ['llada-tiny', 'temperature', [], 'a number in [0, 100]'],
  ];
  for (const [fixture, key, value, expected] of cases) {
    const dir = folder(fixture, { 'generation_config.json': (g) => { g[key] = value; } });
    refusedExactly(() => loadConfig(dir), `${join(dir, 'generation_config.json')}: "${key}": expected ${expected}, found ${JSON.stringify(value)}`);
  }
  // null is "unset", as in transformers; a valid upstream-style file loads.
  const ok = folder('dream-tiny', { 'generation_config.json': (g) => Object.assign(g, { top_p: null, top_k: null, alg_temp: null, alg: 'entropy', max_new_tokens: 256, steps: 512 }) });
  assert.equal(loadConfig(ok).generation.alg, 'entropy');
});

test('LLaDA: block_length and steps must fit max_new_tokens when the file sets it', () => {
  const file = (dir: string) => join(dir, 'generation_config.json');
  const a = folder('llada-tiny', { 'generation_config.json': (g) => Object.assign(g, { max_new_tokens: 64, block_length: 24 }) });
  refusedExactly(() => loadConfig(a), `${file(a)}: "block_length": expected a divisor of "max_new_tokens" (64), found 24`);
  const b = folder('llada-tiny', { 'generation_config.json': (g) => Object.assign(g, { max_new_tokens: 64, block_length: 16, steps: 6 }) });
  refusedExactly(() => loadConfig(b), `${file(b)}: "steps": expected a multiple of the number of blocks (4 = max_new_tokens / block_length) and at most "max_new_tokens" (64), found 6`);
  const c = folder('llada-tiny', { 'generation_config.json': (g) => Object.assign(g, { max_new_tokens: 64, steps: 128 }) });
  refusedExactly(() => loadConfig(c), `${file(c)}: "steps": expected a multiple of the number of blocks (1 = max_new_tokens / block_length) and at most "max_new_tokens" (64), found 128`);
  const ok = folder('llada-tiny', { 'generation_config.json': (g) => Object.assign(g, { max_new_tokens: 64, block_length: 16, steps: 32 }) });
  const { config, generation } = loadConfig(ok);
  const o = resolveOptions(config, {}, generation);
  assert.deepEqual([o.genLength, o.blockLength, o.steps], [64, 16, 32]);
});

test('load-time and request-time checks of generation_config.json agree', () => {
  // Values on both sides of every bound the two share: accepted at load exactly when the engine accepts them.
  const values: Record<string, unknown[]> = {
    temperature: [0, 0.7, 100, 100.5, -1e-9, 'x', true],
    top_p: [1e-9, 0.95, 1, 0, 1.5, null],
    top_k: [1, 352, 353, 0, 2.5, null],
    eps: [0, 1e-3, 0.5, 0.51, -0.1],
    alg: ['origin', 'maskgit_plus', 'topk_margin', 'entropy', 'Origin', 3],
    alg_temp: [0, 1, 100, 101, null],
    max_new_tokens: [1, 64, 131072, 131073, 0],
  };
  const base = loadConfig(fixturePath('dream-tiny'));
  for (const [key, vs] of Object.entries(values)) {
    for (const v of vs) {
      const gen = { ...base.generation, [key]: v };
      const dir = folder('dream-tiny', { 'generation_config.json': (g) => Object.assign(g, gen) });
      let atLoad = true;
      try {
        loadConfig(dir);
      } catch (e) {
        assert.ok(e instanceof LoadError, String(e));
        atLoad = false;
      }
      let atRequest = true;
      try {
        // The request-time canvas cap is raised to the model's own limit: load checks against that.
        resolveOptions(base.config, {}, gen, { maxCanvas: base.config.maxSequenceLength });
      } catch {
        atRequest = false;
      }
      assert.equal(atLoad, atRequest, `${key} = ${JSON.stringify(v)}: load ${atLoad}, request ${atRequest}`);
    }
  }
});

test('a default under the model limit but over the canvas cap still loads, and is refused per request', async () => {
  const dir = folder('dream-tiny', { 'generation_config.json': (g) => { g.max_new_tokens = 100_000; } });
  const p = await loadPipeline(dir, { backend: new ReferenceBackend() });
  assert.throws(() => resolveOptions(p.config, {}, p.generation), /^ConfigError: generation_config\.json "max_new_tokens": expected an integer in \[1, 8192\]/);
});

test('the tokenizer must fit the model: size, special ids, template tokens', async () => {
  // 12 added tokens past the embedding's 384 rows.
  const big = folder('llada-tiny', {
    'tokenizer.json': (t) => {
      const added = t.added_tokens as Json[];
      for (let i = 0; i < 90; i++) added.push({ id: 313 + i, content: `<|extra_${i}|>`, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    },
  });
  await rejectsExactly(
    loadPipeline(big, { backend: new ReferenceBackend() }),
    `${join(big, 'tokenizer.json')}: expected a tokenizer with at most 384 ids (the model's embedding rows, embedding_size in ${join(big, 'config.json')}), found 403 ids (largest id 402) (the tokenizer belongs to a different model)`,
  );
  // An id past 2^32 - 2 is not an array index: it must still count.
  const huge = folder('dream-tiny', { 'tokenizer.json': (t) => { (t.added_tokens as Json[]).push({ id: 2 ** 53 - 1, content: '<|huge|>', special: true }); } });
  await rejectsExactly(
    loadPipeline(huge, { backend: new ReferenceBackend() }),
    `${join(huge, 'tokenizer.json')}: expected a tokenizer with at most 352 ids (the model's embedding rows, vocab_size in ${join(huge, 'config.json')}), found 9007199254740992 ids (largest id 9007199254740991) (the tokenizer belongs to a different model)`,
  );
  // An id inside the embedding that names no token (the tokenizer has 313 ids, the embedding 384 rows).
  const hole = folder('llada-tiny', { 'config.json': (c) => { c.pad_token_id = 350; } });
  await rejectsExactly(
    loadPipeline(hole, { backend: new ReferenceBackend() }),
    `${join(hole, 'config.json')}: "pad_token_id": expected the id of a token of the tokenizer (${join(hole, 'tokenizer.json')}), found 350, which names no token (tokenizer and config disagree)`,
  );
  const genHole = folder('llada-tiny', { 'generation_config.json': (g) => { g.eos_token_id = 360; } });
  await rejectsExactly(
    loadPipeline(genHole, { backend: new ReferenceBackend() }),
    `${join(genHole, 'generation_config.json')}: "eos_token_id": expected the id of a token of the tokenizer (${join(genHole, 'tokenizer.json')}), found 360, which names no token (tokenizer and config disagree)`,
  );
  const strangeBos = folder('dream-tiny', { 'tokenizer_config.json': (c) => { c.bos_token = '<|no-such-token|>'; } });
  await rejectsExactly(
    loadPipeline(strangeBos, { backend: new ReferenceBackend() }),
    `${join(strangeBos, 'tokenizer_config.json')}: "bos_token": expected a token of the tokenizer (the chat template inserts it as bos_token), found "<|no-such-token|>", which the tokenizer does not know (it would be encoded as plain text)`,
  );
});

test('a template that runs away on one request fails that request only', { timeout: 60_000 }, async () => {
  const tpl = "{% for m in messages %}{% if m.content == 'loop' %}{% for i in range(100000000) %}{% endfor %}{% endif %}{{ m.content }}{% endfor %}";
  const dir = folder('llada-tiny', { 'tokenizer_config.json': (c) => { c.chat_template = tpl; } });
  const p = await loadPipeline(dir, { backend: new ReferenceBackend(), templateLimits: { timeoutMs: 200 } });
  assert.throws(() => encodePrompt(p, 'loop', true), (e: unknown) => {
    assert.ok(e instanceof ChatTemplateError && e.reason === 'timeout', String(e));
    assert.equal(e.message.split(':')[0], join(dir, 'tokenizer_config.json (chat_template)').split(':')[0]);
    assert.ok(e.message.includes('expected a template that renders within 200 ms'), e.message);
    return true;
  });
  assert.deepEqual(encodePrompt(p, 'Hi', true), p.tokenizer.encode('Hi'));
});

test('a model argument that is a file, a FIFO or a device is refused as a folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-val-'));
  made.push(dir);
  const file = join(dir, 'model.json');
  writeFileSync(file, '{}');
  await rejectsExactly(loadPipeline(file), `${file}: expected a model folder, found a file that is not a folder (point at the folder that holds config.json)`);
  await rejectsExactly(loadPipeline('/dev/zero'), '/dev/zero: expected a model folder, found a file that is not a folder (point at the folder that holds config.json)');
  const fifo = join(dir, 'fifo');
  if (spawnSync('mkfifo', [fifo]).status === 0) {
    await rejectsExactly(loadPipeline(fifo), `${fifo}: expected a model folder, found a file that is not a folder (point at the folder that holds config.json)`);
  }
});
