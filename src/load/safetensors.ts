/**
 * safetensors reader: header parse (8-byte LE length + JSON), strict validation of every entry against the file,
 * then tensors as typed arrays. A checkpoint is many GB, so the file is never read whole into one giant Buffer or
 * string. Shards resolve through model.safetensors.index.json.
 *
 * Where the native addon is available each file is mapped into memory once (mapFile: a private mapping, so the
 * pages come straight from the page cache and nothing is copied) and a tensor is a view into that mapping; the
 * backend packs it from there. Without the addon, with DYLLM_MMAP=off, or for a tensor whose data is not aligned
 * to its element size, a tensor is read from disk into a typed array of its own. Both give the same bits
 * (src/load/safetensors.test.ts). A mapped file that shrinks while it is in use would fault the process (SIGBUS)
 * on the next page read past its new end, so the file's size is checked before every tensor is handed out
 * (docs/loading.md).
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, readSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadNativeAddon, type NativeAddon } from '../kernels/native.js';
import { DTYPE_BYTES, type DType } from '../tensor/dtype.js';
import { LoadError } from './errors.js';
import { openRegularFile, parseJsonObject, pathExists, readTextFile, type ModelFiles } from './files.js';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute byte range in the file, end exclusive. */
  readonly begin: number;
  readonly end: number;
  readonly file: string;
}

/**
 * What identifies a safetensors file's contents without reading its data (the key of a packed-weight cache,
 * src/load/pack-cache.ts): where it is, its size, modification time and inode, and a hash of its header.
 */
export interface FileIdentity {
  readonly path: string;
  readonly size: number;
  readonly mtimeNs: string;
  readonly ino: string;
  readonly headerSha256: string;
}

export type TensorData = Uint16Array | Float32Array | Int8Array | Uint8Array;

const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const READ_CHUNK = 1 << 30; // readSync caps a single read near 2 GiB

/** How a tensor is handed out. */
export interface ReadOptions {
  /**
   * Fault a mapped tensor's pages in before it is returned (default true: it is about to be read whole, e.g.
   * packed). false for a tensor read a little at a time (the embedding, looked up row by row): its pages then come
   * in as they are touched.
   */
  readonly populate?: boolean;
}

export interface CheckpointOptions {
  /** Map the files (default: yes where the native addon loads, unless env DYLLM_MMAP=off); false: read each tensor. */
  map?: boolean;
}

/** The addon when files should be mapped, else null (no addon, DYLLM_MMAP=off, or map: false). */
function mapper(opts: CheckpointOptions): NativeAddon | null {
  if (opts.map === false || (opts.map === undefined && process.env.DYLLM_MMAP === 'off')) return null;
  try {
    const addon = loadNativeAddon();
    return typeof addon.mapFile === 'function' ? addon : null;
  } catch {
    return null;
  }
}

/** One .safetensors file with its validated header. */
export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Readonly<Record<string, string>>;
  readonly identity: FileIdentity;
  /** The whole file mapped (see the top of this file), or null: tensors are read. */
  private mapping: ArrayBuffer | null = null;
  private readonly addon: NativeAddon | null;

  constructor(readonly path: string, opts: CheckpointOptions = {}) {
    this.addon = mapper(opts);
    // A FIFO, a device (/dev/zero) or a directory in place of a shard is refused before anything is read.
    const { fd, size } = openRegularFile(path, 'a safetensors file');
    try {
      if (size < 8) throw new LoadError(path, 'at least 8 bytes (header length)', `${size} bytes`, 'the file is truncated');
      const lenBuf = Buffer.alloc(8);
      readFully(fd, lenBuf, 0, path, 'the header length');
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      checkHeaderLength(path, headerLen, size);
      const hbuf = Buffer.alloc(headerLen);
      readFully(fd, hbuf, 8, path, 'the header');
      const parsed = parseHeader(path, hbuf, size);
      const st = fstatSync(fd, { bigint: true });
      let real = path;
      try {
        real = realpathSync(path);
      } catch {
        // gone since it was opened: the key still names the path given
      }
      this.identity = { path: real, size, mtimeNs: String(st.mtimeNs), ino: String(st.ino), headerSha256: createHash('sha256').update(hbuf).digest('hex') };
      this.metadata = parsed.metadata;
      for (const [name, info] of parsed.tensors) this.tensors.set(name, info);
      if (this.addon && this.tensors.size > 0) {
        try {
          this.mapping = this.addon.mapFile(fd, size);
        } catch {
          this.mapping = null; // a file system that cannot be mapped: tensors are read instead
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /** True when tensors are views into a mapping of the file rather than copies. */
  get mapped(): boolean {
    return this.mapping !== null;
  }

  /**
   * One tensor (BF16/F16 as Uint16Array bits, F32 as Float32Array, I8, U8): a view into the file's mapping, or a fresh
   * typed array read from disk. Treat it as read-only; it may share memory with the file's other tensors.
   */
  read(name: string, opts: ReadOptions = {}): TensorData {
    const info = this.tensors.get(name);
    if (!info) throw new LoadError(this.path, `tensor ${name}`, 'no such tensor in this file');
    const nbytes = info.end - info.begin;
    const elem = DTYPE_BYTES[info.dtype];
    if (this.mapping && this.addon && info.begin % elem === 0) {
      // Checked through the same reader as before: touching a page past the end of a file that shrank would fault.
      const { fd, size } = openRegularFile(this.path, 'a safetensors file');
      closeSync(fd);
      if (size < info.end) throw new LoadError(this.path, `at least ${info.end} bytes (for ${name})`, `${size} bytes`, 'the file changed or was truncated after it was opened');
      if (nbytes > 0 && opts.populate !== false) this.addon.populate(this.mapping, info.begin, nbytes);
      return typedView(info.dtype, this.mapping, info.begin, nbytes / elem);
    }
    const buf = new ArrayBuffer(nbytes);
    const view = new Uint8Array(buf);
    // Reopened through the same checks: the file may have been replaced since the header was read.
    const { fd, size } = openRegularFile(this.path, 'a safetensors file');
    try {
      if (size < info.end) throw new LoadError(this.path, `at least ${info.end} bytes (for ${name})`, `${size} bytes`, 'the file changed or was truncated after it was opened');
      let done = 0;
      while (done < nbytes) {
        const n = readSync(fd, view, done, Math.min(READ_CHUNK, nbytes - done), info.begin + done);
        if (n <= 0) throw new LoadError(this.path, `${nbytes} bytes for ${name}`, `end of file after ${done}`, 'the file is truncated');
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return typedView(info.dtype, buf, 0, nbytes / elem);
  }

  /**
   * Tells the loader a tensor's pages are no longer needed in this process (its data was packed elsewhere): they
   * leave the resident set and a later read of the view faults them back in from the file. No-op when not mapped.
   */
  release(name?: string): void {
    if (!this.mapping || !this.addon) return;
    if (name === undefined) {
      this.addon.release(this.mapping, 0, this.mapping.byteLength);
      return;
    }
    const info = this.tensors.get(name);
    if (info) this.addon.release(this.mapping, info.begin, info.end - info.begin);
  }
}

/** The header length (the file's first 8 bytes, LE), bounded before anything is allocated: by the file, and by the format's own limit. */
export function checkHeaderLength(path: string, headerLen: number, size: number): void {
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
    throw new LoadError(
      path,
      `a header length ≤ ${Math.min(MAX_HEADER_BYTES, size - 8)} B (the file size, and the format's 100 MiB limit)`,
      `${headerLen} B`,
      'the header length is corrupt or the file is truncated',
    );
  }
}

/**
 * The JSON header (its `headerLen` bytes, after the 8-byte length) of a safetensors file of `size` bytes, every
 * entry checked against the file. Shared by the folder reader and the in-memory one (load/bytes.ts).
 */
export function parseHeader(path: string, hbytes: Uint8Array, size: number): { tensors: Map<string, TensorInfo>; metadata: Readonly<Record<string, string>> } {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { ignoreBOM: true }).decode(hbytes)) as Record<string, unknown>;
  } catch (e) {
    throw new LoadError(path, 'a JSON header', `unparseable JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new LoadError(path, 'a JSON object header', typeof header);
  }
  const dataStart = 8 + hbytes.length;
  const dataSize = size - dataStart;
  const meta = header.__metadata__;
  if (meta !== undefined && (meta === null || typeof meta !== 'object' || Array.isArray(meta) || !Object.values(meta).every((v) => typeof v === 'string'))) {
    throw new LoadError(path, 'a "__metadata__" object of strings (the safetensors format)', fmtJson(meta));
  }
  const tensors = new Map<string, TensorInfo>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, parseEntry(path, name, raw, dataStart, dataSize));
  }
  checkOverlaps(path, [...tensors.values()]);
  return { tensors, metadata: (meta ?? {}) as Record<string, string> };
}

/** Fill `buf` from `position`; a short read is a truncated file. */
function readFully(fd: number, buf: Buffer, position: number, path: string, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n <= 0) throw new LoadError(path, `${buf.length} bytes for ${what}`, `end of file after ${done}`, 'the file is truncated');
    done += n;
  }
}

function parseEntry(path: string, name: string, raw: unknown, dataStart: number, dataSize: number): TensorInfo {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!e || typeof e !== 'object') throw new LoadError(path, `an object for tensor ${name}`, JSON.stringify(raw));
  if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) {
    throw new LoadError(path, `dtype BF16, F16, F32, I8 or U8 for tensor ${name}`, String(e.dtype), 'convert the checkpoint to one of these dtypes');
  }
  const dtype = e.dtype as DType;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new LoadError(path, `a shape of non-negative integers for tensor ${name}`, JSON.stringify(e.shape));
  }
  const shape = e.shape as number[];
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0]) {
    throw new LoadError(path, `data_offsets [begin, end] for tensor ${name}`, JSON.stringify(off));
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  const want = numel * DTYPE_BYTES[dtype];
  if (off[1] - off[0] !== want) {
    throw new LoadError(path, `${want} bytes for tensor ${name} (${dtype} ${JSON.stringify(shape)})`, `${off[1] - off[0]} bytes in data_offsets`, 'the header lies about this tensor');
  }
  if (off[1] > dataSize) {
    throw new LoadError(path, `tensor ${name} to end within the data section (${dataSize} B)`, `end offset ${off[1]}`, 'the file is truncated');
  }
  return { name, dtype, shape, begin: dataStart + off[0], end: dataStart + off[1], file: path };
}

function checkOverlaps(path: string, infos: TensorInfo[]): void {
  const sorted = [...infos].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new LoadError(path, 'non-overlapping tensor data', `${sorted[i - 1].name} and ${sorted[i].name} overlap`, 'the header is corrupt');
    }
  }
}

function fmtJson(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** One safetensors file as Checkpoint uses it: its validated entries, and each tensor's data on request. */
export interface SafetensorsShard {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  read(name: string, opts?: ReadOptions): TensorData;
  /** Drops a tensor's (or every tensor's) mapped pages from the resident set; optional (bytes held in memory: nothing to drop). */
  release?(name?: string): void;
  /** The file's identity (a file on disk); absent for bytes held in memory. */
  readonly identity?: FileIdentity;
}

/** Another source of a checkpoint's files than the folder on disk (load/bytes.ts): its text files and its shards. */
export interface CheckpointFiles extends ModelFiles {
  /** The safetensors file at `path`, header validated (parseHeader); LoadError when missing. */
  shard(path: string): SafetensorsShard;
}

/** All tensors of a checkpoint folder: `model.safetensors`, or the shards named by `model.safetensors.index.json`. */
export class Checkpoint {
  private readonly byName = new Map<string, SafetensorsShard>();

  constructor(readonly dir: string, opts: CheckpointOptions & { readonly files?: CheckpointFiles } = {}) {
    const files = opts.files;
    const open = (path: string): SafetensorsShard => (files ? files.shard(path) : new SafetensorsFile(path, opts));
    const indexPath = join(dir, 'model.safetensors.index.json');
    const singlePath = join(dir, 'model.safetensors');
    if (pathExists(indexPath, files)) {
      const index = parseJsonObject(indexPath, readTextFile(indexPath, 'index', files)) as { weight_map?: unknown };
      const wm = index.weight_map as Record<string, unknown> | undefined;
      if (!wm || typeof wm !== 'object' || Array.isArray(wm)) {
        throw new LoadError(indexPath, 'a "weight_map" object', wm === undefined ? `keys ${JSON.stringify(Object.keys(index)).slice(0, 80)}` : fmtJson(wm));
      }
      const shards = new Map<string, SafetensorsShard>();
      for (const [name, file] of Object.entries(wm)) {
        if (typeof file !== 'string' || basename(file) !== file) throw new LoadError(indexPath, `a shard file name for ${name}`, JSON.stringify(file));
        let st = shards.get(file);
        if (!st) {
          st = open(join(dir, file));
          shards.set(file, st);
        }
        if (!st.tensors.has(name)) throw new LoadError(join(dir, file), `tensor ${name} (listed in model.safetensors.index.json)`, 'no such tensor in the shard');
        this.byName.set(name, st);
      }
      for (const [file, st] of shards) {
        for (const name of st.tensors.keys()) {
          if (wm[name] !== file) throw new LoadError(join(dir, file), `only tensors the index maps to ${file}`, `${name} (index says ${fmtJson(wm[name] ?? 'nothing')})`);
        }
      }
    } else if (pathExists(singlePath, files)) {
      const st = open(singlePath);
      for (const name of st.tensors.keys()) this.byName.set(name, st);
    } else {
      throw new LoadError(dir, 'model.safetensors or model.safetensors.index.json', 'neither', 'point --model at a Hugging Face model folder');
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.byName.get(name)?.tensors.get(name);
  }

  /** One tensor (see SafetensorsFile.read: a view into the mapped file where possible; treat it as read-only). */
  read(name: string, opts?: ReadOptions): TensorData {
    const st = this.byName.get(name);
    if (!st) throw new LoadError(this.dir, `tensor ${name}`, 'not in the checkpoint');
    return st.read(name, opts);
  }

  /** Drops a tensor's mapped pages (or, without a name, every file's) from the resident set; see SafetensorsFile.release. */
  release(name?: string): void {
    if (name !== undefined) {
      this.byName.get(name)?.release?.(name);
      return;
    }
    for (const st of new Set(this.byName.values())) st.release?.();
  }

  /** The identity of every file of the checkpoint (in name order), or null when one is not a file on disk. */
  identity(): FileIdentity[] | null {
    const ids: FileIdentity[] = [];
    for (const st of new Set(this.byName.values())) {
      if (!st.identity) return null;
      ids.push(st.identity);
    }
    return ids.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Total bytes of tensor data. */
  nbytes(): number {
    let n = 0;
    for (const name of this.byName.keys()) {
      const i = this.info(name)!;
      n += i.end - i.begin;
    }
    return n;
  }
}

/** A tensor's elements over `buf` from byte `offset`: F32 as Float32Array, I8 / U8 as themselves, 16-bit types as bits. */
function typedView(dtype: string, buf: ArrayBuffer, offset: number, n: number): TensorData {
  switch (dtype) {
    case 'F32': return new Float32Array(buf, offset, n);
    case 'I8': return new Int8Array(buf, offset, n);
    case 'U8': return new Uint8Array(buf, offset, n);
    default: return new Uint16Array(buf, offset, n);
  }
}
