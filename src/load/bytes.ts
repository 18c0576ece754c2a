/**
 * A model folder held in memory: its files as bytes (fetched over HTTP, out of a browser's Cache Storage, or read by
 * any other means), for loaders that cannot open files on disk. Only the byte source differs from the folder
 * loader: the same parsers run (config.ts, tokenizer.ts, chat-template.ts, safetensors.ts' parseHeader), with the
 * same per-kind size limits (files.ts FILE_LIMITS) and the same messages, each naming `<dir>/<file>`.
 *
 * Nothing here touches node:fs; with engine/pipeline.ts `loadPipelineFromFiles` it is how the browser page
 * (src/web/) loads a model.
 */
import { LoadError } from './errors.js';
import { FILE_LIMITS, KIND_NAMES, tooLarge, type FileKind } from './files.js';
import { checkHeaderLength, parseHeader, type CheckpointFiles, type SafetensorsShard, type TensorData, type TensorInfo } from './safetensors.js';

/** The files of a model folder a byte source may hold (the ones the loaders read). */
export const MODEL_FILE_NAMES: readonly string[] = Object.freeze([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
  'model.safetensors',
  'model.safetensors.index.json',
]);

/** Names of shards a `model.safetensors.index.json` may list: a plain file name ending in .safetensors. */
export function isShardName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.safetensors$/.test(name);
}

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** One safetensors file in memory, its header validated as safetensors.ts validates a file on disk. */
class BytesShard implements SafetensorsShard {
  readonly tensors: ReadonlyMap<string, TensorInfo>;

  constructor(readonly path: string, private readonly bytes: Uint8Array) {
    const size = bytes.length;
    if (size < 8) throw new LoadError(path, 'at least 8 bytes (header length)', `${size} bytes`, 'the file is truncated');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLen = Number(view.getBigUint64(0, true));
    checkHeaderLength(path, headerLen, size);
    this.tensors = parseHeader(path, bytes.subarray(8, 8 + headerLen), size).tensors;
  }

  /** A tensor's data in a fresh, aligned typed array (as SafetensorsFile.read gives it). */
  read(name: string): TensorData {
    const info = this.tensors.get(name);
    if (!info) throw new LoadError(this.path, `tensor ${name}`, 'no such tensor in this file');
    const buf = this.bytes.slice(info.begin, info.end).buffer;
    switch (info.dtype) {
      case 'F32': return new Float32Array(buf);
      case 'I8': return new Int8Array(buf);
      case 'U8': return new Uint8Array(buf);
      default: return new Uint16Array(buf);
    }
  }
}

/**
 * The files of the model folder `dir` (a name used in messages: a URL, a model name) from `files`, a map from file
 * name (no folder part) to its bytes. Text files are refused over their kind's limit, as on disk; safetensors files
 * are validated when first opened.
 */
export function filesFromBytes(dir: string, files: ReadonlyMap<string, Uint8Array>): CheckpointFiles {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const nameOf = (path: string): string | undefined => (path.startsWith(prefix) ? path.slice(prefix.length) : undefined);
  const get = (path: string, what: string): Uint8Array => {
    const name = nameOf(path);
    const bytes = name === undefined ? undefined : files.get(name);
    if (!bytes) throw new LoadError(path, what, 'no such file');
    return bytes;
  };
  const shards = new Map<string, BytesShard>();
  return {
    exists(path: string): boolean {
      const name = nameOf(path);
      return name !== undefined && files.has(name);
    },
    isFolder(path: string): boolean {
      return path === dir || path === prefix;
    },
    readText(path: string, kind: FileKind): string {
      const what = KIND_NAMES[kind];
      const bytes = get(path, `${what} (a regular file)`);
      const limit = FILE_LIMITS[kind];
      if (bytes.length > limit) throw tooLarge(path, limit, what, `${bytes.length} bytes`);
      return decoder.decode(bytes);
    },
    shard(path: string): SafetensorsShard {
      let st = shards.get(path);
      if (!st) {
        st = new BytesShard(path, get(path, 'a safetensors file (a regular file)'));
        shards.set(path, st);
      }
      return st;
    },
  };
}
