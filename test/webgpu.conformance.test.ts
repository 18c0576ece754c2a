/**
 * WebGPU kernel conformance in headless Chromium on SwiftShader (no GPU needed): the shared kernel suite
 * (test/helpers/kernel-suite.ts, the cases the native tiers pass) through the WebGPU host backend, the sabotage cases
 * that prove the checks can fail, and the device-API cases (test/helpers/webgpu-suite.ts), each a test here.
 *
 * The page (test/webgpu/page.ts, served by test/helpers/webgpu-page.ts) loads its imports as plain ESM straight
 * from dist/ (the compiled tree: no bundler) on http://127.0.0.1, a secure origin where navigator.gpu exists; the
 * browser is the npm Chromium (test/helpers/browser.ts). Nothing is skipped: a Chromium that cannot launch, a page
 * that does not load or a missing adapter fails every test with the reason.
 *
 * Bounded in time: the whole run (about 55 s on a 2-core machine) has a budget of BUDGET_MS (DYLLM_WEBGPU_BUDGET_MS
 * overrides); a case still running when it is spent fails, naming the budget, and so does every case after it, at
 * once. The browser is closed at the end whatever happened.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WEBGPU_CONFIGS, casesOf } from './helpers/webgpu-suite.js';
import { openWebGpuPage, type WebGpuPage } from './helpers/webgpu-page.js';

const BUDGET_MS = Number(process.env.DYLLM_WEBGPU_BUDGET_MS) > 0 ? Number(process.env.DYLLM_WEBGPU_BUDGET_MS) : 240_000;
const started = Date.now();

/** Runs `work` within what is left of the budget; fails naming the budget when it runs out. */
async function withinBudget<T>(what: string, work: () => Promise<T>): Promise<T> {
  const left = started + BUDGET_MS - Date.now();
  const spent = () => new Error(`${what}: the WebGPU conformance run spent its ${BUDGET_MS / 1000} s budget ` +
    '(SwiftShader on a heavily loaded machine? DYLLM_WEBGPU_BUDGET_MS raises it)');
  if (left <= 0) throw spent();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work(), new Promise<never>((_, reject) => { timer = setTimeout(() => reject(spent()), left); })]);
  } finally {
    clearTimeout(timer);
  }
}

let gpu: WebGpuPage | undefined;
let openError: Error | undefined;

before(async () => {
  try {
    gpu = await withinBudget('opening the page', () => openWebGpuPage());
  } catch (e) {
    openError = e as Error;
  }
});

after(async () => {
  await gpu?.close();
});

/** The open page, or the reason it is not open (every test fails with it: nothing is skipped). */
function page(): WebGpuPage {
  if (!gpu) throw openError ?? new Error('the WebGPU test page is not open');
  return gpu;
}

for (const config of WEBGPU_CONFIGS) {
  describe(`${config.name} (Chromium, SwiftShader)`, () => {
    test('opens a WebGPU device on the page', { timeout: BUDGET_MS + 10_000 }, async () => {
      const p = page();
      const info = await withinBudget('opening the device', () => p.call('openConfig', config.name));
      assert.ok(info.adapter.length > 0, 'the adapter describes itself');
      if (config.options.subgroups === false) assert.equal(info.subgroups, false);
    });
    for (const c of casesOf(config)) {
      test(c.name, { timeout: BUDGET_MS + 10_000 }, async () => {
        const p = page();
        const r = await withinBudget(c.name, () => p.call('runCase', config.name, c.name));
        assert.ok(r.ok, r.error);
        assert.deepEqual(p.errors, [], 'no uncaught errors on the page');
      });
    }
  });
}
