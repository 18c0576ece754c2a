/**
 * Chat templates are code from the model folder: rendering is bounded in time, output and source size, and a
 * template that breaks a limit is a one-line LoadError naming it, after which rendering still works.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ChatTemplateError, loadChatTemplate, MAX_TEMPLATE_SOURCE_CHARS, renderChatTemplate, stopTemplateHelper, templateLimits } from './chat-template.js';
import { ConfigError, LoadError } from './errors.js';

const made: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dyllm-tpl-'));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
  stopTemplateHelper();
});

const HI = [{ role: 'user', content: 'Hi' }];
const SIMPLE = '{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}';

function refused(f: () => unknown, reason: string, ...parts: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ChatTemplateError && e instanceof LoadError, String(e));
    assert.equal(e.reason, reason, e.message);
    assert.ok(!e.message.includes('\n'), e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  });
}

test('runaway templates are stopped at the deadline, and the next render works', { timeout: 120_000 }, () => {
  const limits = { timeoutMs: 300 };
  const hostile = [
    '{% for i in range(100000000) %}x{% endfor %}',
    '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
    // Strings doubled until the helper's heap or V8's string limit gives out.
    "{% set ns = namespace(s='aaaaaaaaaaaaaaaa') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    '{% set ns = namespace(l=[]) %}{% for i in range(100000000) %}{% set ns.l = ns.l + [i] %}{% endfor %}',
  ];
  for (const tpl of hostile) {
    const t0 = performance.now();
    let e: unknown;
    try {
      renderChatTemplate(tpl, HI, {}, { name: 'hostile.jinja', limits });
    } catch (err) {
      e = err;
    }
    const ms = performance.now() - t0;
    assert.ok(e instanceof ChatTemplateError, `${tpl}: ${String(e)}`);
    assert.ok(['timeout', 'render', 'size'].includes(e.reason), `${tpl}: ${e.message}`);
    assert.ok(e.message.startsWith('hostile.jinja: expected '), e.message);
    if (e.reason === 'timeout') {
      assert.match(e.message, /^hostile\.jinja: expected a template that renders within 300 ms, found a render that had not finished/);
    }
    // Stopped near the deadline (generous: the machine may be busy), never left running.
    assert.ok(ms < 20_000, `${tpl}: ${ms} ms`);
    assert.equal(renderChatTemplate(SIMPLE, HI, {}, { limits }), '[user:Hi]');
  }
});

test('the rendered output is bounded', () => {
  const tpl = '{% for i in range(1000) %}0123456789{% endfor %}';
  assert.equal(renderChatTemplate(tpl, [], {}, { limits: { maxOutputChars: 10_000 } }).length, 10_000);
  refused(() => renderChatTemplate(tpl, [], {}, { name: 'x.jinja', limits: { maxOutputChars: 9_999 } }), 'size', 'x.jinja: expected a rendered prompt of at most 9999 characters, found 10000 characters');
});

test('the template source is bounded', () => {
  const big = 'x'.repeat(MAX_TEMPLATE_SOURCE_CHARS + 1);
  refused(() => renderChatTemplate(big, HI), 'source', `expected a chat template of at most ${MAX_TEMPLATE_SOURCE_CHARS} characters`);
  assert.equal(renderChatTemplate('x'.repeat(MAX_TEMPLATE_SOURCE_CHARS), HI).length, MAX_TEMPLATE_SOURCE_CHARS);
});

test('template errors, recursion and non-data variables are LoadErrors naming the template', () => {
  // A deadline far beyond these renders (~0.3 s for the macro on an idle machine): this is about the error kinds.
  const limits = { timeoutMs: 30_000 };
  refused(() => renderChatTemplate("{{ raise_exception('no system role') }}", HI, {}, { name: 'T', limits }), 'render', 'T: expected a template that renders these messages, found an error: no system role');
  refused(() => renderChatTemplate('{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}', HI, {}, { limits }), 'render');
  refused(() => renderChatTemplate('{% if %}', HI, {}, { limits }), 'parse', 'parse error');
  refused(() => renderChatTemplate(SIMPLE, HI, { tools: () => 1 }, { limits }), 'clone', 'plain data');
});

test('limits: defaults, overrides, DYLLM_TEMPLATE_TIMEOUT_MS', () => {
  assert.deepEqual(templateLimits({}, {}), { timeoutMs: 5000, maxOutputChars: 4 * 1024 * 1024 });
  assert.equal(templateLimits({}, { DYLLM_TEMPLATE_TIMEOUT_MS: '2500' }).timeoutMs, 2500);
  assert.equal(templateLimits({ timeoutMs: 50 }, { DYLLM_TEMPLATE_TIMEOUT_MS: '2500' }).timeoutMs, 50);
  assert.throws(() => templateLimits({}, { DYLLM_TEMPLATE_TIMEOUT_MS: '1s' }), (e: unknown) => e instanceof ConfigError && e.message === 'DYLLM_TEMPLATE_TIMEOUT_MS: expected an integer number of milliseconds in [1, 60000], found "1s"');
  assert.throws(() => templateLimits({ timeoutMs: 0 }, {}), /template timeoutMs: expected an integer in \[1, 60000\], found 0/);
  assert.throws(() => templateLimits({ maxOutputChars: 1.5 }, {}), /template maxOutputChars/);
});

test('load: a template that runs away on the probe render stops the load, naming its file; a strict one loads', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for i in range(100000000) %}{% endfor %}' }));
  await assert.rejects(loadChatTemplate(dir, { limits: { timeoutMs: 200 } }), (e: unknown) => {
    assert.ok(e instanceof ChatTemplateError && e.reason === 'timeout', String(e));
    assert.ok(e.message.startsWith(`${join(dir, 'tokenizer_config.json')} (chat_template): expected a template that renders within 200 ms`), e.message);
    return true;
  });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% if %}' }));
  await assert.rejects(loadChatTemplate(dir), (e: unknown) => e instanceof ChatTemplateError && e.reason === 'parse');
  // A template that refuses the probe's single user message is not broken: it errs per request.
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}ok" }));
  const t = await loadChatTemplate(dir);
  assert.ok(t);
  assert.equal(t.source, `${join(dir, 'tokenizer_config.json')} (chat_template)`);
  assert.equal(renderChatTemplate(t.template, [{ role: 'system', content: '' }]), 'ok');

  const jinja = tmp();
  writeFileSync(join(jinja, 'chat_template.jinja'), '{{ "x" }}'.repeat(MAX_TEMPLATE_SOURCE_CHARS));
  await assert.rejects(loadChatTemplate(jinja), (e: unknown) => e instanceof LoadError && e.message.startsWith(`${join(jinja, 'chat_template.jinja')}: expected a chat template file of at most 256 KiB`));
});

test('rendering is synchronous inside a worker thread too (the server renders in its engine thread)', { timeout: 60_000 }, async () => {
  const src = `
    import { parentPort } from 'node:worker_threads';
    const { renderChatTemplate } = await import(${JSON.stringify(new URL('./chat-template.js', import.meta.url).href)});
    const out = [];
    out.push(renderChatTemplate(${JSON.stringify(SIMPLE)}, [{ role: 'user', content: 'w' }]));
    try { renderChatTemplate('{% for i in range(100000000) %}{% endfor %}', [], {}, { limits: { timeoutMs: 200 } }); out.push('no error'); }
    catch (e) { out.push(e.reason); }
    out.push(renderChatTemplate(${JSON.stringify(SIMPLE)}, [{ role: 'user', content: 'again' }]));
    parentPort.postMessage(out);
  `;
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(src)}`));
  const out = await new Promise((res, rej) => {
    w.once('message', res);
    w.once('error', rej);
  });
  await w.terminate();
  assert.deepEqual(out, ['[user:w]', 'timeout', '[user:again]']);
});
