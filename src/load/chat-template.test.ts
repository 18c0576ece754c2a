import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadChatTemplate, loadSpecialTokens, renderChatTemplate } from './chat-template.js';
import { loadTokenizer } from './tokenizer.js';
import { LoadError } from './errors.js';
import { upstreamDream as DREAM_DIR, upstreamLlada as LLADA_DIR } from '../../test/helpers/paths.js';

const made: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dyllm-chat-'));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

// docs/models.md §1.5 and §2.5.
const LLADA_HI =
  '<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';
const DREAM_HI = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';

test('LLaDA: the real template renders models.md §1.5 exactly', async () => {
  const t = await loadChatTemplate(LLADA_DIR);
  assert.ok(t);
  const raw = JSON.parse(readFileSync(join(LLADA_DIR, 'tokenizer_config.json'), 'utf8'));
  assert.equal(t.template, raw.chat_template);
  assert.equal(t.bos_token, '<|startoftext|>');
  assert.equal(t.eos_token, '<|endoftext|>');
  const vars = { bos_token: t.bos_token, eos_token: t.eos_token };
  assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: 'Hi' }], { ...vars, add_generation_prompt: true }), LLADA_HI);
  // Content is trimmed; the assistant header is appended even without add_generation_prompt.
  assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: '  \n Hi \t\n' }], vars), LLADA_HI);
  assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: 'Hi' }], { ...vars, add_generation_prompt: false }), LLADA_HI);
  // BOS only before the first message; roles as given; no default system prompt.
  const multi = renderChatTemplate(
    t.template,
    [
      { role: 'system', content: 'Be brief. ' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: ' Hello!' },
      { role: 'user', content: '2+2?' },
    ],
    vars,
  );
  assert.equal(
    multi,
    '<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
});

test('Dream: the real template renders models.md §2.5 exactly', async () => {
  const t = await loadChatTemplate(DREAM_DIR);
  assert.ok(t);
  assert.equal(t.bos_token, '<|beginoftext|>');
  assert.equal(t.eos_token, '<|endoftext|>');
  const vars = { bos_token: t.bos_token, eos_token: t.eos_token };
  assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: 'Hi' }], { ...vars, add_generation_prompt: true }), DREAM_HI);
  // Content is not trimmed; no assistant header without add_generation_prompt (default false); no BOS.
  assert.equal(
    renderChatTemplate(t.template, [{ role: 'user', content: '  Hi \n' }], vars),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Hi \n<|im_end|>\n',
  );
  // A first system message replaces the default one.
  assert.equal(
    renderChatTemplate(
      t.template,
      [
        { role: 'system', content: 'S' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Yo' },
        { role: 'user', content: 'Q' },
      ],
      { ...vars, add_generation_prompt: true },
    ),
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n',
  );
  // Tool results share one user block.
  assert.equal(
    renderChatTemplate(
      t.template,
      [
        { role: 'user', content: 'Hi' },
        { role: 'tool', content: 'a' },
        { role: 'tool', content: 'b' },
      ],
      vars,
    ),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\na\n</tool_response>\n<tool_response>\nb\n</tool_response><|im_end|>\n',
  );
});

test('Dream: rendered prompt encodes to the expected ids (add_special_tokens=False)', async () => {
  const t = await loadChatTemplate(DREAM_DIR);
  assert.ok(t);
  const tok = await loadTokenizer(DREAM_DIR);
  const ids = tok.encode(renderChatTemplate(t.template, [{ role: 'user', content: 'Hi' }], { add_generation_prompt: true }));
  assert.deepEqual(ids, [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198]);
});

test('loadSpecialTokens: Dream and LLaDA', async () => {
  assert.deepEqual(await loadSpecialTokens(DREAM_DIR), { bos: '<|beginoftext|>', eos: '<|endoftext|>', pad: '<|endoftext|>', mask: '<|mask|>' });
  // LLaDA declares no mask_token; <|mdm_mask|> comes from added_tokens_decoder.
  assert.deepEqual(await loadSpecialTokens(LLADA_DIR), { bos: '<|startoftext|>', eos: '<|endoftext|>', pad: '<|endoftext|>', mask: '<|mdm_mask|>' });
});

test('loadChatTemplate: template lists, {content} tokens, special_tokens_map fallback, absent template', async () => {
  const dir = tmp();
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}' },
      ],
      bos_token: { content: '<s>', lstrip: false },
    }),
  );
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: { content: '</s>' }, mask_token: '<m>' }));
  const t = await loadChatTemplate(dir);
  assert.ok(t);
  assert.equal(t.bos_token, '<s>');
  assert.equal(t.eos_token, '</s>');
  assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: 'x' }], { bos_token: t.bos_token, eos_token: t.eos_token }), '<s>[user:x]</s>');
  assert.deepEqual(await loadSpecialTokens(dir), { bos: '<s>', eos: '</s>', mask: '<m>' });

  const none = tmp();
  writeFileSync(join(none, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
  assert.equal(await loadChatTemplate(none), null);
  assert.equal(await loadChatTemplate(tmp()), null);

  const jinja = tmp();
  writeFileSync(join(jinja, 'chat_template.jinja'), '{{ messages[0].content }}!');
  const tj = await loadChatTemplate(jinja);
  assert.ok(tj);
  assert.equal(renderChatTemplate(tj.template, [{ role: 'user', content: 'yo' }], {}), 'yo!');
});

test('errors: malformed config and templates', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"chat_template": ');
  await assert.rejects(loadChatTemplate(dir), (e: unknown) => e instanceof LoadError && e.message.includes(join(dir, 'tokenizer_config.json')));
  await assert.rejects(loadSpecialTokens(dir), LoadError);
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"chat_template": 42}');
  await assert.rejects(loadChatTemplate(dir), /chat_template to be a string/);
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"chat_template": [{"name": "default"}]}');
  await assert.rejects(loadChatTemplate(dir), /chat_template to be a string/);

  assert.throws(() => renderChatTemplate('{% if %}', [], {}), (e: unknown) => e instanceof LoadError && /parse/.test(e.message));
  assert.throws(() => renderChatTemplate("{{ raise_exception('no system role') }}", [], {}), /no system role/);
  // LLaDA's template needs bos_token: a missing one is an error, never the text "undefined".
  const llada = JSON.parse(readFileSync(join(LLADA_DIR, 'tokenizer_config.json'), 'utf8')).chat_template as string;
  assert.throws(() => renderChatTemplate(llada, [{ role: 'user', content: 'Hi' }], {}), LoadError);
});
