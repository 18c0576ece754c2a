/**
 * config.json / generation_config.json -> one frozen ModelConfig. The raw HF keys are read only here; derived
 * sizes (headDim, kvGroups) are computed only here. Unsupported architecture switches are refused with the key
 * and value that made them unsupported, rather than silently computing something else. Special token ids must
 * name rows of the embedding, and generation_config.json's values are checked at load (checkGeneration), each error
 * naming the file and the key.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { LoadError } from './errors.js';
import { readJsonObject, readOptionalJsonObject, type ModelFiles } from './files.js';

export type Architecture = 'llada' | 'dream';

/**
 * A folder written by `dyllm quantize` (docs/quantization.md): config.json's "quantization_config".
 *   {"quant_method": "dyllm", "format": "int8" | "q4", "group_size": -1 (int8: one scale per output row) | 32 (q4),
 *    "lm_head": "int8" | "q4" | "none"}
 * Which tensors are quantised is read from the checkpoint itself (an I8 / U8 weight with a "<name>_scale" tensor);
 * lm_head says what the LM head is, so a head tied to the (never quantised) embedding is quantised at load.
 */
export interface QuantizationConfig {
  readonly format: 'int8' | 'q4';
  readonly groupSize: number;
  readonly lmHead: 'int8' | 'q4' | 'none';
}

export interface ModelConfig {
  readonly arch: Architecture;
  readonly hiddenSize: number; // D
  readonly numLayers: number;
  readonly numHeads: number; // H
  readonly numKvHeads: number; // Hkv
  readonly headDim: number; // Dh = D / H
  readonly kvGroups: number; // H / Hkv
  readonly intermediateSize: number; // FFN inner size
  readonly vocabSize: number; // rows of the embedding and the LM head (logit width)
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  readonly qkvBias: boolean;
  readonly tieWordEmbeddings: boolean;
  /** Dream predicts token i from the output at i-1 (applied by the sampler, not the model). */
  readonly shiftLogits: boolean;
  readonly maskTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly bosTokenId: number | null;
  /** Longest sequence (prompt + canvas) the model was built for: LLaDA `max_sequence_length`, Dream `max_position_embeddings`. */
  readonly maxSequenceLength: number;
  /** config.json's "quantization_config" of a quantised folder; null for a dense checkpoint. */
  readonly quantization: QuantizationConfig | null;
}

/** generation_config.json, as given (every key optional). */
export interface GenerationDefaults {
  readonly [key: string]: unknown;
}

class Reader {
  constructor(readonly file: string, readonly raw: Record<string, unknown>) {}

  int(key: string, opts: { optional?: false; min?: number }): number;
  int(key: string, opts: { optional: true; min?: number }): number | null;
  int(key: string, opts: { optional?: boolean; min?: number } = {}): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (opts.optional) return null;
      throw new LoadError(this.file, `key "${key}" (an integer)`, 'it is missing');
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (opts.min ?? 0)) {
      throw new LoadError(this.file, `"${key}" to be an integer ≥ ${opts.min ?? 0}`, JSON.stringify(v));
    }
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new LoadError(this.file, `key "${key}" (a number)`, 'it is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new LoadError(this.file, `"${key}" to be a positive number`, JSON.stringify(v));
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new LoadError(this.file, `"${key}" to be true or false`, JSON.stringify(v));
    return v;
  }

  /** Refuse a switch this engine does not implement. */
  require(key: string, ok: (v: unknown) => boolean, expected: string): void {
    const v = this.raw[key];
    if (!ok(v)) throw new LoadError(this.file, `"${key}" ${expected}`, JSON.stringify(v), 'this architecture variant is not supported');
  }
}

/** Where a token id is read from: generation_config.json first where the family's code reads it there, then config.json. */
type IdSource = { readonly file: string; readonly raw: Record<string, unknown> };

/**
 * A special token id: the first source that sets `key` (not null) must hold an integer in [0, vocab); null when
 * none sets it and it is optional. `vocabWhy` says where the bound comes from.
 */
function tokenId(sources: readonly IdSource[], key: string, vocab: number, vocabWhy: string, optional: boolean): number | null {
  for (const src of sources) {
    const v = src.raw[key];
    if (v === undefined || v === null) continue;
    return checkTokenId(src.file, key, v, vocab, vocabWhy);
  }
  if (optional) return null;
  throw new LoadError(sources[sources.length - 1].file, 'a token id (an integer)', 'nothing (the key is missing)', undefined, { key });
}

function checkTokenId(file: string, key: string, v: unknown, vocab: number, vocabWhy: string): number {
  const expected = `a token id: an integer in [0, ${vocab}) (${vocabWhy})`;
  if (Array.isArray(v)) throw new LoadError(file, expected, JSON.stringify(v).slice(0, 60), 'a list of ids is not supported here; give one id', { key });
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= vocab) throw new LoadError(file, expected, fmtValue(v), undefined, { key });
  return v;
}

/** Every special id config.json sets is checked, also one that generation_config.json overrides. */
function checkAllIds(src: IdSource, vocab: number, vocabWhy: string): void {
  for (const key of ['mask_token_id', 'eos_token_id', 'pad_token_id', 'bos_token_id']) {
    const v = src.raw[key];
    if (v !== undefined && v !== null) checkTokenId(src.file, key, v, vocab, vocabWhy);
  }
}

/** A JSON value for a message, cut short. */
function fmtValue(v: unknown): string {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** config.json's "quantization_config" (absent or null: a dense checkpoint). */
function parseQuantization(file: string, raw: Record<string, unknown>): QuantizationConfig | null {
  const q = raw.quantization_config;
  if (q === undefined || q === null) return null;
  const key = 'quantization_config';
  if (typeof q !== 'object' || Array.isArray(q)) throw new LoadError(file, 'an object', fmtValue(q), undefined, { key });
  const o = q as Record<string, unknown>;
  if (o.quant_method !== 'dyllm') {
    throw new LoadError(file, '"quant_method": "dyllm" (the int8 / q4 format of `dyllm quantize`, docs/quantization.md)', fmtValue(o.quant_method),
      'other quantisation methods are not supported; quantise the original bf16 folder with dyllm quantize', { key });
  }
  if (o.format !== 'int8' && o.format !== 'q4') throw new LoadError(file, '"format": "int8" or "q4"', fmtValue(o.format), undefined, { key });
  const group = o.format === 'int8' ? -1 : 32;
  if (o.group_size !== group) {
    throw new LoadError(file, `"group_size": ${group} for format ${o.format}${group < 0 ? ' (one scale per output row)' : ''}`, fmtValue(o.group_size), undefined, { key });
  }
  const head = o.lm_head ?? o.format;
  if (head !== 'int8' && head !== 'q4' && head !== 'none') throw new LoadError(file, '"lm_head": "int8", "q4" or "none"', fmtValue(head), undefined, { key });
  return Object.freeze({ format: o.format, groupSize: group, lmHead: head });
}

function finish(file: string, c: Omit<ModelConfig, 'headDim' | 'kvGroups' | 'quantization'>): ModelConfig {
  if (c.hiddenSize % c.numHeads !== 0) throw new LoadError(file, `hidden size divisible by the head count (${c.numHeads})`, String(c.hiddenSize));
  if (c.numHeads % c.numKvHeads !== 0) throw new LoadError(file, `head count divisible by the KV head count (${c.numKvHeads})`, String(c.numHeads));
  const headDim = c.hiddenSize / c.numHeads;
  if (headDim % 2 !== 0) throw new LoadError(file, 'an even head dimension (RoPE)', String(headDim));
  return Object.freeze({ ...c, headDim, kvGroups: c.numHeads / c.numKvHeads, quantization: null });
}

function parseLlada(r: Reader, gen: IdSource): ModelConfig {
  r.require('block_type', (v) => v === 'llama', 'to be "llama"');
  r.require('activation_type', (v) => v === 'silu', 'to be "silu"');
  r.require('layer_norm_type', (v) => v === 'rms', 'to be "rms"');
  r.require('rope', (v) => v === true, 'to be true');
  r.require('alibi', (v) => v === false || v === undefined, 'to be false');
  r.require('attention_layer_norm', (v) => v === false || v === undefined, 'to be false (no QK-norm)');
  r.require('include_bias', (v) => v === false || v === undefined, 'to be false');
  r.require('scale_logits', (v) => v === false || v === undefined, 'to be false');
  r.require('input_emb_norm', (v) => v === false || v === undefined, 'to be false');
  const d = r.int('d_model', { min: 1 });
  const heads = r.int('n_heads', { min: 1 });
  const mlp = r.int('mlp_hidden_size', { optional: true, min: 1 }) ?? d * r.int('mlp_ratio', { min: 1 });
  const vocab = r.int('vocab_size', { min: 1 });
  const emb = r.int('embedding_size', { optional: true, min: 1 }) ?? vocab;
  if (emb < vocab) throw new LoadError(r.file, `embedding_size ≥ vocab_size (${vocab})`, String(emb));
  // generation.generate() reads bos/eos from generation_config.json first (LLaDA's upstream one sets both).
  const why = `the model's embedding rows: ${r.raw.embedding_size !== undefined && r.raw.embedding_size !== null ? 'embedding_size' : 'vocab_size'}`;
  const cfg: IdSource = { file: r.file, raw: r.raw };
  checkAllIds(cfg, emb, why);
  const eos = tokenId([gen, cfg], 'eos_token_id', emb, why, false)!;
  return finish(r.file, {
    arch: 'llada',
    hiddenSize: d,
    numLayers: r.int('n_layers', { min: 1 }),
    numHeads: heads,
    numKvHeads: r.int('n_kv_heads', { optional: true, min: 1 }) ?? heads,
    intermediateSize: mlp,
    vocabSize: emb,
    ropeTheta: r.num('rope_theta', 10000),
    rmsNormEps: r.num('rms_norm_eps', 1e-5),
    qkvBias: r.bool('include_qkv_bias', false),
    tieWordEmbeddings: r.bool('weight_tying', false),
    shiftLogits: false,
    maskTokenId: tokenId([cfg], 'mask_token_id', emb, why, false)!,
    eosTokenId: eos,
    padTokenId: tokenId([cfg], 'pad_token_id', emb, why, true) ?? eos,
    bosTokenId: tokenId([gen, cfg], 'bos_token_id', emb, why, true),
    // LLaDA's configuration_llada.py default when the key is absent.
    maxSequenceLength: r.int('max_sequence_length', { optional: true, min: 1 }) ?? 1024,
  });
}

function parseDream(r: Reader, gen: IdSource): ModelConfig {
  r.require('hidden_act', (v) => v === 'silu', 'to be "silu"');
  r.require('rope_scaling', (v) => v === null || v === undefined, 'to be null (no RoPE scaling)');
  r.require('use_sliding_window', (v) => v === false || v === undefined, 'to be false');
  r.require('use_mrope', (v) => v === false || v === undefined, 'to be false');
  const heads = r.int('num_attention_heads', { min: 1 });
  const vocab = r.int('vocab_size', { min: 1 });
  const why = "the model's embedding rows: vocab_size";
  const cfg: IdSource = { file: r.file, raw: r.raw };
  checkAllIds(cfg, vocab, why);
  // Dream's generation code takes eos from generation_config.json, everything else from config.json.
  const eos = tokenId([gen, cfg], 'eos_token_id', vocab, why, false)!;
  return finish(r.file, {
    arch: 'dream',
    hiddenSize: r.int('hidden_size', { min: 1 }),
    numLayers: r.int('num_hidden_layers', { min: 1 }),
    numHeads: heads,
    numKvHeads: r.int('num_key_value_heads', { optional: true, min: 1 }) ?? heads,
    intermediateSize: r.int('intermediate_size', { min: 1 }),
    vocabSize: vocab,
    ropeTheta: r.num('rope_theta', 10000),
    rmsNormEps: r.num('rms_norm_eps', 1e-6),
    qkvBias: true,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    shiftLogits: true,
    maskTokenId: tokenId([cfg], 'mask_token_id', vocab, why, false)!,
    eosTokenId: eos,
    padTokenId: tokenId([cfg], 'pad_token_id', vocab, why, true) ?? tokenId([cfg], 'eos_token_id', vocab, why, false)!,
    bosTokenId: tokenId([cfg], 'bos_token_id', vocab, why, true),
    // Qwen2's configuration default when the key is absent.
    maxSequenceLength: r.int('max_position_embeddings', { optional: true, min: 1 }) ?? 32768,
  });
}

/**
 * Parse `dir/config.json` (+ optional generation_config.json) into a frozen ModelConfig. `files`: another source of
 * the folder's files (load/bytes.ts); default the folder on disk.
 */
export function loadConfig(dir: string, files?: ModelFiles): { config: ModelConfig; generation: GenerationDefaults } {
  const file = join(dir, 'config.json');
  let isDir = false;
  if (files) {
    if (!files.isFolder(dir)) throw new LoadError(dir, 'a model folder', 'no such folder');
    isDir = true;
  } else {
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      throw new LoadError(dir, 'a model folder', 'no such folder');
    }
  }
  if (!isDir) throw new LoadError(dir, 'a model folder', 'a file that is not a folder', 'point at the folder that holds config.json');
  const raw = readJsonObject(file, 'json-config', files);
  const genPath = join(dir, 'generation_config.json');
  const gen = readOptionalJsonObject(genPath, 'json-config', files) ?? {};
  const r = new Reader(file, raw);
  const genSrc: IdSource = { file: genPath, raw: gen };
  const type = typeof raw.model_type === 'string' ? raw.model_type.toLowerCase() : raw.model_type;
  let config: ModelConfig;
  if (type === 'llada') config = parseLlada(r, genSrc);
  else if (type === 'dream') config = parseDream(r, genSrc);
  else {
    const found = raw.model_type === undefined ? 'no "model_type" key' : fmtValue(raw.model_type);
    throw new LoadError(file, 'model_type "llada" or "Dream"', found, 'only LLaDA and Dream checkpoints are supported');
  }
  checkGeneration(genPath, gen, config);
  const quantization = parseQuantization(file, raw);
  if (quantization) config = Object.freeze({ ...config, quantization });
  return { config, generation: Object.freeze({ ...gen }) };
}

/** The config.json key that sets maxSequenceLength, per family (for messages). */
const MAX_SEQ_KEY: Readonly<Record<Architecture, string>> = { llada: 'max_sequence_length', dream: 'max_position_embeddings' };

/** Dream's sampler choices (generation_utils.py); the engine's option schema lists the same. */
const DREAM_ALGS = ['origin', 'maskgit_plus', 'topk_margin', 'entropy'];

/**
 * generation_config.json's values, checked at load so a bad default is named once, with its file and key, instead
 * of failing (or running for hours) on every request that relies on it. Ranges are those the engine's option
 * schema applies to the same values at request time (engine/options.ts; test/load/generation-config.test.ts holds
 * the two together), with the lengths bounded by the model's maximum sequence length. Only keys the engine reads
 * (for either family) are checked; null means unset, as in transformers.
 */
export function checkGeneration(file: string, gen: Record<string, unknown>, config: ModelConfig): void {
  const maxSeq = config.maxSequenceLength;
  const seqWhy = `the model's ${MAX_SEQ_KEY[config.arch]}`;
  const fail = (key: string, expected: string, v: unknown, hint?: string): never => {
    throw new LoadError(file, expected, fmtValue(v), hint, { key });
  };
  const set = (key: string): boolean => gen[key] !== undefined && gen[key] !== null;
  const int = (key: string, min: number, max: number, why?: string): number | null => {
    if (!set(key)) return null;
    const v = gen[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(key, `an integer in [${min}, ${max}]${why ? ` (${why})` : ''}`, v);
    return v as number;
  };
  const num = (key: string, min: number, max: number, minOpen = false): void => {
    if (!set(key)) return;
    const v = gen[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || (minOpen ? v <= min : v < min) || v > max) fail(key, `a number in ${minOpen ? '(' : '['}${min}, ${max}]`, v);
  };
  const len = int('max_new_tokens', 1, maxSeq, seqWhy);
  const steps = int('steps', 1, maxSeq, seqWhy);
  const block = int('block_length', 1, maxSeq, seqWhy);
  num('temperature', 0, 100);
  num('top_p', 0, 1, true);
  int('top_k', 1, config.vocabSize, "the model's vocabulary size");
  num('eps', 0, 0.5);
  num('alg_temp', 0, 100);
  if (set('alg') && !DREAM_ALGS.includes(gen.alg as string)) fail('alg', `one of ${DREAM_ALGS.join(', ')}`, gen.alg);
  const why = "the model's embedding rows";
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id', 'mask_token_id']) if (set(k)) checkTokenId(file, k, gen[k], config.vocabSize, why);
  // LLaDA's semi-autoregressive schedule: a request that takes its length from this file also takes its block
  // length and steps from it (engine/options.ts), so the three must fit together.
  if (config.arch === 'llada' && len !== null) {
    const b = block ?? len;
    if (len % b !== 0) fail('block_length', `a divisor of "max_new_tokens" (${len})`, b);
    const blocks = len / b;
    if (steps !== null && (steps > len || steps % blocks !== 0)) {
      fail('steps', `a multiple of the number of blocks (${blocks} = max_new_tokens / block_length) and at most "max_new_tokens" (${len})`, steps);
    }
  }
}
