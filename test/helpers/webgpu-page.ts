/**
 * The WebGPU test page in headless Chromium on SwiftShader: an HTTP server on 127.0.0.1 (a secure origin, where
 * navigator.gpu exists) serving an index page and the compiled .js files under dist/ as plain ESM (no bundler), and
 * the npm Chromium (./browser.ts, `launchChromium({ webgpu: true })`) on it. Used by the conformance run
 * (test/webgpu.conformance.test.ts) and the SwiftShader timings (bench/webgpu.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.js';
import { repoRoot } from './paths.js';
import type { CaseResult } from '../webgpu/page.js';
import type { KernelTiming } from './webgpu-timing.js';

const distRoot = join(repoRoot, 'dist');
/**
 * The page: an import map sends the samplers' `node:assert` (the only Node import of the engine's modules) to a small
 * browser version (as scripts/build-web.mjs does for the /local bundle), then the test's module.
 */
const index = (module: string) => '<!doctype html><title>dyllm webgpu test</title>' +
  '<script type="importmap">{"imports":{"node:assert":"/node-assert.js"}}</script>' +
  `<script type="module" src="${module}"></script>`;

/** node:assert in the page (src/web/shims/node-assert.cjs as an ES module): what the samplers' invariant checks call. */
const NODE_ASSERT = `function assert(cond, message) { if (!cond) throw new Error(message === undefined ? 'assertion failed' : String(message)); }
assert.ok = assert;
assert.equal = (a, b, m) => assert(a == b, m ?? \`\${a} == \${b}\`);
assert.strictEqual = (a, b, m) => assert(a === b, m ?? \`\${a} === \${b}\`);
export default assert;
`;

/** What test/webgpu/page.ts puts on globalThis.dyllmWebGpu. */
export interface PageApi {
  openConfig(name: string): Promise<{ adapter: string; subgroups: boolean }>;
  runCase(config: string, name: string): Promise<CaseResult>;
  time(config: string, reps: number): Promise<KernelTiming[]>;
}

export interface WebGpuPage<Api = PageApi> {
  readonly page: Page;
  /** Uncaught errors the page reported so far. */
  readonly errors: readonly string[];
  call<K extends keyof Api>(fn: K, ...args: Api[K] extends (...a: infer A) => unknown ? A : never): Promise<Api[K] extends (...a: never[]) => infer R ? Awaited<R> : never>;
  close(): Promise<void>;
}

function serveDist(module: string): Server {
  return createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(index(module));
      return;
    }
    if (path === '/node-assert.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(NODE_ASSERT);
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

/**
 * Serves the page, launches Chromium and waits (at most `loadMs`) until the page's module has loaded. Any failure
 * (Chromium cannot launch, the module does not load) throws with the reason, after closing what was opened. The
 * module (compiled, under dist/) puts its API on globalThis[global]: the conformance page by default,
 * test/webgpu/forward-page.ts for the forward tests.
 */
export async function openWebGpuPage<Api = PageApi>(loadMs = 60_000, module = '/test/webgpu/page.js', global = 'dyllmWebGpu'): Promise<WebGpuPage<Api>> {
  const server = serveDist(module);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  let browser: Browser | undefined;
  const errors: string[] = [];
  const close = async () => {
    await browser?.close().catch(() => undefined);
    await new Promise<void>((res) => server.close(() => res()));
  };
  try {
    try {
      browser = await launchChromium({ webgpu: true });
    } catch (e) {
      throw new Error(`headless Chromium did not launch: ${(e as Error).message.split('\n')[0]}`);
    }
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.waitForFunction((g) => g in globalThis, global, { timeout: loadMs }).catch(() => {
      throw new Error(`the test page did not load its module: ${errors.join('; ') || 'no page error reported'}`);
    });
    const call = ((fn: string, ...args: unknown[]) =>
      page.evaluate(([g, f, a]) => ((globalThis as unknown as Record<string, Record<string, (...x: unknown[]) => unknown>>)[g][f])(...(a as unknown[])), [global, fn, args] as const)) as WebGpuPage<Api>['call'];
    return { page, errors, call, close };
  } catch (e) {
    await close();
    throw e;
  }
}
