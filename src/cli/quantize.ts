/**
 * `dyllm quantize IN OUT --quant int8|q4 [--lm-head int8|q4|none]`: a copy of a model folder in the same upstream
 * layout whose linear layers are stored quantised (docs/quantization.md): each projection "<name>" as I8 [N, K]
 * (int8) or U8 [N, ceil(K/32)·16] (q4) plus "<name>_scale" (F32 [N] / BF16 [N, ceil(K/32)]), embeddings and norms
 * unchanged, config.json with a "quantization_config", every other file (tokenizer, chat template, generation
 * config) copied. The folder is written under a temporary name and renamed into place only when complete, so OUT
 * never holds a half-written model; an existing OUT is never overwritten.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { HostWeight } from '../kernels/backend.js';
import { groups, QK, type QuantFormat } from '../kernels/quant.js';
import { quantizeHostWeight } from '../kernels/select.js';
import { loadConfig } from '../load/config.js';
import { LoadError } from '../load/errors.js';
import { readJsonObject } from '../load/files.js';
import { resolveModelDir } from '../load/hub.js';
import { Checkpoint, type TensorInfo } from '../load/safetensors.js';
import { tensorBytes, writeSafetensors, type TensorSpec } from '../load/safetensors-write.js';
import { SCALE_SUFFIX } from '../load/weights.js';
import { HEAD_FORMAT, matrixNames } from '../models/load-model.js';
import { f16ArrayToF32 } from '../tensor/dtype.js';
import { parse, UsageError } from './args.js';

export const QUANTIZE_FLAGS = {
  quant: { type: 'string' },
  'lm-head': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const QUANTIZE_HELP = `Usage: dyllm quantize IN OUT --quant int8|q4 [--lm-head int8|q4|none]

Writes OUT, a copy of the model folder IN (a folder, a bundled model name or a Hugging Face id in the cache)
whose linear layers (every attention and FFN projection) are stored quantised:
  int8  one int8 per weight and one f32 scale per output row                        (~1.0 byte per weight)
  q4    4-bit values in groups of 32 input features, one bf16 scale per group (Q4_0) (~0.56 byte per weight)
Embeddings and norms stay as they are. The LM head is quantised as --lm-head says (default: int8 for both
formats). Load OUT like any folder (--model OUT); docs/quantization.md describes the layout.
  --quant Q          int8 | q4 (required)
  --lm-head H        int8 | q4 | none (default int8)`;

/** Largest shard written (the last tensor of a shard may not be split, so a single larger tensor gets its own). */
const SHARD_BYTES = 4 * 2 ** 30;

interface OutTensor {
  readonly spec: TensorSpec;
  /** The input tensor it comes from, and how. */
  readonly from: TensorInfo;
  readonly kind: 'copy' | 'q' | 'scale';
  readonly format?: QuantFormat;
}

function formatOf(flag: string, v: unknown, allowNone: boolean): QuantFormat | null {
  if (v === 'int8' || v === 'q4') return v;
  if (allowNone && v === 'none') return null;
  throw new UsageError(`--${flag}: expected int8${allowNone ? ', q4 or none' : ' or q4'}, found ${v === undefined ? 'nothing' : `"${String(v)}"`}`);
}

export async function cmdQuantize(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, QUANTIZE_FLAGS, true);
  if (values.help) {
    process.stdout.write(QUANTIZE_HELP + '\n');
    return;
  }
  if (positionals.length !== 2) throw new UsageError(`expected IN and OUT folders, found ${positionals.length} argument${positionals.length === 1 ? '' : 's'} (dyllm quantize IN OUT --quant int8|q4)`);
  const format = formatOf('quant', values.quant, false)!;
  const head = values['lm-head'] === undefined ? HEAD_FORMAT[format] : formatOf('lm-head', values['lm-head'], true);
  const inDir = resolveModelDir(positionals[0]);
  const outDir = resolve(positionals[1]);
  if (existsSync(outDir)) throw new UsageError(`OUT: ${outDir} already exists; give a new folder (dyllm quantize never overwrites)`);
  if (!existsSync(dirname(outDir))) throw new UsageError(`OUT: the parent folder ${dirname(outDir)} does not exist`);
  const summary = quantizeFolder(inDir, outDir, format, head, { log: (line) => process.stderr.write(line + '\n') });
  process.stdout.write(summary + '\n');
}

export interface QuantizeFolderOptions {
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Largest shard (default 4 GiB). */
  readonly shardBytes?: number;
}

/**
 * Writes the quantised copy of inDir to outDir (which must not exist); returns a one-line summary. On any error
 * nothing is left at outDir.
 */
export function quantizeFolder(inDir: string, outDir: string, format: QuantFormat, head: QuantFormat | null, opts: QuantizeFolderOptions = {}): string {
  const log = opts.log ?? ((): void => {});
  const shardBytes = opts.shardBytes ?? SHARD_BYTES;
  if (existsSync(outDir)) throw new LoadError(outDir, 'a new folder for the quantised model', 'an existing file or folder', 'dyllm quantize never overwrites');
  const { config } = loadConfig(inDir);
  const cfgFile = join(inDir, 'config.json');
  if (config.quantization) {
    throw new LoadError(cfgFile, 'a dense (bf16 / f32) model folder', `one already quantised as ${config.quantization.format} (quantization_config)`, 'quantise the original folder');
  }
  const ckpt = new Checkpoint(inDir);
  const names = matrixNames(config);
  const plan = new Map<string, QuantFormat>();
  for (const n of names.linear) plan.set(n, format);
  if (head && names.head) plan.set(names.head, head); // a tied head is the embedding: quantised at load (lm_head)
  for (const [name] of plan) {
    const info = ckpt.info(name);
    if (!info) throw new LoadError(inDir, `tensor ${name}`, 'no such tensor in the checkpoint', 'is this the right model_type?');
    if (info.shape.length !== 2 || !(info.dtype === 'BF16' || info.dtype === 'F16' || info.dtype === 'F32')) {
      throw new LoadError(info.file, `tensor ${name} as a BF16, F16 or F32 matrix`, `${info.dtype} ${JSON.stringify(info.shape)}`);
    }
    if (ckpt.info(name + SCALE_SUFFIX)) throw new LoadError(info.file, `no tensor named ${name + SCALE_SUFFIX} (the name the scales get)`, 'one');
  }

  // The output tensors, in the input's order: a quantised weight is followed by its scales.
  const out: OutTensor[] = [];
  let inBytes = 0;
  for (const name of ckpt.names()) {
    const info = ckpt.info(name)!;
    inBytes += info.end - info.begin;
    const f = plan.get(name);
    if (!f) {
      out.push({ spec: { name, dtype: info.dtype, shape: info.shape }, from: info, kind: 'copy' });
      continue;
    }
    const [N, K] = info.shape;
    const G = groups(K);
    out.push({ spec: { name, dtype: f === 'int8' ? 'I8' : 'U8', shape: f === 'int8' ? [N, K] : [N, G * (QK / 2)] }, from: info, kind: 'q', format: f });
    out.push({ spec: { name: name + SCALE_SUFFIX, dtype: f === 'int8' ? 'F32' : 'BF16', shape: f === 'int8' ? [N] : [N, G] }, from: info, kind: 'scale', format: f });
  }
  // Shards of at most SHARD_BYTES (one file when everything fits).
  const shards: OutTensor[][] = [[]];
  let size = 0;
  let outBytes = 0;
  for (const t of out) {
    const b = tensorBytes(t.spec);
    outBytes += b;
    if (size > 0 && size + b > shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += b;
  }

  const tmp = join(dirname(outDir), `.${basename(outDir)}.partial-${process.pid}`);
  mkdirSync(tmp);
  try {
    // Quantised weights are computed when their turn comes and kept only until their scales are written.
    let pending: { name: string; q: ArrayBufferView; scales: ArrayBufferView } | null = null;
    let done = 0;
    const total = plan.size;
    let lastLog = 0;
    const data = (spec: TensorSpec, t: OutTensor): ArrayBufferView => {
      if (t.kind === 'copy') return ckpt.read(t.from.name);
      if (t.kind === 'scale') {
        const s = pending!.scales;
        pending = null;
        return s;
      }
      const raw = ckpt.read(t.from.name);
      const [N, K] = t.from.shape;
      const dense: HostWeight = t.from.dtype === 'F16'
        ? { dtype: 'f32', data: f16ArrayToF32(raw as Uint16Array), outFeatures: N, inFeatures: K }
        : { dtype: t.from.dtype === 'BF16' ? 'bf16' : 'f32', data: raw as Uint16Array | Float32Array, outFeatures: N, inFeatures: K };
      const q = quantizeHostWeight(dense, t.format!);
      pending = { name: spec.name, q: q.data, scales: q.scales! };
      done++;
      const now = Date.now();
      if (now - lastLog > 2000 || done === total) {
        lastLog = now;
        log(`quantize: ${done}/${total} matrices (${spec.name})`);
      }
      return q.data;
    };
    const meta = { format: 'pt', quantized_by: 'dyllm', quant_format: format };
    const files = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const byName = new Map(shard.map((t) => [t.spec.name, t]));
      writeSafetensors(join(tmp, files[i]), shard.map((t) => t.spec), meta, (spec) => data(spec, byName.get(spec.name)!));
      for (const t of shard) weightMap[t.spec.name] = files[i];
    });
    if (shards.length > 1) {
      writeFileSync(join(tmp, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: outBytes }, weight_map: weightMap }, null, 2) + '\n');
    }
    // config.json with the quantization_config; every other regular file as it is.
    const raw = readJsonObject(cfgFile, 'json-config');
    raw.quantization_config = { quant_method: 'dyllm', format, group_size: format === 'int8' ? -1 : QK, lm_head: head ?? 'none' };
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
    for (const f of readdirSync(inDir)) {
      if (f === 'config.json' || f.endsWith('.safetensors') || f === 'model.safetensors.index.json') continue;
      const p = join(inDir, f);
      if (statSync(p).isFile()) copyFileSync(p, join(tmp, f));
    }
    renameSync(tmp, outDir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const gb = (n: number): string => `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 3 : 2)} GiB`;
  return `dyllm: wrote ${outDir}: ${plan.size} matrices as ${format}${head && names.head ? ` (LM head ${head})` : config.tieWordEmbeddings && head ? ` (LM head tied to the embedding: ${head} at load)` : ' (LM head dense)'}, ` +
    `${gb(outBytes)} of tensors (from ${gb(inBytes)}) in ${shards.length} file${shards.length === 1 ? '' : 's'}`;
}
