/**
 * WeightStore: strict, name-addressed access to a checkpoint. Every tensor is requested by its exact checkpoint
 * name and expected shape; a missing name, a wrong shape or an unsupported dtype is a LoadError naming the file.
 * It records which names were used so unused tensors can be reported.
 *
 * Quantised checkpoints (docs/quantization.md): a matrix stored as I8 [N, K] or U8 [N, ceil(K/32)·16] comes with a
 * "<name>_scale" tensor (int8: F32 [N], one per output row; q4: BF16 [N, ceil(K/32)], one per 32 input features)
 * and is returned quantised, for the kernel backend to prepare as it is. Load-time quantisation (`--quant`) marks
 * the dense matrices the plan names with `quant`, so the backend quantises them as it prepares them.
 */
import type { HostWeight, KernelBackend, PreparedWeight, WeightDtype } from '../kernels/backend.js';
import { groups, QK, type QuantFormat } from '../kernels/quant.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../tensor/dtype.js';
import type { QuantizationConfig } from './config.js';
import { LoadError } from './errors.js';
import type { Checkpoint, ReadOptions, TensorInfo } from './safetensors.js';

export interface WeightStoreOptions {
  /** Dense matrices to quantise when the backend prepares them (load-time `--quant`), by checkpoint name. */
  readonly quantize?: ReadonlyMap<string, QuantFormat>;
  /** Matrices that must stay dense (the token embedding: it is read row by row on the host). */
  readonly denseOnly?: ReadonlySet<string>;
  /** config.json's quantization_config; quantised tensors are refused without it. */
  readonly quantization?: QuantizationConfig | null;
  /** config.json, for messages. */
  readonly configFile?: string;
  /** Prepared weights kept from an earlier load (the packed-weight cache, load/pack-cache.ts); see WeightStore.prepared. */
  readonly prepared?: PreparedWeightCache;
}

/** Prepared weights by checkpoint name, kept across loads (load/pack-cache.ts). */
export interface PreparedWeightCache {
  /** The prepared weight `name` as the backend would prepare it (dtype, N x K), or null when not held. */
  get(name: string, dtype: WeightDtype, outFeatures: number, inFeatures: number): PreparedWeight | null;
  /** A weight the backend has just prepared (or one `get` returned), to be kept. */
  add(name: string, w: PreparedWeight): void;
}

/** The suffix of a quantised weight's scale tensor ("….q_proj.weight" -> "….q_proj.weight_scale"). */
export const SCALE_SUFFIX = '_scale';

export class WeightStore {
  private readonly used = new Set<string>();

  constructor(readonly checkpoint: Checkpoint, readonly options: WeightStoreOptions = {}) {}

  private info(name: string, what: string): TensorInfo {
    const info = this.checkpoint.info(name);
    if (!info) throw new LoadError(this.checkpoint.dir, what, 'no such tensor in the checkpoint', 'is this the right model_type?');
    return info;
  }

  private shape(info: TensorInfo, shape: readonly number[], what: string, hint = 'config.json does not match the weights'): void {
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new LoadError(info.file, `${what} with shape ${JSON.stringify(shape)}`, `shape ${JSON.stringify(info.shape)}`, hint);
    }
  }

  private check(name: string, shape: readonly number[]): TensorInfo {
    const info = this.info(name, `tensor ${name} ${JSON.stringify(shape)}`);
    this.shape(info, shape, `tensor ${name}`);
    if (info.dtype === 'I8' || info.dtype === 'U8') {
      throw new LoadError(info.file, `tensor ${name} as BF16, F16 or F32`, info.dtype, 'only linear layer weights are stored quantised');
    }
    this.used.add(name);
    return info;
  }

  has(name: string): boolean {
    return this.checkpoint.info(name) !== undefined;
  }

  /**
   * A [out, in] matrix; bf16 and f32 keep their dtype, f16 is widened to f32 (no f16 kernels). The data may be a
   * view into the mapped checkpoint file: read it, never write it. A quantised tensor comes back as its int8 / q4
   * host arrays; a dense one the load plan names carries `quant`. `opts.populate: false`: a mapped tensor's pages
   * are not faulted in ahead (one read a row at a time).
   */
  matrix(name: string, outFeatures: number, inFeatures: number, opts?: ReadOptions): HostWeight {
    const found = this.checkpoint.info(name);
    if (found && (found.dtype === 'I8' || found.dtype === 'U8')) return this.quantized(found, outFeatures, inFeatures);
    const info = this.check(name, [outFeatures, inFeatures]);
    const data = this.checkpoint.read(name, opts);
    const quant = this.options.quantize?.get(name) ?? null;
    if (info.dtype === 'BF16') return { dtype: 'bf16', data: data as Uint16Array, outFeatures, inFeatures, quant };
    if (info.dtype === 'F16') return { dtype: 'f32', data: f16ArrayToF32(data as Uint16Array), outFeatures, inFeatures, quant };
    return { dtype: 'f32', data: data as Float32Array, outFeatures, inFeatures, quant };
  }

  /**
   * Matrix `name` prepared by `backend`: from the options' PreparedWeightCache when it holds it (the checkpoint's
   * data is then never read, but the tensor is checked as matrix() checks it), else prepared from matrix() (or from
   * `host`, the matrix already read: a head tied to the embedding) and its checkpoint pages released.
   */
  prepared(name: string, outFeatures: number, inFeatures: number, backend: KernelBackend, host?: HostWeight): PreparedWeight {
    const cache = this.options.prepared;
    if (cache) {
      const hit = cache.get(name, this.preparedDtype(name, outFeatures, inFeatures), outFeatures, inFeatures);
      if (hit) return hit;
    }
    const w = backend.prepareWeight(host ?? this.matrix(name, outFeatures, inFeatures));
    if (!host) this.release(name);
    cache?.add(name, w);
    return w;
  }

  /** The dtype a backend prepares matrix `name` in, after the checks matrix() makes (nothing is read). */
  preparedDtype(name: string, outFeatures: number, inFeatures: number): WeightDtype {
    const found = this.checkpoint.info(name);
    if (found && (found.dtype === 'I8' || found.dtype === 'U8')) return this.checkQuantized(found, outFeatures, inFeatures).format;
    const info = this.check(name, [outFeatures, inFeatures]);
    return this.options.quantize?.get(name) ?? (info.dtype === 'BF16' ? 'bf16' : 'f32');
  }

  /** A quantised matrix's and its scales' entries checked against the shapes the format implies (nothing is read). */
  private checkQuantized(info: TensorInfo, N: number, K: number): { format: QuantFormat; sinfo: TensorInfo } {
    const name = info.name;
    const format: QuantFormat = info.dtype === 'I8' ? 'int8' : 'q4';
    const qc = this.options.quantization;
    if (!qc) {
      throw new LoadError(info.file, `tensor ${name} as BF16, F16 or F32`, `${info.dtype} (a quantised weight) but ${this.options.configFile ?? 'config.json'} has no "quantization_config"`,
        'a folder written by dyllm quantize has one; do not mix quantised weights into another folder');
    }
    if (format !== qc.format && format !== qc.lmHead) {
      throw new LoadError(info.file, `tensor ${name} in the folder's format (quantization_config: ${qc.format}, lm_head ${qc.lmHead})`, `${info.dtype} (${format})`);
    }
    if (this.options.denseOnly?.has(name)) {
      throw new LoadError(info.file, `tensor ${name} (the token embedding, looked up row by row) as BF16, F16 or F32`, `${info.dtype} (${format})`,
        'dyllm quantize keeps embeddings dense; quantise the original folder again');
    }
    const G = groups(K);
    const shape = format === 'int8' ? [N, K] : [N, G * (QK / 2)];
    this.shape(info, shape, `tensor ${name} (${format}: ${format === 'int8' ? 'one int8 per weight' : `two 4-bit values per byte, ${K} input features padded to ${G * QK}`})`);
    const sname = name + SCALE_SUFFIX;
    const sinfo = this.info(sname, `tensor ${sname} (the scales of the ${format} weight ${name})`);
    const sshape = format === 'int8' ? [N] : [N, G];
    this.shape(sinfo, sshape, `tensor ${sname} (${format === 'int8' ? 'one scale per output row' : 'one scale per 32 input features'})`);
    if (format === 'q4' && sinfo.dtype !== 'BF16') throw new LoadError(sinfo.file, `tensor ${sname} as BF16 (q4 scales are bf16)`, sinfo.dtype);
    if (format === 'int8' && sinfo.dtype !== 'F32' && sinfo.dtype !== 'BF16' && sinfo.dtype !== 'F16') throw new LoadError(sinfo.file, `tensor ${sname} as F32, BF16 or F16`, sinfo.dtype);
    this.used.add(name);
    this.used.add(sname);
    return { format, sinfo };
  }

  /** A quantised matrix and its scales, checked against the shapes the format implies. */
  private quantized(info: TensorInfo, N: number, K: number): HostWeight {
    const name = info.name;
    const { format, sinfo } = this.checkQuantized(info, N, K);
    const sname = sinfo.name;
    const sraw = this.checkpoint.read(sname);
    let scales: Float32Array | Uint16Array;
    if (format === 'q4') scales = sraw as Uint16Array;
    else if (sinfo.dtype === 'F32') scales = sraw as Float32Array;
    else scales = sinfo.dtype === 'BF16' ? bf16ArrayToF32(sraw as Uint16Array) : f16ArrayToF32(sraw as Uint16Array);
    return { dtype: format, data: this.checkpoint.read(name) as Int8Array | Uint8Array, scales, outFeatures: N, inFeatures: K };
  }

  /** A 1-D tensor (norm weight, bias) as float32. */
  vector(name: string, length: number): Float32Array {
    const info = this.check(name, [length]);
    const data = this.checkpoint.read(name);
    if (info.dtype === 'BF16') return bf16ArrayToF32(data as Uint16Array);
    if (info.dtype === 'F16') return f16ArrayToF32(data as Uint16Array);
    return data as Float32Array;
  }

  /**
   * Says a tensor's host data is no longer needed by the caller (a backend packed it into a layout of its own): a
   * mapped checkpoint drops its pages from the resident set. Always safe: the data stays readable (faulted back in).
   */
  release(name: string): void {
    this.checkpoint.release(name);
  }

  /** Names present in the checkpoint but never requested. */
  unused(): string[] {
    return this.checkpoint.names().filter((n) => !this.used.has(n));
  }
}
