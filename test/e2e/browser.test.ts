/**
 * The browser-test helper (test/helpers/browser.ts): it launches the npm Chromium (not a system one) unless
 * CHROMIUM_PATH names another, and with `webgpu: true` a page served from http://127.0.0.1 gets a working WebGPU
 * device (SwiftShader, no GPU needed) that runs a compute shader.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { chromiumExecutable, launchChromium, npmChromiumPackage } from '../helpers/browser.js';
import { repoRoot } from '../helpers/paths.js';

let server: Server;
let url: string;
before(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>dyllm browser test</title>');
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
after(() => server?.close());

async function withBrowser(webgpu: boolean, fn: (b: Browser) => Promise<void>): Promise<void> {
  const b = await launchChromium({ webgpu });
  try {
    await fn(b);
  } finally {
    await b.close();
  }
}

test('launchChromium runs the npm Chromium, or exactly the one CHROMIUM_PATH names', { timeout: 120_000 }, async () => {
  const exe = chromiumExecutable();
  const { version } = npmChromiumPackage();
  if (process.env.CHROMIUM_PATH) assert.equal(exe, process.env.CHROMIUM_PATH);
  else assert.equal(exe, `${repoRoot}node_modules/.cache/dyllm-chromium/${version}/chromium`);
  await withBrowser(false, async (b) => {
    // The package's major version is the Chromium major it carries.
    if (!process.env.CHROMIUM_PATH) assert.equal(b.version().split('.')[0], version.split('.')[0], `browser ${b.version()} vs @sparticuz/chromium ${version}`);
    const page = await b.newPage();
    await page.goto(url);
    assert.equal(await page.title(), 'dyllm browser test');
  });
});

test('launchChromium({ webgpu: true }): WebGPU adapter and device on http://127.0.0.1; a compute shader doubles an array', { timeout: 120_000 }, async () => {
  await withBrowser(true, async (b) => {
    const page = await b.newPage();
    await page.goto(url);
    const r = await page.evaluate(async () => {
      const gpu = (navigator as unknown as { gpu?: any }).gpu;
      if (!gpu) return { error: 'navigator.gpu is undefined' };
      const adapter = await gpu.requestAdapter();
      if (!adapter) return { error: 'requestAdapter() returned null' };
      const device = await adapter.requestDevice();
      const input = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 - 7);
      const U = (globalThis as any).GPUBufferUsage;
      const data = device.createBuffer({ size: input.byteLength, usage: U.STORAGE | U.COPY_SRC | U.COPY_DST });
      device.queue.writeBuffer(data, 0, input);
      const read = device.createBuffer({ size: input.byteLength, usage: U.MAP_READ | U.COPY_DST });
      const module = device.createShaderModule({
        code: `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
               @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
                 if (id.x < arrayLength(&x)) { x[id.x] = 2.0 * x[id.x]; }
               }`,
      });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: data } }] });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(Math.ceil(input.length / 64));
      pass.end();
      enc.copyBufferToBuffer(data, 0, read, 0, input.byteLength);
      device.queue.submit([enc.finish()]);
      await read.mapAsync((globalThis as any).GPUMapMode.READ);
      const out = Array.from(new Float32Array(read.getMappedRange().slice(0)));
      read.unmap();
      const info = adapter.info ?? {};
      return { input: Array.from(input), out, adapter: `${info.vendor ?? ''} ${info.architecture ?? ''} ${info.description ?? ''}`.trim() };
    });
    assert.ok(!('error' in r), `WebGPU unavailable: ${'error' in r ? r.error : ''}`);
    const { input, out } = r as { input: number[]; out: number[] };
    assert.equal(out.length, 1000);
    assert.deepEqual(out, input.map((v) => 2 * v));
  });
});
