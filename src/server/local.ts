/**
 * The /local routes of `dyllm serve`: a page that runs the engine in the browser (docs: README "In the browser").
 *   GET /local                     the page (src/server/static/local.html)
 *   GET /local/local-worker.js     its engine worker, bundled for the browser at build time (dist/web/, src/web/)
 *   GET /local/template-worker.js  the chat-template helper the engine worker nests (src/web/template-render.ts)
 *   GET /local/model/manifest.json the served model's files the page downloads: names, sizes and a version id
 *   GET /local/model/<file>        one of those files, read-only, straight from the model folder
 * The page and the worker are public (as the web view's page is); the model files go through the server's access
 * rules like the API (Host and Origin checks, and the API key when one is set). Only the files the manifest lists
 * are served: the loaders' file names (load/bytes.ts MODEL_FILE_NAMES) and the shards model.safetensors.index.json
 * names; no other path of the folder is reachable.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, join } from 'node:path';
import { isShardName, MODEL_FILE_NAMES } from '../load/bytes.js';
import { openRegularFile, parseJsonObject, pathExists, readTextFile } from '../load/files.js';
import { RequestError } from './errors.js';

const STATIC_DIR = new URL('../../../src/server/static/', import.meta.url);
const WORKER_JS = new URL('../../web/local-worker.js', import.meta.url);
const TEMPLATE_WORKER_JS = new URL('../../web/template-worker.js', import.meta.url);

/** Paths served without the API key (the page and its code; the model files need the key when one is set). */
export const LOCAL_PUBLIC_PATHS: readonly string[] = ['/local', '/local/', '/local/local-worker.js', '/local/template-worker.js'];

/**
 * The page and its workers are cross-origin isolated (COOP + COEP): that gives the engine worker SharedArrayBuffer,
 * with which it waits for the chat-template helper synchronously and stops a template that runs past its time limit
 * (src/web/template-render.ts). Everything the page loads is its own origin's.
 */
const ISOLATED = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' };

export interface LocalManifest {
  /** The model's name (its folder's name), for messages. */
  readonly name: string;
  /** Changes when any file changes (names, sizes, modification times): the page's cache key. */
  readonly id: string;
  readonly files: readonly { readonly name: string; readonly size: number }[];
  readonly totalBytes: number;
}

/** The files of `dir` the page needs, with sizes. Shards come from the index's weight_map (plain names only). */
export function localManifest(dir: string, modelName: string): LocalManifest {
  const names = MODEL_FILE_NAMES.filter((f) => pathExists(join(dir, f)));
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (names.includes('model.safetensors.index.json')) {
    const wm = parseJsonObject(indexPath, readTextFile(indexPath, 'index')).weight_map;
    if (wm && typeof wm === 'object' && !Array.isArray(wm)) {
      for (const f of new Set(Object.values(wm as Record<string, unknown>))) if (typeof f === 'string' && isShardName(f) && !names.includes(f)) names.push(f);
    }
  }
  const files = names.map((name) => {
    const st = statSync(join(dir, name));
    return { name, size: st.size, mtime: st.mtimeMs };
  });
  const id = createHash('sha256').update(JSON.stringify(files)).digest('hex').slice(0, 16);
  return { name: modelName, id, files: files.map(({ name, size }) => ({ name, size })), totalBytes: files.reduce((n, f) => n + f.size, 0) };
}

/** The /local routes over model folder `dir`; `handle` answers a GET under /local, or returns false. */
export function localRoutes(dir: string, modelName: string): { handle(req: IncomingMessage, res: ServerResponse, path: string): boolean } {
  let manifest: LocalManifest | null = null;
  const getManifest = (): LocalManifest => (manifest ??= localManifest(dir, modelName));
  const send = (res: ServerResponse, type: string, body: string | Buffer): void => {
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', ...ISOLATED });
    res.end(body);
  };
  return {
    handle(req, res, path) {
      if (!(path === '/local' || path.startsWith('/local/'))) return false;
      if (req.method !== 'GET') throw new RequestError(405, `${req.method} is not allowed on ${path}`, 'invalid_request_error', null, 'method_not_allowed');
      if (path === '/local' || path === '/local/') {
        let html: string;
        try {
          html = readFileSync(new URL('local.html', STATIC_DIR), 'utf8');
        } catch {
          throw new RequestError(404, 'the /local page is not installed (src/server/static/local.html)', 'not_found_error');
        }
        send(res, 'text/html; charset=utf-8', html);
        return true;
      }
      if (path === '/local/local-worker.js' || path === '/local/template-worker.js') {
        const worker = path === '/local/local-worker.js';
        let js: Buffer;
        try {
          js = readFileSync(worker ? WORKER_JS : TEMPLATE_WORKER_JS);
        } catch {
          throw new RequestError(404, `the /local engine is not built (dist/web/${worker ? 'local' : 'template'}-worker.js): run npm run build`, 'not_found_error');
        }
        send(res, 'text/javascript; charset=utf-8', js);
        return true;
      }
      if (path === '/local/model/manifest.json') {
        send(res, 'application/json', JSON.stringify(getManifest()));
        return true;
      }
      let name = '';
      try {
        if (path.startsWith('/local/model/')) name = decodeURIComponent(path.slice('/local/model/'.length));
      } catch {
        /* malformed escapes name no file */
      }
      const entry = getManifest().files.find((f) => f.name === name);
      if (!entry || basename(name) !== name) throw new RequestError(404, `no route GET ${path}`, 'not_found_error', null, 'not_found');
      const { fd, size } = openRegularFile(join(dir, name), 'a model file');
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size), 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' });
      createReadStream('', { fd }).on('error', () => res.destroy()).pipe(res);
      return true;
    },
  };
}
