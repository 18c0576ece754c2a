/**
 * The library API (src/api.ts) against the lower-level one it is built on: the same tokens and text as
 * encodePrompt + generate + decodeAnswer, streamed steps that end in the returned result, batches equal to prompts
 * one by one, prompt handling (chat template, raw, message lists), option errors and cancellation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { realpathSync } from 'node:fs';
import {
  bundledModelPath, decodeAnswer, encodePrompt, generate, load, resolveAccel, resolveOptions,
  type BatchStep, type Completion, type DyllmModel, type GenerateResult, type Step,
} from '../src/index.js';
import { fixturePath } from './helpers/fixtures.js';

const Q = 'Tom has 12 apples.';
const Q2 = 'Ben has 3 coins and finds 4 more.';

async function lowLevel(m: DyllmModel, prompt: string, chat: boolean, gen: Record<string, unknown>, accel: Record<string, unknown> = {}) {
  const p = m.pipeline;
  const ids = encodePrompt(p, prompt, chat);
  const options = resolveOptions(p.config, gen, p.generation);
  const it = generate(p.model, p.ids, { prompts: [ids], options, accel: resolveAccel(p.config, accel, options) });
  let r = await it.next();
  while (!r.done) r = await it.next();
  const res = r.value as GenerateResult;
  return { ids, tokens: Array.from(res.tokens[0]), text: decodeAnswer(p, res.tokens[0]), stats: res.stats };
}

async function collect<S, R>(it: AsyncGenerator<S, R, undefined>): Promise<{ steps: S[]; result: R }> {
  const steps: S[] = [];
  let r = await it.next();
  for (; !r.done; r = await it.next()) steps.push(r.value);
  return { steps, result: r.value };
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
  return 'resolved';
}

for (const fixture of ['llada-tiny', 'dream-tiny']) {
  describe(`library API on ${fixture}`, async () => {
    const m = await load(fixturePath(fixture), { backend: 'reference' });
    const gen = { genLength: 16, steps: 16 };

    test('generate gives what encodePrompt + generate + decodeAnswer give, chat template by default', async () => {
      assert.equal(m.hasChatTemplate, true);
      assert.equal(m.arch, fixture.startsWith('llada') ? 'llada' : 'dream');
      const want = await lowLevel(m, Q, true, gen);
      const got = await m.generate(Q, gen);
      assert.deepEqual(got.tokens, want.tokens);
      assert.equal(got.text, want.text);
      assert.deepEqual(got.promptTokens, want.ids);
      assert.deepEqual(m.encode(Q), want.ids);
      assert.equal(got.stats.backend, 'reference');
      assert.equal(got.stats.accel, 'none');
      assert.equal(got.stats.steps, want.stats.steps);
      assert.equal(got.stats.nfe, want.stats.nfe);
    });

    test('raw: true sends the text without the template; a message list is the templated string', async () => {
      const raw = await m.generate(Q, { ...gen, raw: true });
      const want = await lowLevel(m, Q, false, gen);
      assert.deepEqual(raw.promptTokens, m.pipeline.tokenizer.encode(Q));
      assert.deepEqual(raw.tokens, want.tokens);
      assert.notDeepEqual(raw.promptTokens, m.encode(Q));
      const msgs = await m.generate([{ role: 'user', content: Q }], gen);
      assert.deepEqual(msgs.promptTokens, m.encode(Q));
      assert.deepEqual(msgs.tokens, (await m.generate(Q, gen)).tokens);
    });

    test('acceleration options are flat (accel, threshold) and reach the engine', async () => {
      const opts = { ...gen, accel: 'dyllm' as const, threshold: 0.9, fullSteps: 2 };
      const want = await lowLevel(m, Q, true, gen, { method: 'dyllm', threshold: 0.9, fullSteps: 2 });
      const got = await m.generate(Q, opts);
      assert.deepEqual(got.tokens, want.tokens);
      assert.equal(got.stats.accel, 'dyllm');
      assert.equal(got.stats.salientFraction, want.stats.salientFraction);
      assert.ok(got.stats.salientFraction < 1, `salient fraction ${got.stats.salientFraction}`);
      const { steps } = await collect(m.stream(Q, opts));
      // Dense warm-up steps recompute every position; sparse steps a subset, and fewer rows than dense.
      for (const s of steps.slice(0, 2)) assert.deepEqual(s.recomputed, [...Array(gen.genLength).keys()]);
      for (const s of steps.slice(2)) assert.ok(Array.isArray(s.recomputed) && s.recomputed.every((o) => o >= 0 && o < gen.genLength));
      assert.ok(steps.slice(2).some((s) => s.ffnFraction < 1 && s.recomputed!.length < gen.genLength));
    });

    test('stream: one event per step, canvases that only gain tokens, and the result as return value', async () => {
      const { steps, result } = await collect<Step, Completion>(m.stream(Q, gen));
      const alone = await m.generate(Q, gen);
      assert.deepEqual(result.tokens, alone.tokens);
      assert.equal(result.text, alone.text);
      assert.equal(steps.length, result.stats.steps);
      const mask = m.pipeline.ids.mask;
      let prev: number[] = new Array(gen.genLength).fill(mask);
      steps.forEach((s, i) => {
        assert.equal(s.step, i);
        assert.equal(s.maxSteps, gen.steps);
        assert.equal(s.tokens.length, gen.genLength);
        for (const c of s.committed) {
          assert.equal(prev[c], mask, `step ${i}: offset ${c} was committed before`);
          assert.notEqual(s.tokens[c], mask, `step ${i}: offset ${c} committed as a mask`);
        }
        s.tokens.forEach((t, j) => {
          if (prev[j] !== mask) assert.equal(t, prev[j], `step ${i}: offset ${j} changed after it was committed`);
        });
        const masks = s.tokens.filter((t) => t === mask).length;
        assert.equal([...s.canvas].filter((ch) => ch === '░').length, masks, `step ${i}: the canvas shows each mask as ░`);
        assert.equal(s.ffnFraction, 1);
        assert.equal(s.recomputed, null, 'no acceleration, no recomputed offsets');
        prev = s.tokens;
      });
      assert.deepEqual(steps[steps.length - 1].tokens, result.tokens);
      assert.equal(steps[steps.length - 1].done, true);
    });

    test('a batch gives what each prompt gives alone (prompt b with seed + b), in order; a batch stream has one canvas per prompt', async () => {
      const batch = await m.generate([Q, Q2], gen);
      assert.equal(batch.length, 2);
      for (const [i, q] of [Q, Q2].entries()) {
        const alone = await m.generate(q, { ...gen, seed: i });
        assert.deepEqual(batch[i].tokens, alone.tokens, `prompt ${i}`);
        assert.equal(batch[i].text, alone.text);
      }
      assert.equal(batch[0].stats, batch[1].stats, 'a batch is one run: its prompts share the statistics');
      const { steps, result } = await collect<BatchStep, Completion[]>(m.stream([Q, Q2], gen));
      assert.deepEqual(result.map((c) => c.tokens), batch.map((c) => c.tokens));
      for (const s of steps) assert.equal(s.sequences.length, 2);
      assert.deepEqual(steps[steps.length - 1].sequences.map((s) => s.tokens), batch.map((c) => c.tokens));
    });

    test('bad prompts and options are refused with one line naming them, before anything runs', async () => {
      const cases: [Promise<unknown>, string][] = [
        [m.generate(Q, { genLenght: 4 } as never), 'ConfigError: unknown option "genLenght"; did you mean "genLength"?'],
        [m.generate(Q, { accel: 'fast' as never }), 'OptionError: accel: expected one of none, dyllm, prefix, dual, dllm-cache, found "fast"'],
        [m.generate(Q, { threshold: 2 }), 'OptionError: threshold: expected a number in (-1, 1.5], found 2'],
        [m.generate(Q, { raw: 'yes' as never }), 'ConfigError: raw: expected true or false, found a string'],
        [m.generate(Q, { signal: {} as never }), 'ConfigError: signal: expected an AbortSignal, found an object'],
        [m.generate([], gen), 'ConfigError: prompt: expected a string, a list of chat messages or a list of prompts, found an empty list'],
        [m.generate(42 as never, gen), 'ConfigError: prompt: expected a string, a list of chat messages or a list of prompts, found number 42'],
        [m.generate([Q, 7 as never], gen), 'ConfigError: prompt 1: expected a string or a list of chat messages, found number 7'],
        [m.generate(new Array(1025).fill(Q), gen), 'ConfigError: prompts: expected at most 1024 prompts in one call, found 1025'],
        [m.generate([{ role: 'user', content: Q }], { raw: true }), 'ConfigError: prompt: a message list is rendered by the chat template; pass a string to send it raw'],
        [m.generate([{ role: 'user', content: 3 }] as never, gen), 'ConfigError: prompt: message 0: expected {role: string, content: string}, found role a string and content number 3'],
      ];
      for (const [p, want] of cases) assert.equal(await rejection(p), want);
      const cap = Math.min(m.pipeline.config.maxSequenceLength, 8192);
      assert.match(await rejection(m.generate(Q, { genLength: 0 })), new RegExp(`^OptionError: genLength: expected an integer in \\[1, ${cap}\\] \\(at most [^)]+\\), found 0$`));
      // A stream refuses at its first step.
      assert.match(await rejection(m.stream(Q, { steps: 0 }).next()), /^OptionError: steps: expected an integer in \[1, \d+\] \(at most the gen length[^)]*\), found 0$/);
    });

    test('an aborted signal stops the generation and rejects with its reason', async () => {
      const before = new AbortController();
      before.abort();
      assert.equal(await rejection(m.generate(Q, { ...gen, signal: before.signal })), 'AbortError: This operation was aborted');
      const during = new AbortController();
      const it = m.stream(Q, { ...gen, signal: during.signal });
      const first = await it.next();
      assert.equal(first.done, false);
      during.abort(new Error('enough'));
      assert.equal(await rejection(it.next()), 'Error: enough');
    });
  });
}

test('load() with no name loads the bundled demo model', async () => {
  const m = await load(undefined, { backend: 'reference' });
  assert.equal(realpathSync(m.dir), realpathSync(bundledModelPath));
  assert.equal(m.hasChatTemplate, true);
  assert.equal(m.backend, 'reference');
});
