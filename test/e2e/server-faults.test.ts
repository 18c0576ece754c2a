/**
 * Fault isolation of `dyllm serve` on the bundled model: a request whose step throws fails alone (the scheduler in
 * process, then through HTTP), a merged dense forward that throws is retried member by member, a dead engine or
 * tokenizer worker is restarted (503 meanwhile, /health tells the truth, streams end with an error event), a crash
 * loop ends in engine_down, and prompts are bounded in bytes before they are tokenized (off the stepping loop).
 * Faults come from the test hook in src/server/faults.ts (DYLLM_TEST_FAULTS=1 plus a marker in the prompt).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { encodePrompt, loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { resolveOptions } from '../../src/engine/options.js';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import type { FromWorker, SubmitMsg, TestFault } from '../../src/server/protocol.js';
import { Scheduler } from '../../src/server/scheduler.js';
import { repoRoot } from '../helpers/paths.js';

process.env.DYLLM_TEST_FAULTS = '1';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?';
const ANSWER = /12\+7=19\. #### 19/;
const mark = (f: TestFault): string => `[[dyllm-test-fault:${f}]] `;

interface ErrorBody { error: { message: string; type: string; param: string | null; code: string | null } }

async function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), ...init });
}

const chat = (content: string, extra: object = {}): object => ({ messages: [{ role: 'user', content }], ...extra });

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `metric ${name} missing`);
  return Number(line.split(' ').pop());
}

async function health(url: string): Promise<{ code: number; body: { status: string; reason?: string } }> {
  const r = await fetch(`${url}/health`);
  return { code: r.status, body: (await r.json()) as { status: string; reason?: string } };
}

async function waitHealthy(url: string, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const h = await health(url);
    if (h.code === 200) return;
    assert.ok(Date.now() - t0 < ms, `server not healthy after ${ms} ms: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SSE body → the JSON of every data event (the [DONE] terminator as the string). */
function sseData(text: string): unknown[] {
  return text.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => (b.slice(6) === '[DONE]' ? '[DONE]' : JSON.parse(b.slice(6))));
}

async function readUntil(res: Response, pred: (text: string) => boolean): Promise<{ text: string; rest: () => Promise<string> }> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  while (!pred(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  return {
    text,
    rest: async () => {
      let more = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return more;
        more += dec.decode(value, { stream: true });
      }
    },
  };
}

describe('scheduler: one request failing never stops the others (in process)', () => {
  let p: Pipeline;
  before(async () => {
    p = await loadPipeline(DEMO, { backend: 'auto' });
  });

  /** Runs submissions through one Scheduler (all in its first tick) and collects what it sends. */
  async function run(subs: { content: string; fault: TestFault | null; accel?: boolean }[]): Promise<FromWorker[]> {
    const sent: FromWorker[] = [];
    let left = subs.length;
    let finished!: () => void;
    const all = new Promise<void>((r) => (finished = r));
    const sched = new Scheduler(p, { maxBatch: 8, maxPromptTokens: 4096, testFaults: true }, (m) => {
      sent.push(m);
      if ((m.type === 'done' || m.type === 'error') && --left === 0) finished();
    });
    const options = resolveOptions(p.config, { genLength: 32 }, p.generation);
    subs.forEach((s, i) => {
      const msg: SubmitMsg = {
        type: 'submit', id: i + 1, tokens: encodePrompt(p, [{ role: 'user', content: s.content }], true), promptParam: 'messages',
        options, accel: resolveAccel(p.config, s.accel ? { method: 'dyllm', threshold: 0.99 } : {}, options), stream: false, streamSteps: false, n: 1, stop: [], logprobs: null, testFault: s.fault,
      };
      sched.submit(msg);
    });
    await all;
    return sent;
  }

  const texts = (sent: FromWorker[]): Map<number, string> => new Map(sent.flatMap((m) => (m.type === 'done' ? [[m.id, m.choices[0].text] as [number, string]] : [])));
  const errors = (sent: FromWorker[]): Map<number, string> => new Map(sent.flatMap((m) => (m.type === 'error' ? [[m.id, m.message] as [number, string]] : [])));
  const prompts = [QUESTION, 'Mia has 25 coins. Mia gives 8 to Ben. How many coins does Mia have now?', 'Sam has 3 bags with 4 pens each. How many pens?'];

  test('a merged dense forward that throws is retried member by member: only the guilty request fails', async () => {
    const alone = texts(await run(prompts.map((c) => ({ content: c, fault: null }))));
    const sent = await run([{ content: prompts[0], fault: null }, { content: mark('throw-forward') + prompts[1], fault: 'throw-forward' }, { content: prompts[2], fault: null }]);
    const err = errors(sent);
    assert.deepEqual([...err.keys()], [2]);
    assert.equal(err.get(2), 'generation failed at step 0: test fault: the forward of a batch holding a throw-forward request failed');
    const got = texts(sent);
    assert.equal(got.get(1), alone.get(1));
    assert.equal(got.get(3), alone.get(3));
    assert.match(got.get(1)!, ANSWER);
    // The first tick's merged forward failed (retried alone: merged 0); later ticks merge the two survivors.
    const ticks = sent.filter((m) => m.type === 'tick');
    assert.equal(ticks[0].type === 'tick' && ticks[0].merged, 0);
    assert.ok(ticks.slice(1).every((t) => t.type === 'tick' && t.merged === 2), 'the survivors keep sharing one forward');
  });

  test('a sampling step that throws fails its request at that step; dense and DyLLM neighbours finish unchanged', async () => {
    const subs = [{ content: prompts[0], fault: null }, { content: prompts[1], fault: null, accel: true }, { content: prompts[2], fault: null }];
    const alone = texts(await run(subs));
    const sent = await run([subs[0], subs[1], { content: prompts[2], fault: 'throw-step' }]);
    assert.deepEqual([...errors(sent)], [[3, 'generation failed at step 2: test fault: step 2 of a throw-step request failed']]);
    const got = texts(sent);
    assert.equal(got.get(1), alone.get(1));
    assert.equal(got.get(2), alone.get(2));
  });
});

describe('dyllm serve: faults inside requests and workers (bundled model)', () => {
  let s: DyllmServer;
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 4, maxQueue: 4, maxTokens: 256, maxPromptTokens: 512, restartLimits: { max: 10, windowMs: 60_000 } });
  });
  after(() => s?.close());

  test('a request that throws mid-generation gets a 500 (or a stream error event); the others in its batch answer correctly', async () => {
    const [bad, badStream, good, goodStream] = await Promise.all([
      post(`${s.url}/v1/chat/completions`, chat(mark('throw-step') + QUESTION)),
      post(`${s.url}/v1/chat/completions`, chat(mark('throw-step') + QUESTION, { stream: true })),
      post(`${s.url}/v1/chat/completions`, chat(QUESTION)),
      post(`${s.url}/v1/chat/completions`, chat(QUESTION, { stream: true })),
    ]);
    assert.equal(bad.status, 500);
    assert.match(bad.headers.get('content-type')!, /application\/json/);
    const e = (await bad.json()) as ErrorBody;
    assert.deepEqual(e.error, { message: 'generation failed at step 2: test fault: step 2 of a throw-step request failed', type: 'server_error', param: null, code: 'generation_failed' });
    const ev = sseData(await badStream.text());
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal((ev.at(-2) as ErrorBody).error.code, 'generation_failed');
    assert.equal(good.status, 200);
    assert.match(((await good.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content, ANSWER);
    const gev = sseData(await goodStream.text());
    const text = gev.slice(0, -1).map((c) => (c as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '').join('');
    assert.match(text, ANSWER);
    assert.deepEqual(await health(s.url).then((h) => h.code), 200);
  });

  test('the engine worker dies (uncaught error, then exit): in-flight requests get 503, /health says engine_restarting, it comes back', async () => {
    for (const [fault, restarts] of [['uncaught', 1], ['exit', 2]] as const) {
      const long = await post(`${s.url}/v1/chat/completions`, chat(QUESTION, { stream: true, max_tokens: 256, dyllm: { stream_steps: true } }));
      const head = await readUntil(long, (t) => t.includes('"step":1,'));
      const plain = post(`${s.url}/v1/chat/completions`, chat(QUESTION, { max_tokens: 256 }));
      await new Promise((r) => setTimeout(r, 50));
      const killer = await post(`${s.url}/v1/chat/completions`, chat(mark(fault) + 'hi'));
      assert.equal(killer.status, 503, fault);
      assert.equal(killer.headers.get('retry-after'), '2');
      const ke = (await killer.json()) as ErrorBody;
      assert.equal(ke.error.code, 'engine_restarting');
      assert.match(ke.error.message, fault === 'exit' ? /the engine worker stopped: it exited with code 70 while generating this answer/ : /the engine worker stopped: test fault: uncaught exception/);
      // The in-flight stream ends with an error event, the in-flight plain request with a 503.
      const ev = sseData(head.text + (await head.rest()));
      assert.equal(ev.at(-1), '[DONE]');
      assert.equal((ev.at(-2) as ErrorBody).error.code, 'engine_restarting');
      const pl = await plain;
      assert.equal(pl.status, 503);
      assert.equal(((await pl.json()) as ErrorBody).error.code, 'engine_restarting');
      // Until the model is reloaded: /health is 503 engine_restarting and new requests get 503 + Retry-After.
      const h = await health(s.url);
      assert.equal(h.code, 503);
      assert.equal(h.body.status, 'engine_restarting');
      assert.match(h.body.reason!, /engine worker stopped/);
      const refused = await post(`${s.url}/v1/chat/completions`, chat(QUESTION));
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '2');
      assert.equal(((await refused.json()) as ErrorBody).error.code, 'engine_restarting');
      assert.equal(await metric(s.url, 'dyllm_engine_up'), 0);
      await waitHealthy(s.url);
      assert.equal(await metric(s.url, 'dyllm_engine_restarts_total'), restarts);
      assert.equal(await metric(s.url, 'dyllm_engine_up'), 1);
      const again = await post(`${s.url}/v1/chat/completions`, chat(QUESTION));
      assert.equal(again.status, 200);
      assert.match(((await again.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content, ANSWER);
    }
  });

  test('the tokenizer worker dies: its request gets 503, it is restarted, the next request is answered', async () => {
    const r = await post(`${s.url}/v1/chat/completions`, chat(mark('tokenizer-exit') + QUESTION));
    assert.equal(r.status, 503);
    const e = (await r.json()) as ErrorBody;
    assert.equal(e.error.code, 'engine_restarting');
    assert.match(e.error.message, /the tokenizer worker stopped: it exited with code 71/);
    await waitHealthy(s.url);
    assert.equal(await metric(s.url, 'dyllm_tokenizer_restarts_total'), 1);
    const ok = await post(`${s.url}/v1/completions`, { prompt: 'Mia has 5 coins.', max_tokens: 8 });
    assert.equal(ok.status, 200);
  });

  test('prompts are bounded in bytes before tokenizing and in tokens after (400 prompt_too_long, naming the field)', async () => {
    // 512 tokens × 16 bytes: 1 MB of text is refused without being encoded.
    const huge = await post(`${s.url}/v1/chat/completions`, chat('ab '.repeat(3000)));
    assert.equal(huge.status, 400);
    const he = (await huge.json()) as ErrorBody;
    assert.deepEqual([he.error.param, he.error.code], ['messages', 'prompt_too_long']);
    assert.match(he.error.message, /^messages: 9020 bytes of prompt text cannot fit this server's limit of 512 prompt tokens \(at most 8192 bytes are accepted\); shorten the prompt or raise --max-prompt-tokens$/);
    // Under the byte bound but over the token limit: encoded (off the stepping loop), then refused.
    const many = await post(`${s.url}/v1/completions`, { prompt: '1 + '.repeat(1500) });
    assert.equal(many.status, 400);
    const me = (await many.json()) as ErrorBody;
    assert.deepEqual([me.error.param, me.error.code], ['prompt', 'prompt_too_long']);
    assert.match(me.error.message, /^prompt: the prompt has \d+ tokens, over this server's limit of 512; shorten it or raise --max-prompt-tokens$/);
  });
});

test('body checks: 10,000-deep JSON and invalid UTF-8 are 400 invalid_json, not a 500 (jsonDepth skips strings)', async () => {
  const { jsonDepth, MAX_JSON_DEPTH } = await import('../../src/server/body.js');
  assert.equal(jsonDepth('{"a":"[[[[{{{{","b":[1,{"c":"\\"]]"}]}', 64), 3);
  assert.equal(jsonDepth('['.repeat(10_000) + ']'.repeat(10_000), MAX_JSON_DEPTH), MAX_JSON_DEPTH + 1);
  const s = await startServer({ modelDir: DEMO, port: 0 });
  try {
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    for (const field of ['seed', 'temperature', 'user', 'messages']) {
      const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: `{"messages":[{"role":"user","content":"hi"}],"${field}":${deep}}` });
      assert.equal(r.status, 400, field);
      assert.deepEqual((await r.json()) as ErrorBody, { error: { message: `the request body nests arrays/objects more than ${MAX_JSON_DEPTH} levels deep; an OpenAI request needs a handful`, type: 'invalid_request_error', param: null, code: 'invalid_json' } });
    }
    const bytes = Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"h'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
    const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: bytes });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as ErrorBody).error.message, 'the request body is not valid UTF-8; send JSON text encoded as UTF-8');
  } finally {
    await s.close();
  }
});

describe('dyllm serve: a crash loop ends in engine_down', () => {
  let s: DyllmServer;
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, restartLimits: { max: 1, windowMs: 60_000 } });
  });
  after(() => s?.close());

  test('one restart is tolerated; the second quick death leaves /health 503 engine_down with the reason', async () => {
    assert.equal((await post(`${s.url}/v1/chat/completions`, chat(mark('exit')))).status, 503);
    await waitHealthy(s.url);
    const r = await post(`${s.url}/v1/chat/completions`, chat(mark('exit')));
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as ErrorBody).error.code, 'engine_down');
    const h = await health(s.url);
    assert.equal(h.code, 503);
    assert.equal(h.body.status, 'engine_down');
    assert.equal(h.body.reason, 'the engine worker stopped: it exited with code 70 (2 failures within 60 s; not restarting)');
    const refused = await post(`${s.url}/v1/chat/completions`, chat(QUESTION));
    assert.equal(refused.status, 503);
    const e = (await refused.json()) as ErrorBody;
    assert.equal(e.error.code, 'engine_down');
    assert.match(e.error.message, /^the engine is not running \(the engine worker stopped: it exited with code 70 \(2 failures within 60 s; not restarting\)\); restart the server$/);
    assert.equal(await metric(s.url, 'dyllm_engine_restarts_total'), 1);
    // Everything that needs no engine still answers.
    assert.equal((await fetch(`${s.url}/v1/models`)).status, 200);
  });
});
