/**
 * The dense forward on WebGPU tensors (src/models/forward/gpu.ts) in headless Chromium on SwiftShader: on the test
 * checkpoints (LLaDA and Dream tiny, bf16 weights uploaded as bf16), one step's logits equal the reference backend's
 * dense forward within the f32 bound of docs/webgpu.md, with and without padding, for every row and for a subset of
 * rows (the LM head only for those); the statistics-only step gives the reference's argmax and probabilities within
 * the logitStats bounds; a bad token id is refused with the host forward's message before anything runs. DyLLM on
 * the GPU (src/models/forward/gpu-planned.ts) picks the host planned forward's salient sets in every layer of every
 * step of a generation, with its logits within the same bound, and all-salient DyLLM on the GPU ≡ the GPU's dense
 * forward.
 *
 * The page (test/webgpu/forward-page.ts) builds the model from the host weights this test loads and sends
 * (test/helpers/model-transfer.ts). Nothing is skipped: a Chromium that cannot launch or a missing adapter fails.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipeline, type Pipeline } from '../src/engine/pipeline.js';
import { resolveOptions, type GenerateOptionsInput } from '../src/engine/options.js';
import { resolveAccel } from '../src/engine/accel.js';
import { HostWeightsBackend } from '../src/kernels/webgpu/host-weights.js';
import { Transformer } from '../src/models/transformer.js';
import { fixturePath } from './helpers/fixtures.js';
import { modelToJson } from './helpers/model-transfer.js';
import { openWebGpuPage, type WebGpuPage } from './helpers/webgpu-page.js';
import type { BatchJson, ForwardPageApi } from './webgpu/forward-page.js';

/** docs/webgpu.md: the f32 paths' bound (max|Δ| / max|ref|), held by the whole step. */
const F32_TOL = 1e-5;
/** WEBGPU_TOLERANCES of the logit statistics, loosened by the logits' own f32 difference (p is within ~V·1e-6). */
const P_TOL = 1e-5;

let gpu: WebGpuPage<ForwardPageApi> | undefined;
let openError: Error | undefined;
const pipelines = new Map<string, Pipeline>();

before(async () => {
  try {
    gpu = await openWebGpuPage<ForwardPageApi>(60_000, '/test/webgpu/forward-page.js', 'dyllmGpuForward');
    await gpu.call('open');
    for (const name of ['llada-tiny', 'dream-tiny']) {
      const be = new HostWeightsBackend(false);
      const p = await loadPipeline(fixturePath(name), { backend: be });
      assert.ok(p.model instanceof Transformer);
      pipelines.set(name, p);
      await gpu.call('load', name, modelToJson(p.model, be));
    }
  } catch (e) {
    openError = e as Error;
  }
});

after(async () => {
  await gpu?.close();
});

function page(): WebGpuPage<ForwardPageApi> {
  if (!gpu) throw openError ?? new Error('the WebGPU forward page is not open');
  return gpu;
}

const PROMPT = [12, 40, 41, 42, 7, 99, 3, 5, 6, 7, 8, 9];

/** Two sequences: an unpadded one and one left-padded by 4 (attention mask 0 there). */
function padded(pad: number): BatchJson {
  const a = PROMPT.slice(0, 8);
  const b = [pad, pad, pad, pad, ...PROMPT.slice(4, 8)];
  return { tokens: [...a, ...b], seqStart: [0, 8, 16], mask: [...a.map(() => 1), 0, 0, 0, 0, 1, 1, 1, 1], logitRows: null };
}

for (const [name, pad] of [['llada-tiny', 297], ['dream-tiny', 296]] as const) {
  test(`${name}: GPU logits equal the reference dense forward (one sequence, every row)`, { timeout: 300_000 }, async (t) => {
    const r = await page().call('compare', name, { tokens: PROMPT, seqStart: [0, PROMPT.length], mask: null, logitRows: null }, null);
    t.diagnostic(`max|Δ|/max|ref| = ${r.relErr.toExponential(2)}`);
    assert.equal(r.rows, PROMPT.length);
    assert.ok(r.relErr <= F32_TOL, `max|Δ|/max|ref| = ${r.relErr}`);
    assert.deepEqual(page().errors, []);
  });

  test(`${name}: with padding (two sequences, one left-padded), and the LM head for some rows only`, { timeout: 300_000 }, async (t) => {
    const all = await page().call('compare', name, padded(pad), null);
    assert.equal(all.rows, 16);
    assert.ok(all.relErr <= F32_TOL, `every row: ${all.relErr}`);
    const some = await page().call('compare', name, { ...padded(pad), logitRows: [15, 2, 9, 7] }, null);
    assert.equal(some.rows, 4);
    assert.ok(some.relErr <= F32_TOL, `rows 15, 2, 9, 7: ${some.relErr}`);
    t.diagnostic(`max|Δ|/max|ref|: every row ${all.relErr.toExponential(2)}, rows 15, 2, 9, 7 ${some.relErr.toExponential(2)}`);
  });

  test(`${name}: the statistics-only step gives the reference's argmax, p1, p2 and entropy`, { timeout: 300_000 }, async (t) => {
    for (const entropy of [false, true]) {
      const r = await page().call('compare', name, { ...padded(pad), logitRows: [3, 4, 5, 12, 13, 14, 15] }, entropy);
      assert.equal(r.argmaxDiffer, 0, 'argmax');
      assert.ok(r.p1Err! <= P_TOL && r.p2Err! <= P_TOL, `p1 ${r.p1Err}, p2 ${r.p2Err}`);
      t.diagnostic(`entropy ${entropy}: |Δp1| ${r.p1Err!.toExponential(2)}, |Δp2| ${r.p2Err!.toExponential(2)}, |ΔnegEntropy| ${r.entErr!.toExponential(2)}`);
      if (entropy) assert.ok(r.entErr! <= P_TOL * 10, `negEntropy ${r.entErr}`);
      else assert.equal(r.entErr, 0);
    }
  });
}

test('a token id outside the vocabulary is refused with the host forward\'s message, and the forward stays usable', { timeout: 300_000 }, async () => {
  const msg = await page().call('refusal', 'llada-tiny', { tokens: [1, 2, 384], seqStart: [0, 3], mask: null, logitRows: null });
  assert.equal(msg, 'token id 384 at row 2 is outside the vocabulary [0, 384)');
  const rows = await page().call('refusal', 'llada-tiny', { tokens: [1, 2, 3], seqStart: [0, 3], mask: null, logitRows: [3] });
  assert.equal(rows, 'forward: logit row 3 is outside the batch\'s 3 rows');
  const r = await page().call('compare', 'llada-tiny', { tokens: [1, 2, 3], seqStart: [0, 3], mask: null, logitRows: null }, null);
  assert.ok(r.relErr <= F32_TOL, String(r.relErr));
});

/** The resolved options and DyLLM acceleration of a generation on a test checkpoint (what the page's runs take). */
function request(name: string, gen: GenerateOptionsInput, accel: Record<string, unknown>) {
  const p = pipelines.get(name);
  if (!p) throw openError ?? new Error(`${name} is not loaded`);
  const options = resolveOptions(p.config, gen, p.generation);
  return { ids: p.ids, options, accel: resolveAccel(p.config, { method: 'dyllm', ...accel }, options) };
}

const DYLLM_PROMPTS = [[12, 40, 41, 42, 7], [99, 3, 5]];

for (const [name, gen] of [
  ['llada-tiny', { genLength: 8, steps: 8, blockLength: 8 }],
  ['dream-tiny', { genLength: 8, steps: 8, alg: 'entropy' }],
] as const) {
  test(`${name}: DyLLM on the GPU picks the host planned forward's salient sets in every layer and step, with its logits`, { timeout: 300_000 }, async (t) => {
    const r = request(name, gen as GenerateOptionsInput, { threshold: 0.99, oProj: 'recompute', fullSteps: 2, promptPeriod: 3 });
    const steps = await page().call('dyllmSteps', name, r.ids, r.options, r.accel, DYLLM_PROMPTS);
    assert.ok(steps.length >= 4, `${steps.length} steps`);
    assert.ok(steps.some((s) => s.method === 'dyllm') && steps.some((s) => s.method === 'dyllm-dense'), 'dense warm-up and sparse steps both ran');
    const sparse = steps.filter((s) => s.method === 'dyllm');
    const denseRows = steps[0].host[0];
    assert.ok(sparse.some((s) => s.host.some((n) => n > 0)) && sparse.some((s) => s.host.some((n) => n < denseRows)), 'sparse steps had some, but not all, rows salient');
    steps.forEach((s, i) => {
      assert.deepEqual(s.gpu, s.host, `step ${i}: salient rows per layer`);
      assert.deepEqual(s.gpuRecomputed, s.hostRecomputed, `step ${i}: last layer's salient positions`);
      assert.ok(s.relErr <= F32_TOL, `step ${i}: max|Δ|/max|ref| = ${s.relErr}`);
    });
    t.diagnostic(`${steps.length} steps; salient rows per layer (host = GPU): ${steps.map((s) => s.host.join('/')).join(' ')}; worst max|Δ|/max|ref| ${Math.max(...steps.map((s) => s.relErr)).toExponential(2)}`);
  });

  test(`${name}: all-salient DyLLM on the GPU ≡ the GPU's dense forward`, { timeout: 300_000 }, async (t) => {
    const r = request(name, gen as GenerateOptionsInput, { allSalient: true, oProj: 'recompute' });
    const got = await page().call('allSalientVsDense', name, r.ids, r.options, r.accel, DYLLM_PROMPTS);
    assert.ok(got.steps >= 4, `${got.steps} steps`);
    assert.ok(got.relErr <= 1e-6, `max|Δ|/max|ref| = ${got.relErr}`);
    t.diagnostic(`${got.steps} steps, max|Δ|/max|ref| ${got.relErr.toExponential(2)}`);
  });
}
