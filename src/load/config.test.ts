import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from './config.js';
import { LoadError } from './errors.js';
import { upstreamDream, upstreamLlada } from '../../test/helpers/paths.js';

function withConfig(edit: (c: Record<string, unknown>) => void, from = upstreamLlada): string {
  const d = mkdtempSync(join(tmpdir(), 'dyllm-cfg-'));
  const c = JSON.parse(readFileSync(join(from, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  return d;
}

test('the real LLaDA-8B-Instruct config parses into the documented shape', () => {
  const { config: c, generation } = loadConfig(upstreamLlada);
  assert.equal(c.arch, 'llada');
  assert.deepEqual(
    [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize],
    [4096, 32, 32, 32, 128, 12288, 126464],
  );
  assert.equal(c.ropeTheta, 500000);
  assert.equal(c.rmsNormEps, 1e-5);
  assert.equal(c.maskTokenId, 126336);
  assert.equal(c.eosTokenId, 126081);
  assert.equal(c.bosTokenId, 126080);
  assert.equal(c.qkvBias, false);
  assert.equal(c.shiftLogits, false);
  assert.equal(generation.bos_token_id, 126080);
  assert.ok(Object.isFrozen(c));
});

test('the real Dream-v0-Instruct-7B config parses into the documented shape', () => {
  const { config: c } = loadConfig(upstreamDream);
  assert.equal(c.arch, 'dream');
  assert.deepEqual(
    [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.kvGroups, c.intermediateSize, c.vocabSize],
    [3584, 28, 28, 4, 128, 7, 18944, 152064],
  );
  assert.equal(c.ropeTheta, 1e6);
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.maskTokenId, 151666);
  assert.equal(c.eosTokenId, 151643);
  assert.equal(c.qkvBias, true);
  assert.equal(c.shiftLogits, true);
});

function expectLoadError(dir: string, ...parts: string[]) {
  assert.throws(() => loadConfig(dir), (e: unknown) => {
    assert.ok(e instanceof LoadError, String(e));
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  });
}

test('an unknown model_type is refused naming the supported ones', () => {
  expectLoadError(withConfig((c) => { c.model_type = 'llama'; }), 'config.json', 'model_type "llada" or "Dream"', '"llama"');
});

test('a missing key is named', () => {
  expectLoadError(withConfig((c) => { delete c.d_model; }), 'config.json', '"d_model"', 'missing');
  expectLoadError(withConfig((c) => { delete c.mask_token_id; }, upstreamDream), '"mask_token_id"', 'missing');
});

test('an unsupported architecture switch is refused with its value', () => {
  expectLoadError(withConfig((c) => { c.alibi = true; }), '"alibi"', 'true');
  expectLoadError(withConfig((c) => { c.rope_scaling = { type: 'yarn' }; }, upstreamDream), '"rope_scaling"', 'yarn');
});

test('inconsistent sizes are refused', () => {
  expectLoadError(withConfig((c) => { c.n_heads = 30; }), 'divisible');
  expectLoadError(withConfig((c) => { c.mask_token_id = 999999; }), 'mask_token_id', '999999');
});

test('a missing folder or config.json is named', () => {
  expectLoadError('/nonexistent/model', '/nonexistent/model', 'no such folder');
  expectLoadError(mkdtempSync(join(tmpdir(), 'dyllm-cfg-')), 'config.json', 'no such file');
});
