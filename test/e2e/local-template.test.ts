/**
 * The /local page's chat template has a time limit, as the server's has (load/template-sandbox.ts): the page is
 * cross-origin isolated, its engine worker renders in a nested helper worker (src/web/template-render.ts) and stops
 * it on the deadline. A template that loops for one prompt (it passes the server's load-time probe, which renders
 * "Hi") ends that generation with the one-line ChatTemplateError in the page, within seconds, and the engine worker
 * stays usable: the next prompt renders in a fresh helper and generates.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Browser } from 'playwright-core';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { launchChromium } from '../helpers/browser.js';
import { repoRoot } from '../helpers/paths.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
/** ~10^8 empty iterations (hours in a Jinja interpreter) for one prompt only; nothing for any other. */
const LOOP = "{% if messages[0]['content'] == 'loop forever' %}{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{% endif %}";
const GEN = { genLength: 8, steps: 8, blockLength: 8, temperature: 0, accel: 'dense', threshold: 0.99 };

let dir: string;
let server: DyllmServer;
let browser: Browser;
before(async () => {
  const b = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-web.mjs')], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(b.status, 0, `scripts/build-web.mjs failed: ${b.stderr}`);
  dir = mkdtempSync(join(tmpdir(), 'dyllm-looping-template-'));
  for (const f of readdirSync(DEMO)) copyFileSync(join(DEMO, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(DEMO, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
  cfg.chat_template = LOOP + cfg.chat_template;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
  server = await startServer({ modelDir: dir, host: '127.0.0.1', port: 0, maxBatch: 1 });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('/local: a chat template that loops ends that generation with a one-line error after its time limit; the next one generates', { timeout: 300_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/local`);
  assert.equal(await page.evaluate('crossOriginIsolated'), true, 'the page must be cross-origin isolated (COOP + COEP) for the helper');
  await page.evaluate('window.dyllmLocal.ready');
  const run = (prompt: string): Promise<string> =>
    page.evaluate(`window.dyllmLocal.generate(${JSON.stringify({ prompt, chat: true, ...GEN })}).then((d) => 'answer: ' + d.answer, (e) => 'error: ' + e.message)`) as Promise<string>;
  const t0 = performance.now();
  // A page without the limit never answers: fail after a minute instead of hanging.
  let timer: NodeJS.Timeout | undefined;
  const looped = await Promise.race([run('loop forever'), new Promise<string>((res) => (timer = setTimeout(() => res('no answer within 60 s'), 60_000)))]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  assert.equal(looped, `error: ${basename(dir)}/tokenizer_config.json (chat_template): expected a template that renders within 5000 ms, found a render that had not finished (stopped: it loops too long or ran out of memory) (fix the template, or raise DYLLM_TEMPLATE_TIMEOUT_MS)`);
  // The limit (5 s) and a helper's start, with a wide margin for a loaded machine: never the loop's hours.
  assert.ok(ms < 60_000, `${ms} ms`);
  const next = await run('Tom has 12 apples. He buys 7 more. How many apples does Tom have now?');
  assert.match(next, /^answer: /);
});
