/**
 * The diffusion families (src/families/) agree with what the loaders read from each model folder: the logit shift
 * with config.json's (load/config.ts shiftLogits), the end-of-turn token with the tokenizer, and every option a
 * family claims with the option schema.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GENERATION_OPTIONS } from '../../src/engine/options.js';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { allFamilies, familyOf } from '../../src/families/registry.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { fixturePath } from '../helpers/fixtures.js';

for (const name of ['llada-tiny', 'dream-tiny']) {
  test(`${name}: its family's logit rows, end of turn and prompt rule match the folder`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const f = familyOf(p.config.arch);
    assert.equal(f.arch, p.config.arch);
    for (const pos of [1, 2, 7]) assert.equal(f.logitRow(pos), p.config.shiftLogits ? pos - 1 : pos);
    assert.equal(f.logitRow(0), 0);
    assert.equal(f.needsPrompt, p.config.shiftLogits);
    assert.notEqual(p.ids.eot, null);
    assert.equal(p.tokenizer.idToToken(p.ids.eot!), f.turnEndToken);
  });
}

test('every option a family claims is a declared generation option, and no two families claim the same one', () => {
  const keys = new Set(GENERATION_OPTIONS.map((s) => s.key));
  const seen = new Set<string>();
  for (const f of allFamilies()) {
    for (const k of [...f.options, ...Object.keys(f.generationConfig)]) assert.ok(keys.has(k), `${f.label}: ${k} is not a generation option`);
    for (const k of f.options) {
      assert.ok(!seen.has(k), `${k} is claimed by two families`);
      seen.add(k);
    }
  }
});
