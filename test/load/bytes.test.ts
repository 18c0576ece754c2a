/**
 * The byte-source loader (load/bytes.ts, engine/pipeline.ts loadPipelineFromBytes): a model loaded from its files'
 * bytes is the model loaded from its folder (same logits, same greedy tokens, dense and DyLLM), sharded checkpoints
 * included, and a bad file is refused with the folder loader's message, naming `<name>/<file>`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { filesFromBytes, MODEL_FILE_NAMES } from '../../src/load/bytes.js';
import { loadConfig } from '../../src/load/config.js';
import { LoadError } from '../../src/load/errors.js';
import { encodePrompt, loadPipeline, loadPipelineFromBytes } from '../../src/engine/pipeline.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { paddedBatch } from '../../src/models/types.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';
import { runGeneration } from '../helpers/run-generation.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');

/** Every file of a folder the loaders read (and the shards an index lists), as bytes. */
function bytesOf(dir: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir)) {
    if (MODEL_FILE_NAMES.includes(f) || f.endsWith('.safetensors')) out.set(f, new Uint8Array(readFileSync(join(dir, f))));
  }
  return out;
}

function loadError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof LoadError, `a LoadError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected a LoadError');
}

test('the demo model from bytes gives the folder model\'s logits and greedy tokens (dense and DyLLM)', async () => {
  const backend = new ReferenceBackend();
  const a = await loadPipeline(DEMO, { backend });
  const b = await loadPipelineFromBytes('dyllm-demo', bytesOf(DEMO), { backend });
  assert.deepEqual(b.config, a.config);
  assert.deepEqual(b.ids, a.ids);
  const prompt = encodePrompt(a, 'What is 3 + 4?', true);
  assert.deepEqual(encodePrompt(b, 'What is 3 + 4?', true), prompt);
  const tokens = Int32Array.from([...prompt, ...Array<number>(8).fill(a.ids.mask)]);
  const la = a.model.forward(paddedBatch(tokens, 1, tokens.length));
  const lb = b.model.forward(paddedBatch(tokens, 1, tokens.length));
  assert.deepEqual(lb, la);
  for (const accel of [undefined, { method: 'dyllm', threshold: 0.99 }] as const) {
    const gen = { genLength: 8, steps: 8, blockLength: 8, temperature: 0 };
    const ra = runGeneration(a, [prompt], gen, accel);
    const rb = runGeneration(b, [prompt], gen, accel);
    assert.deepEqual(rb.tokens, ra.tokens, `tokens (${accel?.method ?? 'dense'})`);
  }
});

test('a sharded checkpoint loads from bytes as from its folder', async () => {
  for (const fixture of ['llada-tiny-f32-sharded', 'dream-tiny-f32-sharded']) {
    const dir = fixturePath(fixture);
    const backend = new ReferenceBackend();
    const a = await loadPipeline(dir, { backend });
    const b = await loadPipelineFromBytes(fixture, bytesOf(dir), { backend });
    const tokens = Int32Array.from([1, 2, 3, a.ids.mask, a.ids.mask]);
    assert.deepEqual(b.model.forward(paddedBatch(tokens, 1, 5)), a.model.forward(paddedBatch(tokens, 1, 5)), fixture);
  }
});

test('bad files from bytes are refused with the folder loader\'s messages', async () => {
  const files = bytesOf(DEMO);
  const enc = new TextEncoder();
  // An oversized config.json: the same limit and words as on disk.
  const big = new Map(files).set('config.json', new Uint8Array(1024 * 1024 + 1));
  assert.equal(loadError(() => loadConfig('m', filesFromBytes('m', big))),
    'm/config.json: expected a JSON config file of at most 1 MiB (1048576 bytes), found 1048577 bytes (far larger than any real file of its kind; check the file)');
  // No config.json at all.
  const none = new Map(files);
  none.delete('config.json');
  assert.match(loadError(() => loadConfig('m', filesFromBytes('m', none))), /^m\/config\.json: expected a JSON config file \(a regular file\), found no such file/);
  // A truncated safetensors file: the header length checks of safetensors.ts.
  const trunc = new Map(files).set('model.safetensors', files.get('model.safetensors')!.subarray(0, 100));
  await assert.rejects(loadPipelineFromBytes('m', trunc, { backend: new ReferenceBackend() }), (e: Error) => {
    assert.ok(e instanceof LoadError);
    assert.match(e.message, /^m\/model\.safetensors: expected a header length ≤ 92 B .*found \d+ B/);
    return true;
  });
  // Neither checkpoint file.
  const noWeights = new Map(files);
  noWeights.delete('model.safetensors');
  await assert.rejects(loadPipelineFromBytes('m', noWeights, { backend: new ReferenceBackend() }), /^LoadError: m: expected model\.safetensors or model\.safetensors\.index\.json, found neither|m: expected model\.safetensors or model\.safetensors\.index\.json, found neither/);
  // Unparseable tokenizer.json.
  const badTok = new Map(files).set('tokenizer.json', enc.encode('{'));
  await assert.rejects(loadPipelineFromBytes('m', badTok, { backend: new ReferenceBackend() }), /m\/tokenizer\.json: expected valid JSON, found unparseable JSON/);
});
