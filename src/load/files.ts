/**
 * The one way the loader opens a file of a model folder. A model folder is untrusted input: any name in it may be
 * a FIFO (opening it for reading blocks until a writer comes), a device (`/dev/zero` never ends), a directory, a
 * socket, a dangling or looping symlink, or a regular file far larger than any real file of its kind. So every
 * file is
 * - opened without blocking (O_NONBLOCK) and checked with fstat on the open descriptor: only a regular file is
 *   read (a symlink is followed, but only to a regular file);
 * - refused when larger than the limit of its kind (below), before anything is allocated, and read only up to
 *   that limit (a file that grows while it is read is still cut off at the limit and refused).
 * Every refusal is a one-line LoadError naming the file, what was expected and what was found.
 *
 * Limits, per kind of file (each well above the largest real file of its kind we know of):
 * | kind              | files                                                                 | limit   |
 * |-------------------|-----------------------------------------------------------------------|---------|
 * | json-config       | config.json, generation_config.json, special_tokens_map.json,          | 1 MiB   |
 * |                   | added_tokens.json, chat_template.json                                  |         |
 * | tokenizer-config  | tokenizer_config.json (large added_tokens_decoder tables)              | 4 MiB   |
 * | tokenizer         | tokenizer.json, vocab.json, merges.txt (Qwen2 vocab.json is 3.3 MB,   | 64 MiB  |
 * |                   | Gemma-3 tokenizer.json 33 MB)                                          |         |
 * | index             | model.safetensors.index.json (one line per tensor)                     | 16 MiB  |
 * | template          | chat_template.jinja (and any template source, see chat-template.ts)   | 256 KiB |
 * | hub-ref           | refs/<revision> of the Hugging Face cache (a commit hash)             | 256 B   |
 * safetensors shards are opened with `openRegularFile` and read piecewise: their header is bounded by
 * safetensors.ts (MAX_HEADER_BYTES) and every tensor by the file's own size.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { LoadError } from './errors.js';

/**
 * Where a model's files come from, for loaders that can read other than a folder on disk (load/bytes.ts: files
 * fetched into memory, e.g. in a browser). Paths are the same `join(dir, name)` paths the folder loader uses, so
 * every message names the file the same way. A source applies the same per-kind limits (FILE_LIMITS).
 */
export interface ModelFiles {
  /** Whether anything is at `path`. */
  exists(path: string): boolean;
  /** Whether `path` is the model's folder (loadConfig's "is this a folder" check). */
  isFolder(path: string): boolean;
  /** The text of a file of `kind`, refused (LoadError) when missing or larger than FILE_LIMITS[kind]. */
  readText(path: string, kind: FileKind): string;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const FILE_LIMITS = Object.freeze({
  'json-config': 1 * MiB,
  'tokenizer-config': 4 * MiB,
  tokenizer: 64 * MiB,
  index: 16 * MiB,
  template: 256 * KiB,
  'hub-ref': 256,
});

export type FileKind = keyof typeof FILE_LIMITS;

/** 1536 → "1.5 KiB", 1048576 → "1 MiB" (for messages). */
export function formatBytes(n: number): string {
  if (n < KiB) return `${n} B`;
  const [v, u] = n < MiB ? [n / KiB, 'KiB'] : n < 1024 * MiB ? [n / MiB, 'MiB'] : [n / (1024 * MiB), 'GiB'];
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${u}`;
}

/** What a non-regular file is, in words. */
function describe(s: Stats): string {
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  if (s.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'no such file';
    case 'ELOOP':
      return 'a symbolic link loop';
    case 'EACCES':
    case 'EPERM':
      return 'a file it may not read (permission denied)';
    case 'ENOTDIR':
      return 'a path through something that is not a folder';
    case 'ENAMETOOLONG':
      return 'a path that is too long';
    default:
      return `an unreadable file (${err.code ?? (err.message ?? String(e)).split('\n')[0]})`;
  }
}

/**
 * Whether anything is at `path` (a file of any type, or a symlink, even a dangling one). Used for "is this
 * optional file there": when it is, it is read through the checks below, so a FIFO named like an optional file
 * is refused rather than skipped or blocked on.
 */
export function pathExists(path: string, files?: ModelFiles): boolean {
  if (files) return files.exists(path);
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** stat (symlinks followed), or a LoadError saying what is there instead (nothing, a dangling link, a loop). */
function statOrThrow(path: string, what: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      // A dangling symlink is reported as such: lstat sees the link, stat does not see its target.
      let dangling = false;
      try {
        dangling = lstatSync(path).isSymbolicLink();
      } catch {
        /* nothing there at all */
      }
      throw new LoadError(path, what, dangling ? 'a symbolic link to nothing' : 'no such file');
    }
    throw new LoadError(path, what, errnoText(e));
  }
}

/**
 * Open `path` for reading if, and only if, it is a regular file (symlinks followed). The descriptor is opened
 * non-blocking, so a FIFO swapped in after the stat cannot block the open, and fstat on the descriptor is what
 * decides. The caller closes the descriptor.
 */
export function openRegularFile(path: string, what: string): { fd: number; size: number } {
  const expected = `${what} (a regular file)`;
  const s = statOrThrow(path, expected);
  if (!s.isFile()) throw new LoadError(path, expected, describe(s), 'point the loader at a real file');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0));
  } catch (e) {
    throw new LoadError(path, expected, errnoText(e));
  }
  try {
    const fs = fstatSync(fd);
    if (!fs.isFile()) throw new LoadError(path, expected, describe(fs), 'point the loader at a real file');
    return { fd, size: fs.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** The refusal of a file over its kind's limit (shared with the in-memory source, load/bytes.ts). */
export function tooLarge(path: string, limit: number, what: string, found: string): LoadError {
  return new LoadError(path, `${what} of at most ${formatBytes(limit)} (${limit} bytes)`, found, 'far larger than any real file of its kind; check the file');
}

/**
 * The bytes of a regular file of at most `limit` bytes. `what` names the file's role in messages ("a JSON
 * config file"). Refuses a non-regular file, a larger file, and a file that grows past the limit while it is read.
 */
export function readLimitedBytes(path: string, limit: number, what: string): Buffer {
  const { fd, size } = openRegularFile(path, what);
  try {
    const tooBig = (found: string): LoadError => tooLarge(path, limit, what, found);
    if (size > limit) throw tooBig(`${size} bytes`);
    // Room for one byte more than the file's size: reading it means the file grew; it is then read on, in
    // doubling steps, but never past limit + 1 bytes (one byte over the limit is enough to refuse it).
    let buf = Buffer.allocUnsafe(size + 1);
    let done = 0;
    for (;;) {
      if (done === buf.length) {
        if (done > limit) throw tooBig(`more than ${formatBytes(limit)} (the file grew while it was read)`);
        const bigger = Buffer.allocUnsafe(Math.min(limit + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, done);
        buf = bigger;
      }
      let n: number;
      try {
        n = readSync(fd, buf, done, buf.length - done, done);
      } catch (e) {
        throw new LoadError(path, `${what} (a regular file)`, errnoText(e));
      }
      if (n === 0) return buf.subarray(0, done);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** What each kind of file is called in messages. */
export const KIND_NAMES: Readonly<Record<FileKind, string>> = {
  'json-config': 'a JSON config file',
  'tokenizer-config': 'a tokenizer_config.json',
  tokenizer: 'a tokenizer file',
  index: 'a safetensors index',
  template: 'a chat template file',
  'hub-ref': 'a revision file',
};

/** A model-folder file as UTF-8 text (invalid bytes become U+FFFD, as readFileSync(…, 'utf8') does). */
export function readTextFile(path: string, kind: FileKind, files?: ModelFiles): string {
  if (files) return files.readText(path, kind);
  return readLimitedBytes(path, FILE_LIMITS[kind], KIND_NAMES[kind]).toString('utf8');
}

/** Like readTextFile, but null when nothing is at `path` (a dangling symlink or a FIFO is still an error). */
export function readOptionalTextFile(path: string, kind: FileKind, files?: ModelFiles): string | null {
  if (!pathExists(path, files)) return null;
  return readTextFile(path, kind, files);
}

/** A JSON object file (LoadError for anything else: unparseable text, an array, a number, null). */
export function readJsonObject(path: string, kind: FileKind, files?: ModelFiles): Record<string, unknown> {
  return parseJsonObject(path, readTextFile(path, kind, files));
}

/** A JSON object file, or null when nothing is at `path`. */
export function readOptionalJsonObject(path: string, kind: FileKind, files?: ModelFiles): Record<string, unknown> | null {
  if (!pathExists(path, files)) return null;
  return readJsonObject(path, kind, files);
}

export function parseJsonObject(path: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new LoadError(path, 'valid JSON', `unparseable JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    throw new LoadError(path, 'a JSON object', Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v);
  }
  return v as Record<string, unknown>;
}
