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
const INDEX = '<!doctype html><title>dyllm webgpu conformance</title><script type="module" src="/test/webgpu/page.js"></script>';

/** What test/webgpu/page.ts puts on globalThis.dyllmWebGpu. */
export interface PageApi {
  openConfig(name: string): Promise<{ adapter: string; subgroups: boolean }>;
  runCase(config: string, name: string): Promise<CaseResult>;
  time(config: string, reps: number): Promise<KernelTiming[]>;
}

export interface WebGpuPage {
  readonly page: Page;
  /** Uncaught errors the page reported so far. */
  readonly errors: readonly string[];
  call<K extends keyof PageApi>(fn: K, ...args: Parameters<PageApi[K]>): Promise<Awaited<ReturnType<PageApi[K]>>>;
  close(): Promise<void>;
}

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

/**
 * Serves the page, launches Chromium and waits (at most `loadMs`) until the page's module has loaded. Any failure
 * (Chromium cannot launch, the module does not load) throws with the reason, after closing what was opened.
 */
export async function openWebGpuPage(loadMs = 60_000): Promise<WebGpuPage> {
  const server = serveDist();
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
    await page.waitForFunction(() => 'dyllmWebGpu' in globalThis, undefined, { timeout: loadMs }).catch(() => {
      throw new Error(`the test page did not load its module: ${errors.join('; ') || 'no page error reported'}`);
    });
    const call = ((fn: keyof PageApi, ...args: unknown[]) =>
      page.evaluate(([f, a]) => ((globalThis as unknown as { dyllmWebGpu: Record<string, (...x: unknown[]) => unknown> }).dyllmWebGpu[f as string])(...(a as unknown[])), [fn, args] as const)) as WebGpuPage['call'];
    return { page, errors, call, close };
  } catch (e) {
    await close();
    throw e;
  }
}
