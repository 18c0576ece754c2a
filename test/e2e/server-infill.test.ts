/**
 * Infilling through `dyllm serve` (`dyllm.infill`, through the official `openai` package): the filled template
 * equals the library's m.infill for the same template and options (completions, chat after the generation prompt,
 * streamed and not, dense and DyLLM), the fixed text is unchanged, fills are in the summary, every bad template or
 * conflicting field is a 400 with the exact message and `dyllm.infill` (or the field) as param, and a bad infill
 * request does not disturb a concurrent normal request. The README's HTTP infill example runs as written.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { load } from '../../src/api.js';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { repoRoot } from '../helpers/paths.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. He buys 7 more. How many apples does Tom have now?';
const ANSWER_TEMPLATE = '12+7=<mask:2>. #### <mask:2>';

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

describe('dyllm serve: dyllm.infill', () => {
  let s: DyllmServer;
  let client: OpenAI;
  let m: Awaited<ReturnType<typeof load>>;
  /** The bundled model's chat prompt as text: the template a completions infill writes before the answer. */
  let chatPrompt: string;
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, maxBatch: 8, maxQueue: 8, maxTokens: 64, maxPromptTokens: 256 });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    m = await load('dyllm-demo');
    chatPrompt = m.pipeline.tokenizer.decode(m.encode(QUESTION));
  });
  after(() => s?.close());

  const complete = (template: string, extra: Record<string, unknown> = {}) =>
    client.completions.create({ model: 'x', prompt: '', dyllm: { infill: template, ...extra } } as OpenAI.CompletionCreateParamsNonStreaming) as unknown as Promise<OpenAI.Completion & { dyllm: { fills: string[][]; steps: number } }>;

  test('completions: the filled template equals m.infill (dense and DyLLM, a seed and sampling), fills in the summary', async () => {
    const template = chatPrompt + ANSWER_TEMPLATE;
    for (const opts of [{}, { accel: 'dyllm' }, { temperature: 1, seed: 3 }, { steps: 2 }] as const) {
      const lib = await m.infill(template, opts as never);
      const { accel, temperature, seed, steps } = opts as Record<string, unknown>;
      const r = (await client.completions.create({
        model: 'x', prompt: '', ...(temperature !== undefined ? { temperature, seed } : {}),
        dyllm: { infill: template, ...(accel ? { accel } : {}), ...(steps ? { steps } : {}) },
      } as OpenAI.CompletionCreateParamsNonStreaming)) as OpenAI.Completion & { dyllm: { fills: string[][]; steps: number } };
      assert.equal(r.choices[0].text, lib.text, JSON.stringify(opts));
      assert.deepEqual(r.dyllm.fills, [lib.fills]);
      assert.equal(r.dyllm.steps, lib.stats.steps);
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.equal(r.usage?.prompt_tokens, lib.promptTokens.length);
      // completion_tokens: the 4 masked positions the model generated, not the fixed text of the region.
      assert.equal(r.usage?.completion_tokens, 4);
      assert.equal(r.usage?.completion_tokens, lib.stats.generatedTokens);
      assert.equal(r.usage?.total_tokens, lib.promptTokens.length + 4);
      // The fixed text is exactly as written.
      assert.ok(r.choices[0].text.startsWith(chatPrompt + '12+7='), r.choices[0].text);
      assert.match(r.choices[0].text.slice(chatPrompt.length), /^12\+7=.*\. #### .*$/s);
    }
    const lib = await m.infill(template);
    assert.deepEqual(lib.fills, ['19', '19']);
  });

  test('streamed: the deltas add up to the filled template (text and fills as unstreamed), summary last', async () => {
    const template = chatPrompt + ANSWER_TEMPLATE;
    const lib = await m.infill(template, { accel: 'dyllm' });
    for (const stream_steps of [false, true]) {
      const stream = await client.completions.create({ model: 'x', prompt: '', stream: true, dyllm: { infill: template, accel: 'dyllm', stream_steps } } as unknown as OpenAI.CompletionCreateParamsStreaming);
      let text = '';
      let summary: any = null;
      let steps = 0;
      for await (const c of stream) {
        text += c.choices[0]?.text ?? '';
        const d = (c as any).dyllm;
        if (d?.kind === 'summary') summary = d;
        if (d?.kind === 'step') {
          steps++;
          // The canvas is the region (from the first hole on): its fixed text is there from the first step.
          assert.match(d.canvas, /^.{2}\. #### .{2}$/u, d.canvas);
        }
      }
      assert.equal(text, lib.text);
      assert.deepEqual(summary?.fills, [lib.fills]);
      assert.equal(steps, stream_steps ? lib.stats.steps : 0);
    }
  });

  test('chat: the template is the assistant turn after the generation prompt; n choices each filled', async () => {
    const lib = await m.infill(chatPrompt + ANSWER_TEMPLATE);
    const r = (await client.chat.completions.create({
      model: 'x', messages: [{ role: 'user', content: QUESTION }], dyllm: { infill: ANSWER_TEMPLATE },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)) as OpenAI.ChatCompletion & { dyllm: { fills: string[][] } };
    assert.equal(r.choices[0].message.content, lib.text.slice(chatPrompt.length));
    assert.equal(r.choices[0].message.content, '12+7=19. #### 19');
    assert.deepEqual(r.dyllm.fills, [['19', '19']]);
    assert.equal(r.usage?.prompt_tokens, lib.promptTokens.length);
    assert.equal(r.usage?.completion_tokens, 4);
    // n = 2 with sampling: choice b draws from seed + b, as m.infill with that seed.
    const two = (await client.chat.completions.create({
      model: 'x', n: 2, temperature: 1, seed: 5, messages: [{ role: 'user', content: QUESTION }], dyllm: { infill: ANSWER_TEMPLATE },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)) as OpenAI.ChatCompletion & { dyllm: { fills: string[][] } };
    for (const b of [0, 1]) {
      const want = await m.infill(chatPrompt + ANSWER_TEMPLATE, { temperature: 1, seed: 5 + b });
      assert.equal(two.choices[b].message.content, want.text.slice(chatPrompt.length), `choice ${b}`);
      assert.deepEqual(two.dyllm.fills[b], want.fills);
    }
    // Two choices of 4 masked positions each.
    assert.equal(two.usage?.completion_tokens, 8);
  });

  test('bad templates and conflicting fields are 400s with the exact message and param', async () => {
    const url = `${s.url}/v1/completions`;
    const tokens = (text: string) => m.pipeline.tokenizer.encode(text).length;
    const after = 2 + tokens(` ${'word '.repeat(100)}`);
    const before = tokens('word '.repeat(80));
    const cases: [Record<string, unknown>, string, string][] = [
      [{ dyllm: { infill: 'a <mask:0> b' } }, 'dyllm.infill: expected <mask:N> with N in [1, 1024], found "<mask:0>"', 'dyllm.infill'],
      [{ dyllm: { infill: 'no holes' } }, 'dyllm.infill: expected at least one <mask:N> hole, found none (write e.g. "The capital of France is <mask:4>.")', 'dyllm.infill'],
      [{ dyllm: { infill: 42 } }, 'dyllm.infill: expected a template string with <mask:N> holes, found number', 'dyllm.infill'],
      [{ dyllm: { infill: 'a <mask:40> b <mask:30>' } }, "dyllm.infill: 70 masks exceed this server's limit of 64 generated positions (--max-tokens); shorten the holes", 'dyllm.infill'],
      [{ dyllm: { infill: `a <mask:2> ${'word '.repeat(100)}` } }, `dyllm.infill: the template from its first hole on is ${after} tokens, over this server's limit of 64 generated positions (--max-tokens); shorten the text after the first hole or raise --max-tokens`, 'dyllm.infill'],
      [{ dyllm: { infill: `${'é'.repeat(3000)}<mask:1>` } }, "dyllm.infill: 6008 bytes of template cannot fit this server's limits of 256 prompt tokens and 64 generated positions (at most 5120 bytes are accepted); shorten the template", 'dyllm.infill'],
      [{ dyllm: { infill: `${'word '.repeat(80)}<mask:1>` } }, `dyllm.infill: the prompt has ${before} tokens, over this server's limit of 256; shorten it or raise --max-prompt-tokens`, 'dyllm.infill'],
      [{ dyllm: { infill: '<|mdm_mask|> <mask:1>' } }, 'dyllm.infill: the fixed text holds the mask token "<|mdm_mask|>"; write holes as <mask:N>', 'dyllm.infill'],
      [{ prompt: 'hi', dyllm: { infill: 'a <mask:1>' } }, 'prompt: expected no prompt (or "") with dyllm.infill: the template\'s text before its first hole is the prompt', 'prompt'],
      [{ max_tokens: 8, dyllm: { infill: 'a <mask:1>' } }, 'max_tokens: set by the infill template (its positions from the first hole on); leave it unset', 'max_tokens'],
      [{ dyllm: { infill: 'a <mask:1>', gen_length: 8 } }, 'max_tokens: set by the infill template (its positions from the first hole on); leave it unset', 'max_tokens'],
      [{ stop: '.', dyllm: { infill: 'a <mask:1>' } }, 'stop: not supported with dyllm.infill (the answer is the whole filled template); drop stop', 'stop'],
      [{ logprobs: 1, dyllm: { infill: 'a <mask:1>' } }, 'logprobs: not supported with dyllm.infill; drop logprobs', 'logprobs'],
      [{ dyllm: { infill: 'a <mask:1>', stop_at_eos: true } }, 'dyllm.stop_at_eos: an infill fills every hole and keeps the fixed text after an end token; leave it off', 'dyllm.stop_at_eos'],
      [{ dyllm: { infill: 'a <mask:3> b', block_length: 3 } }, 'dyllm.block_length: 3 must divide the gen length 4', 'dyllm.block_length'],
      [{ prompt: 'x', dyllm: { infil: 'a <mask:1>' } }, 'dyllm.infil: unknown option; did you mean "infill"? (see docs/server.md)', 'dyllm.infil'],
    ];
    for (const [body, message, param] of cases) {
      const r = await post(url, body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.deepEqual({ message: r.json.error.message, param: r.json.error.param, type: r.json.error.type }, { message, param, type: 'invalid_request_error' });
    }
    const chat = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], dyllm: { infill: 'a <mask:99>' } });
    assert.equal(chat.status, 400);
    assert.equal(chat.json.error.param, 'dyllm.infill');
  });

  test('a bad infill request does not disturb a concurrent normal request', async () => {
    const normal = (await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], max_tokens: 48, dyllm: { steps: 48 } } as OpenAI.ChatCompletionCreateParamsNonStreaming)).choices[0].message.content;
    const bads = [
      post(`${s.url}/v1/completions`, { dyllm: { infill: 'a <mask:0>' } }),
      post(`${s.url}/v1/completions`, { dyllm: { infill: '<|mdm_mask|> <mask:1>' } }),
      post(`${s.url}/v1/completions`, { dyllm: { infill: 'a <mask:3> b', block_length: 3 } }),
    ];
    const [alongside, good, ...rest] = await Promise.all([
      client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }], max_tokens: 48, dyllm: { steps: 48 } } as OpenAI.ChatCompletionCreateParamsNonStreaming),
      complete(chatPrompt + ANSWER_TEMPLATE),
      ...bads,
    ]);
    assert.equal(alongside.choices[0].message.content, normal);
    assert.equal(good.choices[0].text, chatPrompt + '12+7=19. #### 19');
    for (const r of rest as { status: number }[]) assert.equal(r.status, 400);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  });

  test('README "Infilling": the HTTP example prints what the README says', async (t) => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n### Infilling'));
    const ex = /```sh\n\$ (curl -s http:\/\/127\.0\.0\.1:8000\/v1\/[\s\S]*?\| jq [^\n]*)\n([^`]*)```/.exec(section);
    assert.ok(ex, 'README "Infilling" has a curl example with its output');
    const missing = ['curl', 'jq'].filter((tool) => spawnSync('bash', ['-c', `command -v ${tool}`]).status !== 0);
    if (missing.length > 0) return t.skip(`${missing.join(' and ')} not installed: the README example needs them`);
    const cmd = ex[1].replace('http://127.0.0.1:8000', s.url);
    const r = await promisify(execFile)('bash', ['-c', cmd], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.stdout, ex[2]);
  });
});
