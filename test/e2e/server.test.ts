/**
 * `dyllm serve` end to end with real clients: the official `openai` package (streaming and not), raw HTTP for
 * the denoise-streaming extension and every limit, headless Chromium for the web view, and a child process for
 * SIGTERM draining. Servers listen on ephemeral loopback ports and are always shut down. The browser is the npm
 * Chromium (test/helpers/browser.ts; CHROMIUM_PATH overrides it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { Page } from 'playwright-core';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { repoRoot } from '../helpers/paths.js';
import { launchChromium } from '../helpers/browser.js';
import { NATIVE_SPEED, needsNative } from '../helpers/native.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?';

interface SseEvent { event: string | null; data: string }

/** Splits an SSE body into events (as the OpenAI client does). */
function parseSse(text: string): SseEvent[] {
  return text.split('\n\n').filter((b) => b.trim() !== '').map((b) => {
    let event: string | null = null;
    const data: string[] = [];
    for (const line of b.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    return { event, data: data.join('\n') };
  });
}

async function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `metric ${name} missing in:\n${text}`);
  return Number(line.split(' ').pop());
}

/** Reads a streaming response until `pred` holds for the text so far. */
async function readUntil(res: Response, pred: (text: string) => boolean): Promise<string> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  while (!pred(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text;
}

/** Runs `fn` on a page of a fresh headless Chromium from npm (test/helpers/browser.ts). */
async function withPage(fn: (page: Page) => Promise<void>): Promise<void> {
  const browser = await launchChromium();
  try {
    await fn(await browser.newPage());
  } finally {
    await browser.close();
  }
}

// No request timeout here (0 = none): these tests are about answers, not speed (the limits suite below tests the
// timeout), and on the reference backend or a loaded machine a merged batch can take minutes. The suite's own
// timeout still ends a hang.
describe('dyllm serve (bundled model)', { timeout: 30 * 60_000 }, () => {
  let s: DyllmServer;
  let client: OpenAI;
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 8, maxQueue: 8, timeoutMs: 0 });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  after(() => s?.close());

  test('openai client: chat completion, non-streaming', async () => {
    const r = await client.chat.completions.create({ model: 'dyllm-demo', messages: [{ role: 'user', content: QUESTION }] });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.choices[0].message.content!, /12\+7=19\. #### 19/);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage!.completion_tokens, 48);
    assert.ok(r.usage!.prompt_tokens > 10);
    assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + 48);
  });

  test('openai client: streaming deltas concatenate to the non-streaming answer; usage at the end', async () => {
    const alone = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], max_tokens: 32 });
    const stream = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], max_tokens: 32, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let deltas = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      assert.equal(c.object, 'chat.completion.chunk');
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      if (ch.delta.content) {
        text += ch.delta.content;
        deltas++;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(text, alone.choices[0].message.content);
    assert.ok(deltas >= 2, `expected the answer in several deltas, got ${deltas}`);
    assert.equal(finish, 'stop');
    assert.equal(usage!.completion_tokens, 32);
  });

  test('openai client: completions (raw prompt, streaming and not) and models', async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['dyllm-demo']);
    const r = await client.completions.create({ model: 'x', prompt: 'Mia has 5 coins.', max_tokens: 16 });
    assert.equal(r.object, 'text_completion');
    assert.equal(typeof r.choices[0].text, 'string');
    let text = '';
    for await (const c of await client.completions.create({ model: 'x', prompt: 'Mia has 5 coins.', max_tokens: 16, stream: true })) text += c.choices[0]?.text ?? '';
    assert.equal(text, r.choices[0].text);
  });

  test('concurrent requests are merged into one forward per step and answer exactly as alone', async () => {
    const reqs = [
      { messages: [{ role: 'user', content: QUESTION }], max_tokens: 32 },
      { messages: [{ role: 'user', content: 'Mia has 25 coins. Mia gives 8 to Ben. How many coins does Mia have now?' }], max_tokens: 32, temperature: 0.8, seed: 7 },
      { messages: [{ role: 'user', content: 'Sam has 3 bags with 4 pens each. How many pens?' }], max_tokens: 16, dyllm: { steps: 8 } },
      { messages: [{ role: 'user', content: 'Ann had 9 cards and lost 2. How many cards now?' }], max_tokens: 32, dyllm: { accel: 'dyllm', threshold: 0.99 } },
    ];
    const ask = async (b: object): Promise<string> => {
      const r = await post(`${s.url}/v1/chat/completions`, b);
      assert.equal(r.status, 200);
      return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content;
    };
    const alone: string[] = [];
    for (const b of reqs) alone.push(await ask(b));
    const ticks0 = await metric(s.url, 'dyllm_scheduler_ticks_total');
    const merged0 = await metric(s.url, 'dyllm_merged_requests_total');
    const together = await Promise.all(reqs.map(ask));
    assert.deepEqual(together, alone);
    const ticks = (await metric(s.url, 'dyllm_scheduler_ticks_total')) - ticks0;
    const merged = (await metric(s.url, 'dyllm_merged_requests_total')) - merged0;
    assert.ok(merged / ticks > 1.5, `mean dense requests per forward ${merged}/${ticks}`);
  });

  test('denoise streaming: one chunk per step with the canvas, commits and DyLLM recomputed rows', async () => {
    const r = await post(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: QUESTION }], stream: true, dyllm: { stream_steps: true, accel: 'dyllm', threshold: 0.99 },
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /text\/event-stream/);
    const events = parseSse(await r.text());
    assert.equal(events.at(-1)!.data, '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    const steps = chunks.filter((c) => c.dyllm?.step !== undefined);
    assert.equal(steps.length, 48);
    let prevMasked = 48;
    let text = '';
    steps.forEach((c, i) => {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.dyllm.step, i);
      assert.equal(c.dyllm.max_steps, 48);
      const masked = c.dyllm.tokens.filter((t: string | null) => t === null).length;
      assert.equal(masked, prevMasked - c.dyllm.committed.length, `step ${i}: masks fall by the commits`);
      assert.equal([...c.dyllm.canvas].filter((ch: string) => ch === '░').length, masked);
      for (const p of c.dyllm.committed) assert.notEqual(c.dyllm.tokens[p], null);
      prevMasked = masked;
      if (i >= 4) assert.ok(Array.isArray(c.dyllm.recomputed), `step ${i}: sparse DyLLM step reports its recomputed rows`);
    });
    assert.equal(prevMasked, 0);
    for (const c of chunks) text += c.choices[0]?.delta?.content ?? '';
    assert.match(text, /#### 19/);
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, 'stop');
    assert.ok(last.dyllm.salient_fraction < 1, 'DyLLM recomputed less than dense');
  });

  test('per-request knobs are validated like the CLI (400 with the field as param)', async () => {
    const cases: [object, string | null, RegExp][] = [
      [{ max_tokens: 16, dyllm: { block_length: 5 } }, 'dyllm.block_length', /must divide/],
      [{ temperature: 'hot' }, 'temperature', /expected a number/],
      [{ dyllm: { accel: 'turbo' } }, 'dyllm.accel', /^dyllm\.accel: expected one of none, dyllm, prefix, dual, dllm-cache, found "turbo"$/],
      [{ dyllm: { threshold: 7 } }, 'dyllm.threshold', /threshold/],
      [{ dyllm: { frobnicate: 1 } }, 'dyllm.frobnicate', /unknown option/],
      [{ max_tokens: 0 }, 'max_tokens', /^max_tokens: expected an integer in \[1, \d+\]/],
      [{ max_tokens: 1e15 }, 'max_tokens', /exceeds this server's limit/],
      [{ dyllm: { steps: 96, block_length: 16 } }, 'dyllm.steps', /^dyllm\.steps: expected an integer in \[1, 48\] \(at most the gen length\), found 96$/],
      [{ dyllm: { steps: 1e9 } }, 'dyllm.steps', /expected an integer in \[1, 48\]/],
      [{ dyllm: { full_steps: 1e15 } }, 'dyllm.full_steps', /expected an integer in \[1, 1000000\]/],
      [{ dyllm: { steps: 8 }, max_tokens: 16, max_completion_tokens: 32 }, 'max_completion_tokens', /conflicts/],
      [{ dyllm: { stepz: 8 } }, 'dyllm.stepz', /did you mean "steps"/],
      [{ max_tokens: 4096 }, 'max_tokens', /exceeds this server's limit of 1024/],
      [{ n: 9 }, 'n', /^n: expected an integer in \[1, 8\] \(choices are denoised together: at most 8 on this server, --max-batch\), found 9$/],
      [{ bogus: true }, 'bogus', /unknown field/],
      [{ dyllm: { stream_steps: true } }, 'dyllm.stream_steps', /stream/],
    ];
    for (const [extra, param, msg] of cases) {
      const r = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], ...extra });
      assert.equal(r.status, 400, JSON.stringify(extra));
      const j = (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
      assert.equal(j.error.type, 'invalid_request_error');
      assert.equal(j.error.param, param, JSON.stringify(j));
      assert.match(j.error.message, msg);
    }
    const bad = await post(`${s.url}/v1/chat/completions`, '{"messages": [');
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_json');
    const noMsgs = await post(`${s.url}/v1/chat/completions`, { messages: [] });
    assert.equal(noMsgs.status, 400);
    const nf = await fetch(`${s.url}/v2/nothing`);
    assert.equal(nf.status, 404);
    assert.equal(((await nf.json()) as { error: { type: string } }).error.type, 'not_found_error');
  });

  test('health and Prometheus metrics', async () => {
    const h = (await (await fetch(`${s.url}/health`)).json()) as { status: string };
    assert.equal(h.status, 'ok');
    const m = await fetch(`${s.url}/metrics`);
    assert.match(m.headers.get('content-type')!, /text\/plain/);
    const text = await m.text();
    for (const name of ['dyllm_requests_total{route="/v1/chat/completions",status="200"}', 'dyllm_requests_total{route="/v1/chat/completions",status="400"}', 'dyllm_queue_depth', 'dyllm_generated_tokens_total', 'dyllm_step_latency_seconds_bucket{le="+Inf"}', 'dyllm_salient_fraction_sum', 'dyllm_requests_cancelled_total{reason="disconnect"}']) {
      assert.ok(text.includes(name), `${name} missing`);
    }
    assert.ok((await metric(s.url, 'dyllm_generated_tokens_total')) > 0);
  });

  test('web view in headless Chromium: the canvas denoises step by step', needsNative(NATIVE_SPEED), async () => {
    await withPage(async (page) => {
      await page.goto(s.url + '/');
      await page.waitForFunction(() => document.getElementById('model')!.textContent!.includes('dyllm-demo'));
      await page.fill('#prompt', QUESTION);
      await page.check('#accel');
      // Record every canvas redraw as the user sees it: masked, newly committed and recomputed spans.
      await page.evaluate(() => {
        const frames: { masked: number; fresh: number; rec: number; total: number }[] = [];
        (window as unknown as { frames_: typeof frames }).frames_ = frames;
        const c = document.getElementById('canvas')!;
        // One record per redraw (replaceChildren), read from the nodes it added: redraws whose callbacks the
        // observer batches (events arriving together) are still seen one by one.
        new MutationObserver((records) => {
          for (const r of records) {
            const toks = [...r.addedNodes].filter((n): n is Element => n instanceof Element && n.classList.contains('tok'));
            if (!toks.length) continue;
            const count = (cls: string) => toks.filter((e) => e.classList.contains(cls)).length;
            frames.push({ masked: count('mask'), fresh: count('new'), rec: count('rec'), total: toks.length });
          }
        }).observe(c, { childList: true });
      });
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('answer')!.textContent!.includes('####') && !(document.getElementById('go') as HTMLButtonElement).disabled, null, { timeout: 20_000 });
      const frames = (await page.evaluate(() => (window as unknown as { frames_: unknown }).frames_)) as { masked: number; fresh: number; rec: number; total: number }[];
      const drawn = frames.filter((f) => f.total > 0);
      // A redraw per SSE event.
      assert.ok(new Set(drawn.map((f) => f.masked)).size >= 10, `expected the canvas to fill step by step, got ${drawn.length} frames`);
      assert.equal(await page.textContent('#s-step'), '48 / 48');
      for (let i = 1; i < drawn.length; i++) assert.ok(drawn[i].masked <= drawn[i - 1].masked, 'masks only disappear');
      assert.ok(drawn[0].masked > 40, 'the first frame is mostly masks');
      assert.equal(drawn.at(-1)!.masked, 0);
      assert.ok(drawn.every((f) => f.fresh >= 1), 'every step highlights its newly committed tokens');
      assert.ok(drawn.some((f) => f.rec > 0), 'DyLLM recomputed rows are highlighted');
      assert.match(await page.textContent('#answer') ?? '', /12\+7=19\. #### 19/);
      assert.notEqual(await page.textContent('#s-tps'), '–');
      assert.match(await page.textContent('#s-salient') ?? '', /^0\.\d+$/);
    });
  });

  test('web view polish: stats reset per run, the end of text as ∎, a note for an empty answer, a favicon (no 404)', needsNative(NATIVE_SPEED), async () => {
    await withPage(async (page) => {
      const failed: string[] = [];
      page.on('response', (r) => r.status() >= 400 && failed.push(`${r.status()} ${r.url()}`));
      page.on('requestfailed', (r) => failed.push(`failed ${r.url()}`));
      page.on('console', (m) => m.type() === 'error' && failed.push(`console: ${m.text()}`));
      await page.goto(s.url + '/');
      await page.waitForFunction(() => document.getElementById('model')!.textContent!.includes('dyllm-demo'));
      assert.match(await page.textContent('#model') ?? '', /\d+ threads?$/);
      assert.match(await page.getAttribute('link[rel="icon"]', 'href') ?? '', /^data:image\/svg\+xml,/);
      const done = () => page.waitForFunction(() => !(document.getElementById('go') as HTMLButtonElement).disabled && document.getElementById('s-step')!.textContent !== '–', null, { timeout: 30_000 });
      // A DyLLM run, then a dense one: the second starts from empty stats and ends with its own.
      await page.fill('#prompt', QUESTION);
      await page.check('#accel');
      await page.click('#go');
      await done();
      assert.match(await page.textContent('#s-salient') ?? '', /^0\.\d+$/);
      await page.uncheck('#accel');
      const atStart = await page.evaluate(() => {
        document.getElementById('go')!.click(); // run() resets the stats before its first await
        return ['s-step', 's-masked', 's-tps', 's-salient', 's-rec'].map((id) => document.getElementById(id)!.textContent);
      });
      assert.deepEqual(atStart, ['–', '–', '–', '–', '–']);
      await done();
      assert.equal(await page.textContent('#s-salient'), '1.000');
      assert.equal(await page.textContent('#s-rec'), 'all (dense)');
      // The answer ends with the end of turn: drawn as ∎ (its text in the tooltip), never spelled out.
      const ends = await page.$$eval('#canvas .tok.end', (els) => els.map((e) => [e.textContent, e.getAttribute('title')]));
      assert.ok(ends.length > 0, 'the end of text is marked');
      for (const [text, title] of ends) {
        assert.equal(text, '∎');
        assert.match(title ?? '', /^end of text \(<\|(eot_id|endoftext)\|>\)$/);
      }
      assert.ok(!(await page.textContent('#canvas'))!.includes('<|'), 'no special token text on the canvas');
      assert.equal(await page.textContent('#note'), '');
      // A prompt the demo model answers with the end of text at once: the page says so.
      await page.fill('#prompt', 'x');
      await page.click('#go');
      await done();
      assert.equal(await page.textContent('#answer'), '');
      assert.match(await page.textContent('#note') ?? '', /^The answer is empty: the model ended it at once — try a longer or shorter max tokens/);
      // The next run clears the note.
      await page.fill('#prompt', QUESTION);
      await page.click('#go');
      await done();
      assert.equal(await page.textContent('#note'), '');
      assert.deepEqual(failed, []);
    });
  });
});

// The limits below race generations against a 1.5 s request timeout: they need the native kernels' speed.
describe('dyllm serve limits and faults', needsNative(NATIVE_SPEED), () => {
  let s: DyllmServer;
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 1, maxQueue: 1, timeoutMs: 1500, bodyLimit: 2048, maxTokens: 256 });
  });
  after(() => s?.close());
  const long = { messages: [{ role: 'user', content: QUESTION }], max_tokens: 256, stream: true };

  test('413 for a body over --body-limit', async () => {
    const r = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x'.repeat(4000) }] });
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'body_too_large');
  });

  test('503 + Retry-After when the queue is full; a disconnect cancels the generation at the next step', async () => {
    const a = new AbortController();
    const b = new AbortController();
    const ra = await post(`${s.url}/v1/chat/completions`, long, { signal: a.signal });
    await readUntil(ra, (t) => t.includes('"role":"assistant"'));
    const rb = await post(`${s.url}/v1/chat/completions`, long, { signal: b.signal });
    assert.equal(rb.status, 200);
    const full = await post(`${s.url}/v1/chat/completions`, long);
    assert.equal(full.status, 503);
    assert.equal(full.headers.get('retry-after'), '1');
    assert.equal(((await full.json()) as { error: { code: string } }).error.code, 'queue_full');
    assert.equal(await metric(s.url, 'dyllm_queue_depth'), 1);
    a.abort();
    b.abort();
    for (let i = 0; i < 100 && (await metric(s.url, 'dyllm_inflight_requests')) > 0; i++) await new Promise((res) => setTimeout(res, 20));
    // A 256-step run takes many seconds; with both cancelled a short request is served within the 1.5 s request
    // timeout (200, not 504).
    const r = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: QUESTION }], max_tokens: 8 });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(await metric(s.url, 'dyllm_requests_cancelled_total{reason="disconnect"}'), 2);
    assert.equal(await metric(s.url, 'dyllm_inflight_requests'), 0);
  });

  test('a request over --timeout-ms is cancelled: 504 before the stream, an error event inside it', async () => {
    const [plain, streamed] = await Promise.all([
      post(`${s.url}/v1/chat/completions`, { ...long, stream: false }),
      post(`${s.url}/v1/chat/completions`, long),
    ]);
    assert.equal(plain.status, 504);
    const j = (await plain.json()) as { error: { type: string; code: string } };
    assert.equal(j.error.code, 'timeout');
    assert.equal(streamed.status, 200);
    const ev = parseSse(await streamed.text());
    assert.equal(ev.at(-1)!.data, '[DONE]');
    assert.equal(JSON.parse(ev.at(-2)!.data).error.code, 'timeout');
    // The OpenAI client surfaces the stream's error event as an APIError.
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    await assert.rejects(async () => {
      for await (const _ of await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], max_tokens: 256, stream: true })) void _;
    }, /did not finish within 1500 ms/);
    assert.equal(await metric(s.url, 'dyllm_requests_cancelled_total{reason="timeout"}'), 3);
  });
});

test('SIGTERM drains: the in-flight stream finishes, new requests get 503, the process exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-serve-'));
  const script = join(dir, 'serve.mjs');
  writeFileSync(script, `import { cmdServe } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'cli', 'serve.js'))};\nawait cmdServe(process.argv.slice(2));\n`);
  const child = spawn(process.execPath, [script, '--port', '0', '--max-tokens', '64'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(`server exited early: ${stderr}`)));
    });
    const r = await post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: QUESTION }], stream: true, dyllm: { stream_steps: true } });
    let text = await readUntil(r, (t) => t.includes('"step":1,'));
    child.kill('SIGTERM');
    await new Promise((res) => setTimeout(res, 100));
    const refused = await post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(refused.status, 503);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'draining');
    text += await readUntil(r, () => false);
    const ev = parseSse(text);
    assert.equal(ev.at(-1)!.data, '[DONE]');
    const chunks = ev.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.equal(chunks.filter((c) => c.dyllm?.step !== undefined).length, 48, 'every step of the in-flight request was streamed');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /drained/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
