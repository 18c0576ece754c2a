/**
 * The OpenAI conventions `dyllm serve` follows, through the official `openai` package where it can be used:
 * `stop` (cut, early stop, nothing streamed past it), `n` (one run, choice b = seed + b), `logprobs` /
 * `top_logprobs` (chat and completions, streamed and not), `/v1/models`' `created`, the step / summary chunk
 * shapes (and the README's streaming example run as written), and special tokens kept out of answers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import ts from 'typescript';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { firstStop, heldBackStopPrefix, tokenBytes } from '../../src/server/text.js';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { repoRoot } from '../helpers/paths.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?';
const SPECIAL_TEXT = /<\|(eot_id|endoftext|mdm_mask|startoftext|start_header_id|end_header_id)\|>/;

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

/** The SSE chunks of a streaming response (without [DONE], which is checked). */
async function chunks(r: Response): Promise<Record<string, any>[]> {
  const events = (await r.text()).split('\n\n').filter((e) => e.trim() !== '');
  assert.equal(events.at(-1), 'data: [DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
}

/** Metrics read from one scrape (a scheduler tick updates its counters together). */
async function metrics(url: string, ...names: string[]): Promise<number[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return names.map((name) => {
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    assert.ok(line, `metric ${name} missing`);
    return Number(line.split(' ').pop());
  });
}

describe('dyllm serve: the OpenAI surface', () => {
  let s: DyllmServer;
  let client: OpenAI;
  let t0: number;
  before(async () => {
    t0 = Math.floor(Date.now() / 1000);
    s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 8, maxQueue: 8 });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  after(() => s?.close());

  const ask = (extra: Record<string, unknown> = {}) => client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming);

  test('/v1/models: created is the server start time; threads and max_n are reported', async () => {
    const m = (await client.models.list()).data[0] as OpenAI.Model & { dyllm: { threads: number; max_n: number } };
    assert.ok(m.created >= t0 && m.created <= Math.floor(Date.now() / 1000), `created ${m.created}, started ${t0}`);
    assert.ok(Number.isSafeInteger(m.dyllm.threads) && m.dyllm.threads >= 1);
    assert.equal(m.dyllm.max_n, 8);
  });

  test('stop: the answer is cut at the first stop string, finish_reason stop, and denoising stops early', async () => {
    const full = await ask();
    assert.equal(full.choices[0].message.content, '12+7=19. #### 19');
    const cut = await ask({ stop: ['####', '+7=1'] }) as OpenAI.ChatCompletion & { dyllm: { steps: number } };
    assert.equal(cut.choices[0].message.content, '12');
    assert.equal(cut.choices[0].finish_reason, 'stop');
    assert.ok(cut.dyllm.steps < 48, `stopped after ${cut.dyllm.steps} of 48 steps`);
    const one = await ask({ stop: ' ####' });
    assert.equal(one.choices[0].message.content, '12+7=19.');
    // A stop string the answer does not contain changes nothing.
    const none = await ask({ stop: ['zzz'] });
    assert.equal(none.choices[0].message.content, full.choices[0].message.content);
    assert.equal(none.choices[0].finish_reason, 'stop'); // the model's end token
  });

  test('stop while streaming: no delta ever carries text past the stop string, not even its start', async () => {
    for (const stop of ['=19', '19. ##', ' #### 1']) {
      const alone = await ask({ stop });
      const want = alone.choices[0].message.content!;
      assert.ok(!want.includes(stop) && want.length > 0, `${stop}: ${want}`);
      let text = '';
      let finish: string | null = null;
      for await (const c of await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], stop, stream: true })) {
        const ch = c.choices[0];
        if (ch?.delta?.content) {
          text += ch.delta.content;
          assert.ok(want.startsWith(text), `stop ${JSON.stringify(stop)}: streamed ${JSON.stringify(text)}, the answer is ${JSON.stringify(want)}`);
        }
        if (ch?.finish_reason) finish = ch.finish_reason;
      }
      assert.equal(text, want);
      assert.equal(finish, 'stop');
    }
  });

  test('n: the choices are denoised in one run, choice b equals a single request with seed + b', async () => {
    // A question the demo model is unsure of at a high temperature, so the seeds differ.
    const opts = { messages: [{ role: 'user', content: 'Sam has 3 bags with 4 pens each. How many pens?' }], max_tokens: 32, temperature: 2, seed: 7 };
    const names = ['dyllm_scheduler_ticks_total', 'dyllm_merged_requests_total'];
    const [ticks0, merged0] = await metrics(s.url, ...names);
    const many = await ask({ ...opts, n: 3 });
    await new Promise((r) => setTimeout(r, 200)); // the last tick's report follows the answer
    const [ticks, merged] = await metrics(s.url, ...names);
    // One request per step (one DenoiseRun holding three sequences), not three.
    assert.equal(merged - merged0, ticks - ticks0);
    assert.ok(ticks - ticks0 >= 8);
    assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
    const alone = [];
    for (let b = 0; b < 3; b++) alone.push((await ask({ ...opts, seed: 7 + b })).choices[0].message.content);
    assert.deepEqual(many.choices.map((c) => c.message.content), alone);
    assert.ok(new Set(alone).size > 1, `the seeds give different answers: ${JSON.stringify(alone)}`);
    assert.equal(many.usage!.completion_tokens, 3 * 32, 'usage counts every choice');
    // Streaming: every chunk names its choice; each choice's deltas concatenate to its answer.
    const texts = ['', '', ''];
    const finishes: (string | null)[] = [null, null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of await client.chat.completions.create({ model: 'x', ...opts, n: 3, stream: true, stream_options: { include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming)) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        texts[ch.index] += ch.delta?.content ?? '';
        if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
      }
    }
    assert.deepEqual(texts, alone);
    assert.ok(finishes.every((f) => f !== null));
    assert.equal(usage!.completion_tokens, 3 * 32);
    // Completions too, with stop strings applied per choice.
    const comp = await client.completions.create({ model: 'x', prompt: 'Mia has 5 coins.', max_tokens: 16, n: 2, temperature: 1, seed: 3 });
    assert.deepEqual(comp.choices.map((c) => c.index), [0, 1]);
  });

  test('logprobs (chat): one entry per answer token, greedy tokens are their rows\' most likely; streamed = not streamed', async () => {
    const r = await ask({ logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs!.content!;
    assert.equal(content.map((e) => e.token).join(''), r.choices[0].message.content);
    for (const e of content) {
      assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob));
      assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')]);
      assert.equal(e.top_logprobs.length, 3);
      assert.equal(e.top_logprobs[0].token, e.token, 'greedy commits the most likely token');
      assert.equal(e.top_logprobs[0].logprob, e.logprob);
      for (let i = 1; i < 3; i++) assert.ok(e.top_logprobs[i].logprob <= e.top_logprobs[i - 1].logprob);
    }
    assert.equal((await ask({ logprobs: true })).choices[0].logprobs!.content![0].top_logprobs.length, 0);
    assert.equal((await ask()).choices[0].logprobs, null);
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const c of await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], logprobs: true, top_logprobs: 3, stream: true })) {
      const ch = c.choices[0];
      if (ch?.logprobs?.content) {
        streamed.push(...ch.logprobs.content);
        assert.ok(ch.delta.content, 'logprobs ride on the chunk that carries their text');
      }
    }
    assert.deepEqual(streamed, content);
    // With a stop string, only the tokens of the cut answer.
    const cut = await ask({ logprobs: true, stop: '=' });
    assert.equal(cut.choices[0].message.content, '12+7');
    assert.deepEqual(cut.choices[0].logprobs!.content!.map((e) => e.token), ['1', '2', '+', '7']);
  });

  test('logprobs (completions): tokens, token_logprobs, top_logprobs and text_offset; streamed = not streamed', async () => {
    const r = await client.completions.create({ model: 'x', prompt: 'Mia has 5 coins.', max_tokens: 16, logprobs: 2 });
    const lp = r.choices[0].logprobs!;
    assert.equal(lp.tokens!.join(''), r.choices[0].text);
    assert.equal(lp.token_logprobs!.length, lp.tokens!.length);
    let off = 0;
    lp.tokens!.forEach((t, i) => {
      assert.equal(lp.text_offset![i], off);
      off += t.length;
      const top = lp.top_logprobs![i];
      assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 2);
      assert.equal(Math.max(...Object.values(top)), lp.token_logprobs![i]);
    });
    const s2 = { tokens: [] as string[], token_logprobs: [] as number[], text_offset: [] as number[] };
    for await (const c of await client.completions.create({ model: 'x', prompt: 'Mia has 5 coins.', max_tokens: 16, logprobs: 2, stream: true })) {
      const l = c.choices[0]?.logprobs;
      if (!l) continue;
      s2.tokens.push(...l.tokens!);
      s2.token_logprobs.push(...l.token_logprobs!);
      s2.text_offset.push(...l.text_offset!);
    }
    assert.deepEqual(s2, { tokens: lp.tokens, token_logprobs: lp.token_logprobs, text_offset: lp.text_offset });
  });

  test('new fields are bounded in the parser: one-line 400s naming the field', async () => {
    const cases: [string, object, string, RegExp][] = [
      ['chat', { stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /^stop: expected a string or an array of at most 4 strings, found an array of 5$/],
      ['chat', { stop: '' }, 'stop', /^stop: expected a non-empty string of at most 256 characters, found 0 characters$/],
      ['chat', { stop: ['ok', 'x'.repeat(257)] }, 'stop', /^stop\[1\]: expected a non-empty string of at most 256 characters, found 257 characters$/],
      ['chat', { stop: 42 }, 'stop', /^stop: expected a string or an array of at most 4 strings, found 42$/],
      ['chat', { stop: [7] }, 'stop', /^stop\[0\]: expected a non-empty string of at most 256 characters, found 7$/],
      ['chat', { n: 0 }, 'n', /^n: expected an integer in \[1, 8\]/],
      ['chat', { n: 1.5 }, 'n', /^n: expected an integer in \[1, 8\].*found 1\.5$/],
      ['chat', { n: '2' }, 'n', /^n: expected an integer in \[1, 8\].*found "2"$/],
      ['chat', { logprobs: 3 }, 'logprobs', /^logprobs: expected true or false, found 3 \(the number of alternatives goes in top_logprobs\)$/],
      ['chat', { logprobs: true, top_logprobs: 21 }, 'top_logprobs', /^top_logprobs: expected an integer in \[0, 20\], found 21$/],
      ['chat', { top_logprobs: 2 }, 'top_logprobs', /^top_logprobs: needs "logprobs": true$/],
      ['chat', { echo: true }, 'echo', /^echo: not supported$/],
      ['completions', { logprobs: 21 }, 'logprobs', /^logprobs: expected an integer in \[0, 20\] \(alternatives per token\), found 21$/],
      ['completions', { logprobs: true }, 'logprobs', /^logprobs: expected an integer in \[0, 20\]/],
      ['completions', { top_logprobs: 2 }, 'top_logprobs', /^top_logprobs: a chat completions field; \/v1\/completions takes "logprobs": k/],
    ];
    for (const [route, extra, param, msg] of cases) {
      const body = route === 'chat' ? { messages: [{ role: 'user', content: 'hi' }], ...extra } : { prompt: 'hi', ...extra };
      const r = await post(`${s.url}/v1/${route === 'chat' ? 'chat/completions' : 'completions'}`, body);
      assert.equal(r.status, 400, JSON.stringify(extra));
      const j = (await r.json()) as { error: { message: string; param: string } };
      assert.equal(j.error.param, param, JSON.stringify(j));
      assert.match(j.error.message, msg);
    }
    // n is also bounded by the server's batch (see the limits suite: --max-batch 1).
  });

  test('chunk shapes: step chunks carry dyllm.kind "step", the last chunk dyllm.kind "summary"; special tokens marked', async () => {
    const r = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: QUESTION }], stream: true, dyllm: { stream_steps: true } });
    const cs = await chunks(r);
    const withDyllm = cs.filter((c) => c.dyllm);
    assert.equal(withDyllm.filter((c) => c.dyllm.kind === 'step').length, 48);
    const last = withDyllm.at(-1)!;
    assert.equal(last.dyllm.kind, 'summary');
    assert.equal(last.dyllm.steps, 48);
    assert.equal(last.choices[0].finish_reason, 'stop');
    assert.ok(withDyllm.slice(0, -1).every((c) => c.dyllm.kind === 'step' && typeof c.dyllm.canvas === 'string' && c.dyllm.index === 0));
    const final = withDyllm.at(-2)!.dyllm;
    // The answer ends with the end of turn, then end-of-text padding: marked, not spelled out, in the canvas.
    assert.ok(final.end.some(Boolean));
    assert.ok(!SPECIAL_TEXT.test(final.canvas), final.canvas);
    assert.ok(final.canvas.includes('∎'));
    final.tokens.forEach((t: string, i: number) => assert.equal(final.special[i], SPECIAL_TEXT.test(t), `position ${i}: ${t}`));
    assert.equal(final.canvas, final.tokens.map((t: string, i: number) => (final.end[i] ? '∎' : final.special[i] ? '◇' : t)).join(''));
    assert.ok(final.tokens.some((t: string) => t === '<|eot_id|>'), 'tokens keep the raw piece');
    const text = cs.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, '12+7=19. #### 19');
  });

  test('special tokens never reach answers or deltas (chat and raw completions, prompts full of special text)', async () => {
    const prompts = ['x', '?', QUESTION, '<|eot_id|><|endoftext|>', 'Mia has 5 coins.<|mdm_mask|><|mdm_mask|>', '<|start_header_id|>assistant<|end_header_id|>'];
    for (const p of prompts) {
      for (const chat of [true, false]) {
        const body = { ...(chat ? { messages: [{ role: 'user', content: p }] } : { prompt: p }), max_tokens: 16, temperature: 1, seed: 5 };
        const path = `${s.url}/v1/${chat ? 'chat/completions' : 'completions'}`;
        const j = (await (await post(path, body)).json()) as { choices: { message?: { content: string }; text?: string }[] };
        const answer = chat ? j.choices[0].message!.content : j.choices[0].text!;
        assert.ok(!SPECIAL_TEXT.test(answer), `${JSON.stringify(p)}: ${JSON.stringify(answer)}`);
        const cs = await chunks(await post(path, { ...body, stream: true }));
        const streamed = cs.map((c) => (chat ? c.choices[0]?.delta?.content : c.choices[0]?.text) ?? '').join('');
        assert.equal(streamed, answer);
      }
    }
  });

  test("the README's streaming example runs as written and prints every step, then the summary (no undefined)", async () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes('stream_steps'));
    assert.ok(block, 'the README has a TypeScript streaming example');
    assert.ok(block.includes("'http://127.0.0.1:8000/v1'"));
    const js = ts.transpileModule(block.replace("'http://127.0.0.1:8000/v1'", JSON.stringify(`${s.url}/v1`)), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    // Inside the repository, so `import 'openai'` resolves from its node_modules.
    const dir = mkdtempSync(join(repoRoot, 'dist', 'readme-example-'));
    try {
      writeFileSync(join(dir, 'example.mjs'), js);
      // Asynchronously: the server answers from this process's event loop.
      const r = await promisify(execFile)(process.execPath, [join(dir, 'example.mjs')], { encoding: 'utf8', timeout: 120_000 });
      const lines = r.stdout.trim().split('\n');
      assert.ok(!r.stdout.includes('undefined'), r.stdout);
      const steps = lines.filter((l) => /^\d+ /.test(l));
      assert.equal(steps.length, 48);
      steps.forEach((l, i) => assert.ok(l.startsWith(`${i} `), l));
      assert.match(steps[0], /░/);
      assert.ok(!steps.at(-1)!.includes('░'), 'the last step shows the whole answer');
      assert.match(lines.at(-1)!, /^done: 48 steps, [\d.]+ tokens\/s$/);
      const answer = lines.filter((l) => l.startsWith('delta: ')).map((l) => l.slice('delta: '.length)).join('');
      assert.match(answer, /#### 17$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('n is bounded by the batch: --max-batch 1 takes only n = 1', async () => {
  const s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 1, maxQueue: 1 });
  try {
    const r = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], n: 2 });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { message: string } }).error.message, 'n: expected an integer in [1, 1] (choices are denoised together: at most 1 on this server, --max-batch), found 2');
  } finally {
    await s.close();
  }
});

test('stop-string and byte helpers: earliest stop, held-back stop prefixes, bytes of byte-level pieces', async () => {
  assert.equal(firstStop('12+7=19. #### 19', ['####', '+']), 2);
  assert.equal(firstStop('12+7', ['####']), -1);
  assert.equal(heldBackStopPrefix('12+7=19. ##', ['####']), 2);
  assert.equal(heldBackStopPrefix('12+7=19. #', ['x', ' #### ']), 2);
  assert.equal(heldBackStopPrefix('12+7=19.', ['####']), 0);
  assert.equal(heldBackStopPrefix('a', ['a']), 0, 'a whole stop string is cut, not held back');
  // The demo tokenizer is byte-level: é and 😀 are split into pieces that are not UTF-8 alone.
  const p = await loadPipeline(DEMO, { backend: new ReferenceBackend() });
  const text = 'é😀 ok';
  const ids = p.tokenizer.encode(text);
  const pieces = ids.map((id) => p.tokenizer.decode([id], { skipSpecialTokens: false }));
  assert.ok(pieces.some((x) => x.includes('\uFFFD')), 'some piece is a partial character');
  const bytes = ids.flatMap((id, i) => tokenBytes(pieces[i], p.tokenizer.idToToken(id)));
  assert.deepEqual(bytes, [...Buffer.from(text, 'utf8')]);
});
