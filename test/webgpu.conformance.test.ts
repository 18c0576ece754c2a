/**
 * WebGPU kernel conformance in headless Chromium on SwiftShader (no GPU needed): the shared kernel suite
 * (test/helpers/kernel-suite.ts, the cases the native tiers pass) through the WebGPU host backend, the sabotage cases
 * that prove the checks can fail, and the device-API cases (test/helpers/webgpu-suite.ts), each a test here.
 *
 * The page (test/webgpu/page.ts) is served with its imports as plain ESM straight from dist/ (the compiled tree:
 * no bundler) on http://127.0.0.1, a secure origin where navigator.gpu exists; the browser is the npm Chromium
 * (test/helpers/browser.ts, `launchChromium({ webgpu: true })`). A missing adapter is a failure, not a skip.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import { repoRoot } from './helpers/paths.js';
import { WEBGPU_CONFIGS, casesOf } from './helpers/webgpu-suite.js';
import type { CaseResult } from './webgpu/page.js';

const distRoot = join(repoRoot, 'dist');
const INDEX = '<!doctype html><title>dyllm webgpu conformance</title><script type="module" src="/test/webgpu/page.js"></script>';

/** Serves the page and the compiled .js files under dist/ (nothing else). */
function serveDist(): Server {
  return createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(INDEX);
      return;
    }
    const file = normalize(join(distRoot, path));
    if (!file.startsWith(distRoot + sep) || !file.endsWith('.js')) {
      res.writeHead(404).end();
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(body),
      () => res.writeHead(404).end(),
    );
  });
}

interface PageApi {
  openConfig(name: string): Promise<{ adapter: string; subgroups: boolean }>;
  runCase(config: string, name: string): Promise<CaseResult>;
}

let server: Server;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  server = serveDist();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  browser = await launchChromium({ webgpu: true });
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  await page.waitForFunction(() => 'dyllmWebGpu' in globalThis, undefined, { timeout: 60_000 }).catch(() => {
    throw new Error(`the test page did not load its module: ${pageErrors.join('; ') || 'no page error reported'}`);
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

for (const config of WEBGPU_CONFIGS) {
  describe(`${config.name} (Chromium, SwiftShader)`, () => {
    test('opens a WebGPU device on the page', { timeout: 120_000 }, async () => {
      const info = await page.evaluate((name) => (globalThis as unknown as { dyllmWebGpu: PageApi }).dyllmWebGpu.openConfig(name), config.name);
      assert.ok(info.adapter.length > 0, 'the adapter describes itself');
      if (config.options.subgroups === false) assert.equal(info.subgroups, false);
    });
    for (const c of casesOf(config)) {
      test(c.name, { timeout: 300_000 }, async () => {
        const r = await page.evaluate(([cfg, name]) => (globalThis as unknown as { dyllmWebGpu: PageApi }).dyllmWebGpu.runCase(cfg, name), [config.name, c.name] as const);
        assert.ok(r.ok, r.error);
        assert.deepEqual(pageErrors, [], 'no uncaught errors on the page');
      });
    }
  });
}
