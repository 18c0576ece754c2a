/**
 * Where models live: a folder path, a bundled model by name (`dyllm-demo`), or a Hugging Face repository id
 * (`org/name`, `org/name@revision`) found in the Hugging Face cache exactly as huggingface_hub lays it out
 * (`$HF_HUB_CACHE/models--org--name/{refs/<revision>, snapshots/<commit>/<file> -> ../../blobs/<etag>}`), and
 * `pullModel`, which fills that cache from the hub (`$HF_ENDPOINT`, `$HF_TOKEN`): listing through @huggingface/hub,
 * bytes through ranged requests so an interrupted download resumes from its `.incomplete` blob, LFS files checked
 * against their sha256.
 *
 * May import: load/errors. Imported by: engine/pipeline.ts (names resolve wherever a model folder is accepted), cli/.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, openSync, closeSync, writeSync, renameSync, rmSync, statSync, statfsSync, symlinkSync, unlinkSync, writeFileSync, lstatSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LoadError } from './errors.js';
import { FILE_LIMITS, readTextFile } from './files.js';

/** Models shipped inside the package, by name. */
export const BUNDLED_MODELS: Readonly<Record<string, string>> = Object.freeze({
  'dyllm-demo': fileURLToPath(new URL('../../../models/dyllm-demo', import.meta.url)),
});

/** The bundled demo model's folder (for `loadPipeline(bundledModelPath)` or `--model`). */
export const bundledModelPath = BUNDLED_MODELS['dyllm-demo'];

/** A Hugging Face model id with an optional revision: `org/name` or `org/name@rev`. */
export interface RepoRef {
  readonly repo: string;
  readonly revision: string;
}

const REPO_RE = /^([A-Za-z0-9][A-Za-z0-9._-]{0,95})\/([A-Za-z0-9][A-Za-z0-9._-]{0,95})(?:@([A-Za-z0-9][A-Za-z0-9._/-]{0,127}))?$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;

/** `org/name[@rev]` → RepoRef, or null when the text is not a repository id. */
export function parseRepoRef(spec: string): RepoRef | null {
  const m = REPO_RE.exec(spec);
  if (!m || spec.includes('..')) return null;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? 'main' };
}

/** The hub cache folder, as huggingface_hub resolves it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

function repoFolder(cache: string, repo: string): string {
  return join(cache, `models--${repo.split('/').join('--')}`);
}

/** The snapshot folder of a repository revision in the cache, or null with the places looked at. */
export function findInCache(ref: RepoRef, cache = hubCacheDir()): { dir: string | null; looked: string[] } {
  const root = repoFolder(cache, ref.repo);
  const looked: string[] = [];
  let commit: string | null = null;
  if (COMMIT_RE.test(ref.revision)) {
    commit = ref.revision;
  } else {
    const refFile = join(root, 'refs', ref.revision);
    looked.push(refFile);
    if (existsSync(refFile) && statSync(refFile).isFile() && statSync(refFile).size <= FILE_LIMITS['hub-ref']) {
      const c = readTextFile(refFile, 'hub-ref').trim();
      if (COMMIT_RE.test(c)) commit = c;
    }
  }
  if (commit === null) return { dir: null, looked };
  const snap = join(root, 'snapshots', commit);
  looked.push(snap);
  return { dir: existsSync(join(snap, 'config.json')) ? snap : null, looked };
}

/**
 * A model argument → a folder: an existing path first, then a bundled model's name, then a repository id in the
 * Hugging Face cache. The error lists every place it looked and how to get the model.
 */
export function resolveModelDir(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof spec !== 'string' || spec === '') throw new LoadError(String(spec), 'a model folder, a bundled model name or a Hugging Face id', 'an empty name');
  if (existsSync(spec)) return spec;
  const bundled = BUNDLED_MODELS[spec];
  if (bundled !== undefined) {
    if (existsSync(bundled)) return bundled;
    throw new LoadError(bundled, `the bundled model "${spec}"`, 'no such folder', 'reinstall dyllm');
  }
  const ref = parseRepoRef(spec);
  if (ref === null) {
    throw new LoadError(spec, 'a model folder, a bundled model name (' + Object.keys(BUNDLED_MODELS).join(', ') + ') or a Hugging Face id org/name[@revision]', 'no such folder');
  }
  const cache = hubCacheDir(env);
  const { dir, looked } = findInCache(ref, cache);
  if (dir) return dir;
  throw new LoadError(spec, `a folder, or ${ref.repo}@${ref.revision} in the Hugging Face cache`, `nothing at ${[resolve(spec), ...looked].join(', ')}`, `run: dyllm pull ${spec}`);
}

// ---- pull --------------------------------------------------------------------------------------------------------

/** Files a model folder needs (weights, configs, tokenizer, templates); everything else in a repo is skipped. */
const WANTED = /^(?:[^/]+\.json|[^/]+\.safetensors|merges\.txt|[^/]+\.jinja|tokenizer\.model|README\.md|LICEN[CS]E(?:\.[a-z]+)?)$/;

export interface PullOptions {
  readonly endpoint?: string;
  readonly token?: string;
  readonly cacheDir?: string;
  /** Called as bytes arrive: done and total over all files to fetch, and the current file. */
  readonly onProgress?: (done: number, total: number, file: string) => void;
  /** Injected for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

interface RemoteFile {
  readonly path: string;
  readonly size: number;
  /** The blob name: the LFS sha256, else the git oid. */
  readonly etag: string;
  readonly sha256: string | null;
}

function safeRelPath(p: unknown): string {
  if (typeof p !== 'string' || p === '' || p.length > 512 || isAbsolute(p) || p.split(/[\\/]/).some((c) => c === '..' || c === '' || c === '.')) {
    throw new LoadError('hub listing', 'relative file paths inside the repository', JSON.stringify(p));
  }
  return p;
}

/** Download `org/name[@rev]` into the Hugging Face cache (resuming partial files); returns the snapshot folder. */
export async function pullModel(spec: string, opts: PullOptions = {}): Promise<string> {
  const ref = parseRepoRef(spec);
  if (ref === null) throw new LoadError(spec, 'a Hugging Face id org/name or org/name@revision', JSON.stringify(spec));
  const { listFiles, modelInfo } = await import('@huggingface/hub');
  const hubUrl = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  const creds = token ? { accessToken: token } : {};
  const f = opts.fetch ?? fetch;
  const cache = opts.cacheDir ?? hubCacheDir();
  const where = `${hubUrl}/${ref.repo}@${ref.revision}`;
  let commit: string;
  const files: RemoteFile[] = [];
  try {
    const info = await modelInfo({ name: ref.repo, revision: ref.revision, hubUrl, fetch: f, additionalFields: ['sha'], ...creds });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== 'string' || !COMMIT_RE.test(sha)) throw new LoadError(where, 'a commit id for the revision', JSON.stringify(sha));
    commit = sha;
    for await (const e of listFiles({ repo: { type: 'model', name: ref.repo }, revision: commit, recursive: true, hubUrl, fetch: f, ...creds })) {
      if (e.type !== 'file') continue;
      const path = safeRelPath(e.path);
      if (!WANTED.test(path)) continue;
      const etag = e.lfs?.oid ?? e.oid;
      if (typeof etag !== 'string' || !/^[0-9a-f]{40,64}$/.test(etag)) throw new LoadError(where, `an object id for ${path}`, JSON.stringify(etag));
      const size = e.lfs?.size ?? e.size;
      if (!Number.isSafeInteger(size) || size < 0) throw new LoadError(where, `a size for ${path}`, JSON.stringify(size));
      files.push({ path, size, etag, sha256: e.lfs ? e.lfs.oid : null });
    }
  } catch (e) {
    if (e instanceof LoadError) throw e;
    throw new LoadError(where, 'a reachable Hugging Face hub (HF_ENDPOINT) with this repository', (e as Error).message.split('\n')[0], 'check the id, HF_ENDPOINT and HF_TOKEN (gated models need a token)');
  }
  if (!files.some((x) => x.path === 'config.json')) throw new LoadError(where, 'a model repository with config.json', 'none');

  const root = repoFolder(cache, ref.repo);
  const blobs = join(root, 'blobs');
  const snap = join(root, 'snapshots', commit);
  mkdirSync(blobs, { recursive: true });
  mkdirSync(snap, { recursive: true });
  const todo = files.filter((x) => !existsSync(join(blobs, x.etag)));
  const total = todo.reduce((n, x) => n + x.size, 0);
  const have = todo.reduce((n, x) => n + partialSize(join(blobs, `${x.etag}.incomplete`)), 0);
  const free = statfsSync(blobs);
  if (total - have > free.bavail * free.bsize) {
    throw new LoadError(cache, `${((total - have) / 2 ** 30).toFixed(2)} GiB free for ${ref.repo}`, `${((free.bavail * free.bsize) / 2 ** 30).toFixed(2)} GiB`, 'free disk space or set HF_HUB_CACHE');
  }
  let done = 0;
  for (const file of todo) {
    await downloadBlob(f, `${hubUrl}/${ref.repo}/resolve/${commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`, join(blobs, file.etag), file, token, (n) => {
      opts.onProgress?.(done + n, total, file.path);
    });
    done += file.size;
  }
  for (const file of files) {
    const link = join(snap, file.path);
    mkdirSync(dirname(link), { recursive: true });
    const target = relative(dirname(link), join(blobs, file.etag));
    if (existsSync(link) || isLink(link)) unlinkSync(link);
    symlinkSync(target.split(sep).join('/'), link);
  }
  mkdirSync(join(root, 'refs'), { recursive: true });
  if (!COMMIT_RE.test(ref.revision)) writeFileSync(join(root, 'refs', ref.revision), commit);
  opts.onProgress?.(total, total, '');
  return snap;
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function partialSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Fetch one file into `blob`, continuing a `.incomplete` part with a Range request; checks size and sha256. */
async function downloadBlob(f: typeof fetch, url: string, blob: string, file: RemoteFile, token: string | undefined, progress: (n: number) => void): Promise<void> {
  const part = `${blob}.incomplete`;
  let have = partialSize(part);
  if (have > file.size) {
    rmSync(part);
    have = 0;
  }
  const hash = createHash('sha256');
  if (have > 0 && file.sha256) for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (have > 0) headers.Range = `bytes=${have}-`;
  const res = await f(url, { headers, redirect: 'follow' });
  if (res.status === 200 && have > 0) {
    // The server ignored the range: start over.
    rmSync(part, { force: true });
    return downloadBlob(f, url, blob, file, token, progress);
  }
  if (!(res.status === 200 || res.status === 206) || !res.body) {
    throw new LoadError(url, 'the file (HTTP 200/206)', `HTTP ${res.status}`, res.status === 401 || res.status === 403 ? 'set HF_TOKEN for gated or private models' : undefined);
  }
  const fd = openSync(part, have > 0 ? 'a' : 'w');
  let n = have;
  try {
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      if (n + chunk.length > file.size) throw new LoadError(url, `${file.size} bytes`, 'more');
      writeSync(fd, chunk);
      if (file.sha256) hash.update(chunk);
      n += chunk.length;
      progress(n);
    }
  } catch (e) {
    if (e instanceof LoadError) throw e;
    // A dropped connection: what arrived stays in the .incomplete blob for the next pull to continue.
  } finally {
    closeSync(fd);
  }
  if (n !== file.size) throw new LoadError(url, `${file.size} bytes`, `${n} (the transfer was cut; run the same pull again to resume)`);
  if (file.sha256) {
    const got = hash.digest('hex');
    if (got !== file.sha256) {
      rmSync(part, { force: true });
      throw new LoadError(url, `sha256 ${file.sha256}`, got, 'the partial file was removed; pull again');
    }
  }
  renameSync(part, blob);
}
