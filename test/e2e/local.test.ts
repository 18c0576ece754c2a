/**
 * `dyllm serve`'s /local page in headless Chromium: the page downloads the served model (with the server's access
 * rules), caches it in Cache Storage and denoises in a Web Worker. Without WebGPU (Chromium with --disable-gpu) it
 * runs on the TypeScript reference backend, saying why; its greedy tokens equal the native backend's for the same
 * prompt and options in Node (dense and DyLLM τ 0.99), and after a reload with the model files unreachable it loads
 * from the cache and generates the same tokens again. With WebGPU (SwiftShader) the steps (dense and DyLLM) run on the
 * GPU, after the worker checked its logits against the reference forward, with the native backend's greedy tokens.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { encodePrompt, loadPipeline } from '../../src/engine/pipeline.js';
import { launchChromium } from '../helpers/browser.js';
import { repoRoot } from '../helpers/paths.js';
import { runGeneration } from '../helpers/run-generation.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const PROMPT = 'Tom has 12 apples. He buys 7 more. How many apples does Tom have now?';
const GEN = { genLength: 16, steps: 16, blockLength: 16, temperature: 0 };

interface Done { tokenIds: number[]; answer: string; stopped: boolean; backend: string }
interface Ready { source: 'network' | 'cache'; backend: string; arch: string; adapter?: string; checkError?: number; notice?: string }

let server: DyllmServer;
let browser: Browser;
let gpuBrowser: Browser | undefined;
before(async () => {
  // The worker bundle is built from the sources (as npm run build does), so the page never runs a stale one.
  const b = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-web.mjs')], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(b.status, 0, `scripts/build-web.mjs failed: ${b.stderr}`);
  server = await startServer({ modelDir: DEMO, host: '127.0.0.1', port: 0, maxBatch: 1 });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await gpuBrowser?.close();
  await server?.close();
});

/** `p`, or a rejection naming `what` after `ms` (a page that never answers fails the test instead of hanging it). */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no answer from the page within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** The native backend's greedy tokens for the prompt, in Node (the page must match them). */
async function nativeTokens(accel?: { method: string; threshold: number }): Promise<number[]> {
  const p = await loadPipeline(DEMO, { backend: 'native' });
  return Array.from(runGeneration(p, [encodePrompt(p, PROMPT, true)], GEN, accel).tokens[0]);
}

test('/local: the demo model denoises in the browser with the native backend\'s tokens, dense and DyLLM; a reload works offline from Cache Storage', { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/local`);
  const ready = (await within(120_000, 'load', page.evaluate('window.dyllmLocal.ready'))) as Ready;
  assert.deepEqual([ready.source, ready.backend, ready.arch], ['network', 'reference', 'llada'], JSON.stringify(ready));
  // Styled by the stylesheet the web view links too (/static/dyllm.css), plus its own rules.
  assert.equal(await page.evaluate('getComputedStyle(document.body).backgroundColor'), 'rgb(250, 250, 247)');
  assert.equal(await page.evaluate('getComputedStyle(document.getElementById("progress")).height'), '10px');
  assert.match(ready.notice ?? '', /^WebGPU failed \(no WebGPU adapter\): running on the reference backend$|^this browser offers no WebGPU here/, 'the one-line notice says why not WebGPU');
  const gen = (accel: 'dense' | 'dyllm') =>
    within(180_000, `generate (${accel})`, page.evaluate(`window.dyllmLocal.generate(${JSON.stringify({ prompt: PROMPT, chat: true, ...GEN, accel, threshold: 0.99 })})`) as Promise<Done>);

  const dense = await gen('dense');
  assert.deepEqual(dense.tokenIds, await nativeTokens(), 'dense tokens: browser (reference) vs Node (native)');
  assert.equal(dense.stopped, false);
  assert.equal(dense.backend, 'reference');
  assert.equal(dense.answer, '12+7=19. #### 19');
  // The live canvas: drawn, with no mask left at the end.
  assert.equal(await page.locator('#canvas .tok').count(), GEN.genLength);
  assert.equal(await page.locator('#canvas .tok.mask').count(), 0);
  const dy = await gen('dyllm');
  assert.deepEqual(dy.tokenIds, await nativeTokens({ method: 'dyllm', threshold: 0.99 }), 'DyLLM τ 0.99 tokens: browser vs Node');

  // Offline: the model files (and the manifest) are unreachable; the page loads everything from Cache Storage.
  await page.route('**/local/model/**', (r) => r.abort('internetdisconnected'));
  await page.reload();
  const again = (await within(120_000, 'offline load', page.evaluate('window.dyllmLocal.ready'))) as Ready;
  assert.equal(again.source, 'cache');
  const offline = await gen('dense');
  assert.deepEqual(offline.tokenIds, dense.tokenIds, 'offline reload: same tokens');
  assert.deepEqual(errors, []);
  await page.close();
});

test('/local on WebGPU (SwiftShader): dense and DyLLM τ 0.99 steps run on the GPU with the native backend\'s greedy tokens', { timeout: 600_000 }, async (t) => {
  gpuBrowser = await launchChromium({ webgpu: true });
  const page = await gpuBrowser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/local`);
  const ready = (await within(180_000, 'load', page.evaluate('window.dyllmLocal.ready'))) as Ready;
  assert.equal(ready.backend, 'webgpu', `the GPU forward passed its check: ${JSON.stringify(ready)}`);
  assert.ok((ready.adapter ?? '').length > 0, 'the adapter is named');
  // The check step's error on the bundled model (the worker's bound is 1e-4; the kernels' 1e-5 holds here too).
  assert.ok(typeof ready.checkError === 'number' && ready.checkError <= 1e-5, `check step: max|Δ|/max|ref| = ${ready.checkError}`);
  t.diagnostic(`adapter ${ready.adapter}; check step max|Δ|/max|ref| ${ready.checkError!.toExponential(2)}`);
  assert.match(await page.locator('#load').textContent() ?? '', /backend webgpu \(/);
  assert.match(await page.locator('#notice').textContent() ?? '', /^WebGPU: dense steps run on this machine's GPU/);
  const gen = (accel: 'dense' | 'dyllm') =>
    within(240_000, `generate (${accel})`, page.evaluate(`window.dyllmLocal.generate(${JSON.stringify({ prompt: PROMPT, chat: true, ...GEN, accel, threshold: 0.99 })})`) as Promise<Done>);
  const dense = await gen('dense');
  assert.equal(dense.backend, 'webgpu');
  assert.deepEqual(dense.tokenIds, await nativeTokens(), 'dense tokens: browser (WebGPU) vs Node (native)');
  assert.equal(dense.answer, '12+7=19. #### 19');
  assert.equal(await page.locator('#canvas .tok.mask').count(), 0);
  const dy = await gen('dyllm');
  assert.equal(dy.backend, 'webgpu', 'DyLLM\'s cached steps run on the GPU too');
  assert.deepEqual(dy.tokenIds, await nativeTokens({ method: 'dyllm', threshold: 0.99 }), 'DyLLM τ 0.99 tokens: browser vs Node');
  assert.deepEqual(errors, []);
  await page.close();
});

test('/local serves only the model files its manifest lists, read-only, under the server\'s access rules', { timeout: 60_000 }, async () => {
  const m = (await (await fetch(`${server.url}/local/model/manifest.json`)).json()) as { name: string; files: { name: string; size: number }[]; totalBytes: number };
  assert.equal(m.name, 'dyllm-demo');
  assert.deepEqual(m.files.map((f) => f.name).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  const cfg = await fetch(`${server.url}/local/model/config.json`);
  assert.equal(cfg.status, 200);
  assert.equal(Number(cfg.headers.get('content-length')), m.files.find((f) => f.name === 'config.json')!.size);
  for (const path of ['/local/model/MODEL_CARD.md', '/local/model/train_log.json', '/local/model/..%2Fconfig.json', '/local/nothing']) {
    const r = await fetch(`${server.url}${path}`);
    assert.equal(r.status, 404, path);
    assert.equal(((await r.json()) as { error: { message: string } }).error.message, `no route GET ${path}`);
  }
  const post = await fetch(`${server.url}/local/model/config.json`, { method: 'POST' });
  assert.equal(post.status, 405);
  // A foreign Origin is refused as on the API.
  const foreign = await fetch(`${server.url}/local/model/config.json`, { headers: { Origin: 'http://evil.example' } });
  assert.equal(foreign.status, 403);
  const html = await fetch(`${server.url}/local`);
  assert.equal(html.status, 200);
  assert.match(await html.text(), /reference backend/);
  const js = await fetch(`${server.url}/local/local-worker.js`);
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);

  // With --api-key the page and its code stay public (as the web view's page), the model files need the key.
  const keyed = await startServer({ modelDir: DEMO, host: '127.0.0.1', port: 0, maxBatch: 1, apiKey: 'k-local' });
  try {
    assert.equal((await fetch(`${keyed.url}/local`)).status, 200);
    assert.equal((await fetch(`${keyed.url}/local/local-worker.js`)).status, 200);
    assert.equal((await fetch(`${keyed.url}/local/model/manifest.json`)).status, 401);
    assert.equal((await fetch(`${keyed.url}/local/model/config.json`)).status, 401);
    assert.equal((await fetch(`${keyed.url}/local/model/config.json`, { headers: { Authorization: 'Bearer k-local' } })).status, 200);
  } finally {
    await keyed.close();
  }
});
