/**
 * Load a Hugging Face model folder unconverted: config.json -> ModelConfig, safetensors (single or sharded) ->
 * strict WeightStore -> the architecture's model on the chosen kernel backend.
 *
 * Quantisation (docs/quantization.md) is a load option, invisible to the models: a folder written by
 * `dyllm quantize` is read as it is (its linear weights come quantised), and `quant: 'int8' | 'q4'` quantises a
 * dense folder's linear weights as the backend prepares them. Embeddings and norms always stay dense.
 */
import { join } from 'node:path';
import type { KernelBackend } from '../kernels/backend.js';
import type { QuantFormat } from '../kernels/quant.js';
import { selectBackend, type BackendName } from '../kernels/select.js';
import { loadConfig, type Architecture, type GenerationDefaults, type ModelConfig } from '../load/config.js';
import { LoadError } from '../load/errors.js';
import { readTextFile } from '../load/files.js';
import { PackCacheSession, packCacheEnabled, type PackCacheOptions, type PackCacheReport } from '../load/pack-cache.js';
import { Checkpoint, type CheckpointFiles } from '../load/safetensors.js';
import { WeightStore } from '../load/weights.js';
import { dreamWeightNames } from './dream.js';
import type { WeightNames } from './transformer.js';
import { lladaWeightNames } from './llada.js';
import { architectures } from './registry.js';
import type { DiffusionModel } from './types.js';

export interface LoadedModel {
  readonly model: DiffusionModel;
  readonly config: ModelConfig;
  readonly generation: GenerationDefaults;
  /** Checkpoint tensors the architecture did not use (reported, not fatal). */
  readonly unusedTensors: readonly string[];
  /** What the packed-weight cache did (null when it was not used). */
  readonly packCache: PackCacheReport | null;
}

/** Weight loading progress: bytes of tensor data read so far, of `total` (the checkpoint's tensor bytes). */
export type LoadProgress = (bytesRead: number, totalBytes: number) => void;

/** `--quant`: keep the checkpoint's weights ('none') or quantise the linear layers while loading. */
export type QuantOption = 'none' | QuantFormat;
export const QUANT_OPTIONS: readonly QuantOption[] = ['none', 'int8', 'q4'];

export interface ModelLoadOptions {
  readonly backend?: BackendName | KernelBackend;
  /** Called as the weights are read. */
  readonly onProgress?: LoadProgress;
  /** Default 'none'. A folder already quantised by `dyllm quantize` loads as it is ('none' or its own format). */
  readonly quant?: QuantOption;
  /** The folder's files from another source than the disk (load/bytes.ts filesFromBytes); default the folder. */
  readonly files?: CheckpointFiles;
  /**
   * Use the packed-weight cache file (load/pack-cache.ts, docs/loading.md): map the native backend's prepared
   * weights from it, and write it when this load had to pack them. Default: env DYLLM_PACK_CACHE=1, else off.
   */
  readonly packCache?: boolean | PackCacheOptions;
}

/**
 * The LM head's format for a quantisation of the linear layers: q4 keeps the head at int8, as llama.cpp keeps its
 * output tensor at a higher precision than Q4_0 (the head is about 6 % of an 8B model's weights and its outputs are
 * what the sampler reads). `dyllm quantize --lm-head` overrides it.
 */
export const HEAD_FORMAT: Readonly<Record<QuantFormat, QuantFormat>> = { int8: 'int8', q4: 'int8' };

const WEIGHT_NAMES: Readonly<Record<Architecture, WeightNames>> = { llada: lladaWeightNames, dream: dreamWeightNames };

/** Checkpoint names of a model's matrices: the linear layers (each block's projections), the LM head, the embedding. */
export function matrixNames(config: ModelConfig): { linear: string[]; head: string | null; embed: string } {
  const names = WEIGHT_NAMES[config.arch];
  const linear: string[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const l = names.layer(i);
    linear.push(l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down);
  }
  return { linear, head: config.tieWordEmbeddings ? null : names.head, embed: names.embed };
}

/**
 * Which dense matrices to quantise as they are prepared: every linear layer in `format` and the LM head in
 * `head` (a head tied to the embedding: the embedding's entry, which only its prepared copy, the head, acts on).
 */
export function quantPlan(config: ModelConfig, format: QuantFormat | null, head: QuantFormat | null): Map<string, QuantFormat> {
  const { linear, head: headName, embed } = matrixNames(config);
  const plan = new Map<string, QuantFormat>();
  if (format) for (const n of linear) plan.set(n, format);
  if (head) plan.set(headName ?? embed, head);
  return plan;
}

export function loadModel(dir: string, opts: ModelLoadOptions = {}): LoadedModel {
  const { config, generation } = loadConfig(dir, opts.files);
  const quant = opts.quant ?? 'none';
  if (!QUANT_OPTIONS.includes(quant)) throw new LoadError(dir, 'quant none, int8 or q4', String(quant));
  const file = config.quantization;
  if (file && quant !== 'none' && quant !== file.format) {
    throw new LoadError(join(dir, 'config.json'), `--quant none or ${file.format} for a folder quantised as ${file.format} (quantization_config)`, `--quant ${quant}`,
      'quantise the original bf16 folder instead');
  }
  // A quantised folder: the file holds the quantised tensors; only a head tied to the embedding is quantised here.
  const plan = file
    ? quantPlan(config, null, config.tieWordEmbeddings && file.lmHead !== 'none' ? file.lmHead : null)
    : quant === 'none' ? new Map<string, QuantFormat>() : quantPlan(config, quant, HEAD_FORMAT[quant]);
  const backend = typeof opts.backend === 'object' ? opts.backend : selectBackend(opts.backend ?? 'auto');
  const ckpt = new Checkpoint(dir, { files: opts.files });
  const progress = opts.onProgress;
  if (progress) {
    // Count each tensor's bytes as it is read (the architecture reads them one by one).
    const total = ckpt.nbytes();
    const read = ckpt.read.bind(ckpt);
    let done = 0;
    ckpt.read = (name, o) => {
      const data = read(name, o);
      const t = ckpt.info(name)!;
      done += t.end - t.begin;
      progress(done, total);
      return data;
    };
  }
  const cacheOpts = opts.files ? null : packCacheEnabled(opts.packCache);
  const cache = cacheOpts
    ? PackCacheSession.open(dir, backend, ckpt.identity(), quant, readTextFile(join(dir, 'config.json'), 'json-config'), cacheOpts)
    : null;
  const store = new WeightStore(ckpt, {
    quantize: plan, denseOnly: new Set([WEIGHT_NAMES[config.arch].embed]), quantization: file, configFile: join(dir, 'config.json'),
    prepared: cache ?? undefined,
  });
  let model: DiffusionModel;
  try {
    model = architectures[config.arch](config, store, backend);
  } catch (e) {
    cache?.finish(false);
    throw e;
  }
  const packCache = cache ? cache.finish() : null;
  if (progress) progress(ckpt.nbytes(), ckpt.nbytes()); // done (tensors the architecture does not use are never read)
  // What the model still reads from the mapped files (the embedding rows, norm weights) is faulted back in as it is
  // used; the rest of the file leaves the resident set now.
  ckpt.release();
  return { model, config, generation, unusedTensors: store.unused(), packCache };
}
