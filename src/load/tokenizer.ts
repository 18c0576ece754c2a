/**
 * Tokenizers for LLaDA and Dream, on top of @huggingface/tokenizers (pure JS, `tokenizer.json`-driven).
 *
 * Two routes (docs/models.md §1.5, §2.5, §6):
 * - `dir/tokenizer.json` exists (HF fast-tokenizer folders, LLaDA, test fixtures): it is used as given, with the
 *   added tokens of `tokenizer_config.json`'s `added_tokens_decoder` merged in where tokenizer.json lacks them.
 * - otherwise `vocab.json` + `merges.txt` (Dream, whose upstream has no tokenizer.json): the Qwen2 byte-level BPE
 *   is built in memory exactly as `Qwen2TokenizerFast` would: NFC, Split(Qwen2 regex, Isolated), ByteLevel
 *   without regex, BPE with merge rank = line order (no unk, no byte fallback), ByteLevel decoder, and the added
 *   tokens (with their `special` flags) matched in the raw text before pre-tokenization.
 *
 * `encode` never adds special tokens (add_special_tokens=False, as LLaDA's generate.py and Dream's
 * apply_chat_template do); prompts get their BOS etc. from the chat template.
 */
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { LoadError } from './errors.js';
import { parseJsonObject, pathExists, readOptionalJsonObject, readTextFile, type ModelFiles } from './files.js';
import { probeTokenizerPatterns } from './tokenizer-probe.js';

export interface Tokenizer {
  /** Token ids of `text`; never adds special tokens (add_special_tokens=False). Added tokens in the text are recognised. */
  encode(text: string): number[];
  /**
   * Text of `ids`. `skipSpecialTokens` drops only special tokens (non-special added tokens such as Dream's
   * `<tool_call>` stay). Ids that name no token (e.g. the padding rows of a padded embedding) decode to nothing.
   */
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Number of token ids, added tokens included (largest id + 1); the model's embedding may be larger. */
  readonly vocabSize: number;
  isSpecial(id: number): boolean;
}

/** The Qwen2 / Dream pre-tokenization regex as written upstream (Python `regex` / Oniguruma syntax). */
export const QWEN2_PRETOKENIZE_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * The same regex without the inline `(?i:…)` group, which JavaScript's RegExp lacks. The case-insensitive
 * contractions are expanded to the exact set Python's `regex` module matches: every letter folds only to its ASCII
 * pair, except `s`, which also matches U+017F LATIN SMALL LETTER LONG S (`'ſ`). (@huggingface/tokenizers' own
 * rewrite of `(?i:…)` folds ASCII only, so the expansion is done here.)
 */
export const QWEN2_PRETOKENIZE_REGEX_JS =
  "'[sS\u017f]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const CONTRACTIONS_ONIG = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const CONTRACTIONS_JS = "(?:'[sS\u017f]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/** One added token as tokenizer.json's `added_tokens` holds it. */
interface AddedTokenSpec {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

type Json = Record<string, unknown>;

const NAMED_SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

/** A special token as tokenizer_config.json / special_tokens_map.json write it: a string or `{content}`. */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** The strings of the named special tokens (bos, eos, unk, sep, pad, cls, mask, additional_special_tokens). */
function namedSpecialTokens(...configs: (Json | null)[]): Set<string> {
  const out = new Set<string>();
  for (const c of configs) {
    if (!c) continue;
    for (const k of NAMED_SPECIAL_KEYS) {
      const s = tokenContent(c[k]);
      if (s !== undefined) out.add(s);
    }
    const extra = c.additional_special_tokens;
    if (Array.isArray(extra)) {
      for (const t of extra) {
        const s = tokenContent(t);
        if (s !== undefined) out.add(s);
      }
    }
  }
  return out;
}

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/** `added_tokens_decoder` of tokenizer_config.json → added-token specs (id order). */
function addedTokensFromConfig(path: string, config: Json | null): AddedTokenSpec[] {
  const dec = config?.added_tokens_decoder;
  if (dec === undefined || dec === null) return [];
  if (typeof dec !== 'object' || Array.isArray(dec)) {
    throw new LoadError(path, 'added_tokens_decoder to be an object {id: {content, special, ...}}', Array.isArray(dec) ? 'an array' : typeof dec);
  }
  const out: AddedTokenSpec[] = [];
  for (const [key, raw] of Object.entries(dec as Json)) {
    const id = Number(key);
    const t = raw as Json;
    if (!/^\d+$/.test(key) || !isTokenId(id) || !t || typeof t !== 'object' || typeof t.content !== 'string') {
      throw new LoadError(path, 'added_tokens_decoder entries "<id>": {"content": string, ...}', `entry ${JSON.stringify(key)}: ${JSON.stringify(raw)}`);
    }
    const special = t.special === true;
    out.push({
      id,
      content: t.content,
      single_word: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
      special,
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

/** Plain constructor config for @huggingface/tokenizers (only the keys it reads). */
function hfConfig(config: Json | null, specialMap: Json | null): Json {
  const out: Json = {
    // Dream and LLaDA both set false; the library's own default is true (it would rewrite " ," → "," etc.).
    clean_up_tokenization_spaces: config?.clean_up_tokenization_spaces === true,
  };
  for (const k of NAMED_SPECIAL_KEYS) {
    const s = tokenContent(config?.[k]) ?? tokenContent(specialMap?.[k]);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

/** Replaces the Qwen2-style inline case-insensitive contractions group, which JS RegExp cannot express. */
function rewriteSplitPatterns(node: unknown): void {
  if (!node || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const n of node) rewriteSplitPatterns(n);
    return;
  }
  const o = node as Json;
  if (o.type === 'Split' && o.pattern && typeof o.pattern === 'object') {
    const p = o.pattern as Json;
    if (typeof p.Regex === 'string' && p.Regex.includes(CONTRACTIONS_ONIG)) {
      p.Regex = p.Regex.split(CONTRACTIONS_ONIG).join(CONTRACTIONS_JS);
    }
  }
  for (const k of ['pretokenizers', 'pre_tokenizer']) if (k in o) rewriteSplitPatterns(o[k]);
}

function construct(file: string, json: Json, config: Json): HfTokenizer {
  try {
    return new HfTokenizer(json, config);
  } catch (e) {
    throw new LoadError(file, 'a tokenizer that @huggingface/tokenizers can build', `an error: ${(e as Error).message}`);
  }
}

function wrap(hf: HfTokenizer, specialNames: Set<string>, addedSpecialIds: Iterable<number>, cleanUp: boolean): Tokenizer {
  const model = hf.model;
  if (!model) throw new Error('tokenizer: @huggingface/tokenizers built no model');
  const special = new Set<number>(addedSpecialIds);
  for (const s of specialNames) {
    const id = hf.token_to_id(s);
    if (id !== undefined) special.add(id);
  }
  // Largest id + 1. Not just vocab.length: an id past 2^32 - 2 is no array index, so the library stores it as a
  // plain property and the length does not see it (a hostile tokenizer could then produce ids past the embedding).
  let vocabSize = model.vocab.length;
  for (const id of model.tokens_to_ids.values()) if (id + 1 > vocabSize) vocabSize = id + 1;
  return {
    vocabSize,
    encode(text: string): number[] {
      if (text.length === 0) return [];
      return hf.encode(text, { add_special_tokens: false }).ids;
    },
    decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string {
      const skip = opts?.skipSpecialTokens === true;
      const keep: number[] = [];
      for (const id of ids) {
        if (hf.id_to_token(id) === undefined) continue;
        if (skip && special.has(id)) continue;
        keep.push(id);
      }
      // The library throws on an empty list.
      if (keep.length === 0) return '';
      return hf.decode(keep, { skip_special_tokens: false, clean_up_tokenization_spaces: cleanUp });
    },
    tokenToId(token: string): number | undefined {
      return hf.token_to_id(token);
    },
    idToToken(id: number): string | undefined {
      return Number.isInteger(id) && id >= 0 ? hf.id_to_token(id) : undefined;
    },
    isSpecial(id: number): boolean {
      return special.has(id);
    },
  };
}

/** Route 1: a tokenizer.json (plus tokenizer_config.json for added tokens / special names, when present). */
async function loadFromTokenizerJson(dir: string, config: Json | null, specialMap: Json | null, files?: ModelFiles): Promise<Tokenizer> {
  const file = join(dir, 'tokenizer.json');
  const json = parseJsonObject(file, readTextFile(file, 'tokenizer', files));
  const model = json.model;
  if (!model || typeof model !== 'object' || Array.isArray(model)) {
    throw new LoadError(file, 'a "model" object (BPE, WordPiece or Unigram with its vocab)', model === undefined ? 'no "model" key' : JSON.stringify(model).slice(0, 80));
  }
  const type = (model as Json).type;
  if (type !== undefined && type !== 'BPE' && type !== 'WordPiece' && type !== 'Unigram') {
    throw new LoadError(file, 'model.type BPE, WordPiece or Unigram', JSON.stringify(type));
  }
  if (!('vocab' in (model as Json))) throw new LoadError(file, 'model.vocab', 'no vocab in "model"');
  if ((model as Json).type === 'BPE' && !Array.isArray((model as Json).merges)) {
    throw new LoadError(file, 'model.merges to be a list for a BPE model', typeof (model as Json).merges);
  }
  const rawAdded = json.added_tokens ?? [];
  if (!Array.isArray(rawAdded)) throw new LoadError(file, 'added_tokens to be a list', typeof rawAdded);
  const added: AddedTokenSpec[] = [];
  for (const t of rawAdded as Json[]) {
    if (!t || typeof t !== 'object' || typeof t.content !== 'string' || !isTokenId(t.id)) {
      throw new LoadError(file, 'added_tokens entries {"id": int, "content": string, ...}', JSON.stringify(t).slice(0, 120));
    }
    const special = t.special === true;
    added.push({
      id: t.id,
      content: t.content,
      single_word: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
      special,
    });
  }
  // tokenizer.json wins; tokens only tokenizer_config.json knows are appended (what transformers does on load).
  const haveIds = new Set(added.map((t) => t.id));
  const haveContent = new Set(added.map((t) => t.content));
  for (const t of addedTokensFromConfig(join(dir, 'tokenizer_config.json'), config)) {
    if (!haveIds.has(t.id) && !haveContent.has(t.content)) added.push(t);
  }
  const full: Json = {
    ...json,
    added_tokens: added,
    normalizer: json.normalizer ?? null,
    pre_tokenizer: json.pre_tokenizer ?? null,
    post_processor: json.post_processor ?? null,
    decoder: json.decoder ?? null,
  };
  rewriteSplitPatterns(full.pre_tokenizer);
  const cfg = hfConfig(config, specialMap);
  // The file's own Regex patterns must not backtrack catastrophically (tokenizer-probe.ts); probed before the build,
  // which runs the added tokens through the normalizer.
  await probeTokenizerPatterns(file, full.normalizer, full.pre_tokenizer, added);
  const hf = construct(file, full, cfg);
  checkIds(file, hf);
  return wrap(hf, namedSpecialTokens(config, specialMap), added.filter((t) => t.special).map((t) => t.id), cfg.clean_up_tokenization_spaces === true);
}

/** Every id of the built vocabulary is a non-negative integer (the library stores whatever the file says). */
function checkIds(file: string, hf: HfTokenizer): void {
  for (const [tok, id] of hf.model!.tokens_to_ids) {
    if (!isTokenId(id)) throw new LoadError(file, 'token ids that are non-negative integers', `${JSON.stringify(tok)}: ${JSON.stringify(id)}`);
  }
}

/** The file a folder's tokenizer is built from (for messages): tokenizer.json, else vocab.json. */
export function tokenizerFile(dir: string, files?: ModelFiles): string {
  return pathExists(join(dir, 'tokenizer.json'), files) ? join(dir, 'tokenizer.json') : join(dir, 'vocab.json');
}

/** Route 2: Qwen2 byte-level BPE from vocab.json + merges.txt (Dream; models.md §2.5). */
async function loadQwen2FromVocabMerges(dir: string, config: Json | null, specialMap: Json | null, files?: ModelFiles): Promise<Tokenizer> {
  const cls = config?.tokenizer_class;
  if (typeof cls === 'string' && !/qwen2|dream/i.test(cls)) {
    throw new LoadError(
      join(dir, 'tokenizer_config.json'),
      'tokenizer_class Qwen2Tokenizer / DreamTokenizer for a folder with vocab.json + merges.txt and no tokenizer.json',
      JSON.stringify(cls),
      'only the Qwen2 byte-level BPE is built from vocab.json + merges.txt; provide a tokenizer.json for other tokenizers',
    );
  }
  const vocabFile = join(dir, 'vocab.json');
  const mergesFile = join(dir, 'merges.txt');
  const vocabText = readTextFile(vocabFile, 'tokenizer', files);
  const mergesText = readTextFile(mergesFile, 'tokenizer', files);
  const vocab = parseJsonObject(vocabFile, vocabText);
  const merges: [string, string][] = [];
  const mergeLines: number[] = [];
  const lines = mergesText.split('\n');
  for (let i = 0; i < lines.length; i++) {
    // Qwen2Tokenizer: line.strip(); skip "#version:" on the first line and empty lines; rank = order of the rest.
    const line = lines[i].trim();
    if (line === '' || (i === 0 && line.startsWith('#version:'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      throw new LoadError(mergesFile, 'one merge "left right" per line', `line ${i + 1}: ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push(parts as [string, string]);
    mergeLines.push(i + 1);
  }

  let added = addedTokensFromConfig(join(dir, 'tokenizer_config.json'), config);
  const special = namedSpecialTokens(config, specialMap);
  // added_tokens.json (content → id, no flags): anything added_tokens_decoder lacks; special iff a named special token.
  const addedJsonFile = join(dir, 'added_tokens.json');
  const addedJson = readOptionalJsonObject(addedJsonFile, 'json-config', files);
  if (addedJson) {
    const haveIds = new Set(added.map((t) => t.id));
    for (const [content, id] of Object.entries(addedJson)) {
      if (!isTokenId(id)) throw new LoadError(addedJsonFile, 'a map from token to non-negative integer id', `${JSON.stringify(content)}: ${JSON.stringify(id)}`);
      const known = added.find((t) => t.id === id);
      if (known && known.content !== content) {
        throw new LoadError(addedJsonFile, `id ${id} to be ${JSON.stringify(known.content)} as in tokenizer_config.json`, JSON.stringify(content));
      }
      if (haveIds.has(id)) continue;
      const isSp = special.has(content);
      added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: !isSp, special: isSp });
    }
    added = added.sort((a, b) => a.id - b.id);
  }
  for (const t of added) {
    const inVocab = Object.hasOwn(vocab, t.content) ? vocab[t.content] : undefined;
    if (inVocab !== undefined && inVocab !== t.id) {
      throw new LoadError(dir, `added token ${JSON.stringify(t.content)} to keep its vocab.json id ${inVocab}`, `id ${t.id}`);
    }
  }

  const json: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_PRETOKENIZE_REGEX_JS }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const cfg = hfConfig(config, specialMap);
  const hf = construct(vocabFile, json, cfg);
  // Validated after construction, through the library's token → id Map: a second pass over the 151k-key object
  // (Object.entries / hasOwn on a dictionary-mode object) would cost ~0.2 s.
  const ids = hf.model!.tokens_to_ids;
  checkIds(vocabFile, hf);
  for (let m = 0; m < merges.length; m++) {
    const [a, b] = merges[m];
    if (!ids.has(a) || !ids.has(b) || !ids.has(a + b)) {
      throw new LoadError(mergesFile, 'merges whose parts and result are all in vocab.json', `line ${mergeLines[m]}: ${JSON.stringify(a + ' ' + b)}`, 'vocab.json and merges.txt do not belong together');
    }
  }
  return wrap(hf, special, added.filter((t) => t.special).map((t) => t.id), cfg.clean_up_tokenization_spaces === true);
}

/**
 * Loads the tokenizer of a model folder: `tokenizer.json` if present, else a Qwen2 byte-level BPE from
 * `vocab.json` + `merges.txt`. Throws LoadError naming the folder when neither is there. `files`: another source
 * of the folder's files (load/bytes.ts); default the folder on disk.
 */
export async function loadTokenizer(dir: string, files?: ModelFiles): Promise<Tokenizer> {
  const config = readOptionalJsonObject(join(dir, 'tokenizer_config.json'), 'tokenizer-config', files);
  const specialMap = readOptionalJsonObject(join(dir, 'special_tokens_map.json'), 'json-config', files);
  // Anything at these names counts as there (and is then refused if it is not a regular file within its limit).
  if (pathExists(join(dir, 'tokenizer.json'), files)) return loadFromTokenizerJson(dir, config, specialMap, files);
  const hasVocab = pathExists(join(dir, 'vocab.json'), files);
  const hasMerges = pathExists(join(dir, 'merges.txt'), files);
  if (hasVocab && hasMerges) return loadQwen2FromVocabMerges(dir, config, specialMap, files);
  throw new LoadError(
    dir,
    'tokenizer.json, or vocab.json + merges.txt (Qwen2 byte-level BPE)',
    hasVocab ? 'vocab.json without merges.txt' : hasMerges ? 'merges.txt without vocab.json' : 'no tokenizer files',
    'copy the tokenizer files of the Hugging Face model repository into this folder',
  );
}
