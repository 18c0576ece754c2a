/**
 * config.json / generation_config.json -> one frozen ModelConfig. The raw HF keys are read only here; derived
 * sizes (headDim, kvGroups) are computed only here. Unsupported architecture switches are refused with the key
 * and value that made them unsupported, rather than silently computing something else.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { LoadError } from './errors.js';
import { readJsonObject, readOptionalJsonObject } from './files.js';

export type Architecture = 'llada' | 'dream';

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

function finish(file: string, c: Omit<ModelConfig, 'headDim' | 'kvGroups'>): ModelConfig {
  if (c.hiddenSize % c.numHeads !== 0) throw new LoadError(file, `hidden size divisible by the head count (${c.numHeads})`, String(c.hiddenSize));
  if (c.numHeads % c.numKvHeads !== 0) throw new LoadError(file, `head count divisible by the KV head count (${c.numKvHeads})`, String(c.numHeads));
  const headDim = c.hiddenSize / c.numHeads;
  if (headDim % 2 !== 0) throw new LoadError(file, 'an even head dimension (RoPE)', String(headDim));
  for (const [k, id] of [['mask_token_id', c.maskTokenId], ['eos_token_id', c.eosTokenId], ['pad_token_id', c.padTokenId]] as const) {
    if (id >= c.vocabSize) throw new LoadError(file, `${k} < vocabulary size ${c.vocabSize}`, String(id));
  }
  return Object.freeze({ ...c, headDim, kvGroups: c.numHeads / c.numKvHeads });
}

function parseLlada(r: Reader, gen: Record<string, unknown>): ModelConfig {
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
  const eos = (gen.eos_token_id as number | undefined) ?? r.int('eos_token_id', {});
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
    maskTokenId: r.int('mask_token_id', {}),
    eosTokenId: eos,
    padTokenId: r.int('pad_token_id', { optional: true }) ?? eos,
    bosTokenId: (gen.bos_token_id as number | undefined) ?? r.int('bos_token_id', { optional: true }),
    // LLaDA's configuration_llada.py default when the key is absent.
    maxSequenceLength: r.int('max_sequence_length', { optional: true, min: 1 }) ?? 1024,
  });
}

function parseDream(r: Reader, gen: Record<string, unknown>): ModelConfig {
  r.require('hidden_act', (v) => v === 'silu', 'to be "silu"');
  r.require('rope_scaling', (v) => v === null || v === undefined, 'to be null (no RoPE scaling)');
  r.require('use_sliding_window', (v) => v === false || v === undefined, 'to be false');
  r.require('use_mrope', (v) => v === false || v === undefined, 'to be false');
  const heads = r.int('num_attention_heads', { min: 1 });
  return finish(r.file, {
    arch: 'dream',
    hiddenSize: r.int('hidden_size', { min: 1 }),
    numLayers: r.int('num_hidden_layers', { min: 1 }),
    numHeads: heads,
    numKvHeads: r.int('num_key_value_heads', { optional: true, min: 1 }) ?? heads,
    intermediateSize: r.int('intermediate_size', { min: 1 }),
    vocabSize: r.int('vocab_size', { min: 1 }),
    ropeTheta: r.num('rope_theta', 10000),
    rmsNormEps: r.num('rms_norm_eps', 1e-6),
    qkvBias: true,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    shiftLogits: true,
    maskTokenId: r.int('mask_token_id', {}),
    eosTokenId: (gen.eos_token_id as number | undefined) ?? r.int('eos_token_id', {}),
    padTokenId: r.int('pad_token_id', { optional: true }) ?? r.int('eos_token_id', {}),
    bosTokenId: r.int('bos_token_id', { optional: true }),
    // Qwen2's configuration default when the key is absent.
    maxSequenceLength: r.int('max_position_embeddings', { optional: true, min: 1 }) ?? 32768,
  });
}

/** Parse `dir/config.json` (+ optional generation_config.json) into a frozen ModelConfig. */
export function loadConfig(dir: string): { config: ModelConfig; generation: GenerationDefaults } {
  const file = join(dir, 'config.json');
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new LoadError(dir, 'a model folder', 'no such folder');
  }
  if (!isDir) throw new LoadError(dir, 'a model folder', 'a file that is not a folder', 'point at the folder that holds config.json');
  const raw = readJsonObject(file, 'json-config');
  const genPath = join(dir, 'generation_config.json');
  const gen = readOptionalJsonObject(genPath, 'json-config') ?? {};
  const r = new Reader(file, raw);
  const type = typeof raw.model_type === 'string' ? raw.model_type.toLowerCase() : raw.model_type;
  let config: ModelConfig;
  if (type === 'llada') config = parseLlada(r, gen);
  else if (type === 'dream') config = parseDream(r, gen);
  else {
    const found = raw.model_type === undefined ? 'no "model_type" key' : JSON.stringify(raw.model_type).slice(0, 60);
    throw new LoadError(file, 'model_type "llada" or "Dream"', found, 'only LLaDA and Dream checkpoints are supported');
  }
  return { config, generation: Object.freeze({ ...gen }) };
}
