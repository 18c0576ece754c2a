/**
 * The packed-weight cache file (docs/loading.md, "Packed-weight cache"): the native backend's prepared weights of
 * one model — the bf16 panels, or the int8 / q4 layouts of `--quant` — written once to one file and, on later
 * loads, mapped read-only and shared into the process: each weight's ArrayBuffer points into the file's pages, so a
 * load packs nothing and takes no fresh memory (llama.cpp loads its GGUF files the same way). Opt-in: the file is as
 * large as the prepared weights (an 8B model: +16 GB of disk).
 *
 * Layout: "DYLLMPAK", u32 LE format version, u32 LE header length, the JSON header, then each weight's prepared
 * buffer at a 64 KiB-aligned offset (relative to the data start, the header's end rounded up to 64 KiB: a
 * multiple of the page size on every Linux), in load order:
 *
 *   { "key": { layout, quant, config, files: [{ path, size, mtimeNs, ino, headerSha256 }] },
 *     "weights": [{ "name", "dtype", "outFeatures", "inFeatures", "offset", "bytes", "checksum" }] }
 *
 * The file is input like any other. Before anything is mapped its header is checked whole: the magic, the format
 * version, the key (the model files' identity, the quantisation, the packed layout and its addon ABI) equal to
 * this load's, every entry's size equal to what the addon says a prepared weight of that dtype and shape takes,
 * every region inside the file, no two overlapping. Each region's checksum is compared when it is mapped. Anything
 * wrong gives one warning line; the file is ignored (weights it already gave stay: each was checked) and the
 * weights are packed as without it, then the file is rewritten. Writing goes through a temporary name and a rename,
 * so a file that looks complete is complete; a failed write (read-only directory, disk full) is a warning and the
 * load goes on.
 */
import { randomBytes, createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { KernelBackend, PreparedWeight, WeightDtype } from '../kernels/backend.js';
import type { PackedWeightLayout } from '../kernels/native.js';
import type { FileIdentity } from './safetensors.js';
import type { PreparedWeightCache } from './weights.js';

export const PACK_MAGIC = 'DYLLMPAK';
export const PACK_FORMAT_VERSION = 1;
/** Region alignment: a multiple of the page size (4 KiB or 64 KiB) wherever mmap needs one. */
export const PACK_ALIGN = 65536;
/** Largest header accepted (a 225-weight 8B model's is about 40 KB). */
export const MAX_PACK_HEADER = 16 * 1024 * 1024;
const PREFIX = 16;
const DTYPES: readonly WeightDtype[] = ['bf16', 'f32', 'int8', 'q4'];
const WRITE_CHUNK = 1 << 30;

/** What a cache file must have been written for. */
export interface PackKey {
  readonly layout: string;
  readonly quant: string;
  readonly config: string;
  readonly files: readonly FileIdentity[];
}

export interface PackCacheOptions {
  /** The cache directory (default packCacheDir()). */
  readonly dir?: string;
  /** Where the one-line notices and warnings go (default: stderr, "dyllm: " first). */
  readonly log?: (line: string) => void;
}

/** What the cache did during one load (LoadedModel.packCache). */
export interface PackCacheReport {
  readonly path: string;
  /** Weights mapped from the file. */
  readonly mapped: number;
  /** Weights packed in this load. */
  readonly packed: number;
  /** The file was (re)written by this load. */
  readonly written: boolean;
  /** Bytes of prepared weights the file holds (or would hold). */
  readonly bytes: number;
}

/** The cache directory: $DYLLM_CACHE_DIR, else $XDG_CACHE_HOME/dyllm/packed, else ~/.cache/dyllm/packed. */
export function packCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DYLLM_CACHE_DIR) return resolve(env.DYLLM_CACHE_DIR);
  return join(env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'dyllm', 'packed');
}

/**
 * Whether a load uses the cache: the load option when given, else env DYLLM_PACK_CACHE ('1' on; '0' or unset off).
 * Throws an Error for any other value of the variable.
 */
export function packCacheEnabled(opt: boolean | PackCacheOptions | undefined, env: NodeJS.ProcessEnv = process.env): PackCacheOptions | null {
  if (opt !== undefined) return opt === false ? null : opt === true ? {} : opt;
  const v = env.DYLLM_PACK_CACHE;
  if (v === undefined || v === '' || v === '0') return null;
  if (v === '1') return {};
  throw new Error(`DYLLM_PACK_CACHE: expected 1 (use the packed-weight cache) or 0, found "${v}"`);
}

/**
 * The cache file of a model folder at one quantisation and packed layout. One file per folder, quant and layout:
 * a file written for older model files is found, reported stale and replaced, rather than left behind.
 */
export function packCachePath(dir: string, modelDir: string, quant: string, layout: string): string {
  const name = basename(resolve(modelDir)).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'model';
  const h = createHash('sha256').update(`${resolve(modelDir)}\0${quant}\0${layout}`).digest('hex').slice(0, 16);
  return join(dir, `${name}-${quant}-${h}.dyllmpack`);
}

interface Entry {
  readonly name: string;
  readonly dtype: WeightDtype;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly offset: number;
  readonly bytes: number;
  readonly checksum: string;
}

/** Why a cache file cannot be used (one line), or its entries. Reads only the header; maps nothing. */
export function readPackHeader(fd: number, size: number, key: PackKey, layout: Pick<PackedWeightLayout, 'preparedBytes'>): { entries: Map<string, Entry>; dataStart: number } | string {
  if (size < PREFIX) return `${size} bytes, shorter than the ${PREFIX}-byte prefix (truncated)`;
  const pre = Buffer.alloc(PREFIX);
  if (readSync(fd, pre, 0, PREFIX, 0) !== PREFIX) return 'the prefix could not be read';
  if (pre.toString('latin1', 0, 8) !== PACK_MAGIC) return `not a packed-weight cache file (magic ${JSON.stringify(pre.toString('latin1', 0, 8))}, expected "${PACK_MAGIC}")`;
  const version = pre.readUInt32LE(8);
  if (version !== PACK_FORMAT_VERSION) return `format version ${version}, expected ${PACK_FORMAT_VERSION}`;
  const hlen = pre.readUInt32LE(12);
  if (hlen > MAX_PACK_HEADER || PREFIX + hlen > size) return `a header of ${hlen} bytes in a ${size}-byte file (truncated or corrupt; at most ${MAX_PACK_HEADER})`;
  const hbuf = Buffer.alloc(hlen);
  let done = 0;
  while (done < hlen) {
    const n = readSync(fd, hbuf, done, hlen - done, PREFIX + done);
    if (n <= 0) return 'the header could not be read (truncated)';
    done += n;
  }
  let header: { key?: unknown; weights?: unknown };
  try {
    header = JSON.parse(hbuf.toString('utf8')) as typeof header;
  } catch (e) {
    return `unparseable header (${(e as Error).message})`;
  }
  if (header === null || typeof header !== 'object') return 'the header is not a JSON object';
  const stale = keyDifference(header.key, key);
  if (stale) return `stale: ${stale}`;
  if (!Array.isArray(header.weights)) return 'the header has no "weights" list';
  const dataStart = alignUp(PREFIX + hlen, PACK_ALIGN);
  const entries = new Map<string, Entry>();
  const regions: Entry[] = [];
  for (const raw of header.weights as unknown[]) {
    const e = raw as Partial<Entry> | null;
    const what = `weight ${JSON.stringify((e as { name?: unknown } | null)?.name ?? null).slice(0, 80)}`;
    if (e === null || typeof e !== 'object' || typeof e.name !== 'string' || entries.has(e.name)) return `${what}: a missing or repeated name`;
    if (!DTYPES.includes(e.dtype as WeightDtype)) return `${what}: dtype ${JSON.stringify(e.dtype)}`;
    const ints = [e.outFeatures, e.inFeatures, e.offset, e.bytes];
    if (!ints.every((v) => Number.isSafeInteger(v) && (v as number) >= 0) || e.outFeatures === 0 || e.inFeatures === 0) return `${what}: shape, offset or size not positive integers`;
    let want: number;
    try {
      want = layout.preparedBytes(e.dtype as WeightDtype, e.outFeatures!, e.inFeatures!);
    } catch {
      return `${what}: a ${e.outFeatures}x${e.inFeatures} weight that cannot be packed`;
    }
    if (e.bytes !== want) return `${what}: ${e.bytes} bytes, but a prepared ${e.outFeatures}x${e.inFeatures} ${e.dtype} weight is ${want}`;
    if (e.offset! % PACK_ALIGN !== 0) return `${what}: offset ${e.offset} not a multiple of ${PACK_ALIGN}`;
    if (dataStart + e.offset! + e.bytes! > size) return `${what}: its region [${dataStart + e.offset!}, ${dataStart + e.offset! + e.bytes!}) ends past the file's ${size} bytes (truncated)`;
    if (typeof e.checksum !== 'string' || !/^[0-9a-f]{16}$/.test(e.checksum)) return `${what}: no checksum`;
    entries.set(e.name, e as Entry);
    regions.push(e as Entry);
  }
  regions.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < regions.length; i++) {
    if (regions[i].offset < regions[i - 1].offset + regions[i - 1].bytes) return `weights ${regions[i - 1].name} and ${regions[i].name} overlap`;
  }
  return { entries, dataStart };
}

/** How a file's key differs from this load's (one phrase), or null when it is the same. */
function keyDifference(found: unknown, want: PackKey): string | null {
  if (found === null || typeof found !== 'object') return 'the header has no key';
  const f = found as Partial<PackKey>;
  if (f.layout !== want.layout) return `written for packed layout ${JSON.stringify(f.layout)}, this addon packs ${JSON.stringify(want.layout)}`;
  if (f.quant !== want.quant) return `written for --quant ${JSON.stringify(f.quant)}, this load is --quant ${want.quant}`;
  if (f.config !== want.config) return 'config.json changed since it was written';
  const files = Array.isArray(f.files) ? (f.files as Partial<FileIdentity>[]) : [];
  for (const w of want.files) {
    const g = files.find((x) => x?.path === w.path);
    if (!g) return `${w.path} is not among the files it was written for`;
    for (const k of ['size', 'mtimeNs', 'ino', 'headerSha256'] as const) {
      if (g[k] !== w[k]) return `${w.path} changed since it was written (${k} ${String(g[k]).slice(0, 20)}, now ${String(w[k]).slice(0, 20)})`;
    }
  }
  if (files.length !== want.files.length) return 'written for other model files';
  return null;
}

/**
 * The packed layout of a backend's prepared weights (the native backend's packedLayout()), or null for a backend
 * without one. Found by name, so this file imports nothing of the native addon's loader at run time.
 */
export function packedWeightLayout(backend: KernelBackend): PackedWeightLayout | null {
  const b = backend as KernelBackend & { packedLayout?: () => PackedWeightLayout | null };
  return typeof b.packedLayout === 'function' ? b.packedLayout() : null;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * One load's use of the cache: weights from the file where it holds them (`get`), the rest prepared as usual and
 * recorded (`add`); `finish` writes the file when this load packed anything.
 */
export class PackCacheSession implements PreparedWeightCache {
  private fd: number | null = null;
  private entries: Map<string, Entry> | null = null;
  private dataStart = 0;
  /** Every weight of this load, in load order, with the buffer to write. */
  private readonly weights: { name: string; w: PreparedWeight; buffer: ArrayBuffer }[] = [];
  private mapped = 0;
  private packed = 0;
  private readonly log: (line: string) => void;

  private constructor(readonly path: string, private readonly key: PackKey, private readonly layout: PackedWeightLayout, opts: PackCacheOptions) {
    this.log = opts.log ?? ((line) => process.stderr.write(`dyllm: ${line}\n`));
    let fd: number;
    try {
      // Non-blocking, and then only a regular file is read: a FIFO in its place cannot hang the load.
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') this.warn(`cannot open it (${code ?? (e as Error).message})`);
      return;
    }
    try {
      const st = fstatSync(fd);
      const r = st.isFile() ? readPackHeader(fd, st.size, key, layout) : 'not a regular file';
      if (typeof r === 'string') {
        this.warn(r);
        closeSync(fd);
        return;
      }
      this.fd = fd;
      this.entries = r.entries;
      this.dataStart = r.dataStart;
    } catch (e) {
      closeSync(fd);
      this.warn(`cannot read it (${(e as Error).message})`);
    }
  }

  /**
   * The session for a load of `modelDir` on `backend`, or null when the cache cannot apply (a backend without a
   * packed layout, files that are not on disk): said once through the log when so.
   */
  static open(modelDir: string, backend: KernelBackend, files: readonly FileIdentity[] | null, quant: string, configText: string, opts: PackCacheOptions = {}): PackCacheSession | null {
    const log = opts.log ?? ((line: string) => process.stderr.write(`dyllm: ${line}\n`));
    const layout = packedWeightLayout(backend);
    if (!layout) {
      log(`packed-weight cache: not used: the ${backend.name} backend has no packed layout to cache (the native backend has)`);
      return null;
    }
    if (!files) {
      log('packed-weight cache: not used: the model files are not files on disk');
      return null;
    }
    const key: PackKey = { layout: layout.id, quant, config: createHash('sha256').update(configText).digest('hex'), files };
    const dir = opts.dir ?? packCacheDir();
    return new PackCacheSession(packCachePath(dir, modelDir, quant, layout.id), key, layout, opts);
  }

  private warn(problem: string): void {
    this.log(`warning: packed-weight cache ${this.path}: ${problem}; ignoring it and packing the weights`);
  }

  /** Drops the file for the rest of this load (after a bad region). */
  private drop(problem: string): void {
    this.warn(problem);
    this.entries = null;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  get(name: string, dtype: WeightDtype, outFeatures: number, inFeatures: number): PreparedWeight | null {
    const e = this.entries?.get(name);
    if (!e || this.fd === null) {
      if (this.entries) this.drop(`it holds no weight ${name}`);
      return null;
    }
    if (e.dtype !== dtype || e.outFeatures !== outFeatures || e.inFeatures !== inFeatures) {
      this.drop(`weight ${name} is ${e.dtype} ${e.outFeatures}x${e.inFeatures}, this load prepares ${dtype} ${outFeatures}x${inFeatures}`);
      return null;
    }
    const { addon } = this.layout;
    let buffer: ArrayBuffer;
    try {
      // The file was opened once and its size checked against every region: it is replaced by rename, never
      // truncated in place, by dyllm (a file truncated under a mapping faults the process, as any mapped loader).
      if (fstatSync(this.fd).size < this.dataStart + e.offset + e.bytes) {
        this.drop('the file was truncated after it was opened');
        return null;
      }
      buffer = addon.mapRegion(this.fd, this.dataStart + e.offset, e.bytes);
    } catch (err) {
      this.drop(`cannot map weight ${name} (${(err as Error).message})`);
      return null;
    }
    addon.populate(buffer, 0, e.bytes);
    const sum = addon.checksum(buffer, 0, e.bytes);
    if (sum !== e.checksum) {
      this.drop(`weight ${name}: checksum ${sum}, the header says ${e.checksum} (corrupt)`);
      return null;
    }
    const w = this.layout.adopt(dtype, outFeatures, inFeatures, buffer);
    this.mapped++;
    this.weights.push({ name, w, buffer });
    return w;
  }

  add(name: string, w: PreparedWeight): void {
    const buffer = this.layout.bytesOf(w);
    if (!buffer) throw new TypeError(`packed-weight cache: weight ${name} was not prepared by the native backend`);
    this.packed++;
    this.weights.push({ name, w, buffer });
  }

  /**
   * Closes the file, and writes it anew when this load packed any weight (`write`: false after a failed load).
   * What happened, for the caller.
   */
  finish(write = true): PackCacheReport {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    const bytes = this.weights.reduce((n, x) => n + x.buffer.byteLength, 0);
    let written = false;
    if (write && this.packed > 0) {
      const problem = this.write();
      if (problem) this.log(`warning: packed-weight cache: could not write ${this.path} (${problem}); the model loaded without it`);
      else {
        written = true;
        this.log(`packed-weight cache: wrote ${this.path} (${(bytes / 2 ** 20).toFixed(0)} MiB, ${this.weights.length} weights); later loads with --pack-cache map it`);
      }
    }
    return { path: this.path, mapped: this.mapped, packed: this.packed, written, bytes };
  }

  /** Writes every weight of this load to a temporary file renamed over the cache file; the problem, or null. */
  private write(): string | null {
    const { addon } = this.layout;
    const dir = resolve(this.path, '..');
    let offset = 0;
    const weights: Entry[] = this.weights.map(({ name, w, buffer }) => {
      const e: Entry = { name, dtype: w.dtype, outFeatures: w.outFeatures, inFeatures: w.inFeatures, offset, bytes: buffer.byteLength, checksum: addon.checksum(buffer, 0, buffer.byteLength) };
      offset = alignUp(offset + buffer.byteLength, PACK_ALIGN);
      return e;
    });
    const header = Buffer.from(JSON.stringify({ key: this.key, weights }), 'utf8');
    if (header.length > MAX_PACK_HEADER) return `a ${header.length}-byte header (the limit is ${MAX_PACK_HEADER})`;
    const pre = Buffer.alloc(PREFIX);
    pre.write(PACK_MAGIC, 0, 'latin1');
    pre.writeUInt32LE(PACK_FORMAT_VERSION, 8);
    pre.writeUInt32LE(header.length, 12);
    const dataStart = alignUp(PREFIX + header.length, PACK_ALIGN);
    const tmp = join(dir, `.${basename(this.path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
    let fd: number | null = null;
    try {
      mkdirSync(dir, { recursive: true });
      fd = openSync(tmp, 'wx', 0o644);
      writeAll(fd, pre, 0);
      writeAll(fd, header, PREFIX);
      for (let i = 0; i < weights.length; i++) {
        const buf = this.weights[i].buffer;
        for (let o = 0; o < buf.byteLength; o += WRITE_CHUNK) {
          writeAll(fd, new Uint8Array(buf, o, Math.min(WRITE_CHUNK, buf.byteLength - o)), dataStart + weights[i].offset + o);
        }
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = null;
      renameSync(tmp, this.path);
      return null;
    } catch (e) {
      if (fd !== null) {
        try {
          closeSync(fd);
        } catch {
          // already failing
        }
      }
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
      return (e as Error).message.replace(/\s*\n\s*/g, ' ');
    }
  }
}

function writeAll(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = writeSync(fd, buf, done, buf.length - done, position + done);
    if (n <= 0) throw new Error(`short write at ${position + done}`);
    done += n;
  }
}
