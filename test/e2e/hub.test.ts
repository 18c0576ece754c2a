/**
 * Models where users keep them: Hugging Face ids resolved in the Hugging Face cache exactly as huggingface_hub lays
 * it out, and `dyllm pull` filling that cache. The real hub is not reachable from the machines this project is
 * built and tested on, so the download is tested against a local HTTP server that answers the hub's API and
 * resolve routes as huggingface.co does (model info with the commit sha, the recursive tree with LFS oids, and
 * `resolve/<commit>/<path>` with HTTP ranges).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { findInCache, hubCacheDir, parseRepoRef, pullModel, resolveModelDir, bundledModelPath } from '../../src/load/hub.js';
import { loadPipeline } from '../../src/engine/pipeline.js';
import { generateSteps } from '../../src/engine/generate.js';
import { resolveOptions } from '../../src/engine/options.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { LoadError } from '../../src/load/errors.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';

const COMMIT = 'a'.repeat(32) + '0123abcd';

test('repository ids parse like the hub writes them', () => {
  assert.deepEqual(parseRepoRef('GSAI-ML/LLaDA-8B-Instruct'), { repo: 'GSAI-ML/LLaDA-8B-Instruct', revision: 'main' });
  assert.deepEqual(parseRepoRef('Dream-org/Dream-v0-Instruct-7B@v1.0'), { repo: 'Dream-org/Dream-v0-Instruct-7B', revision: 'v1.0' });
  for (const bad of ['noslash', 'a/b/c', '../x', 'a/..', '/abs/path', './rel', 'a/b@', 'a/b@../../x']) assert.equal(parseRepoRef(bad), null, bad);
});

test('the cache folder follows huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME', () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
  assert.equal(hubCacheDir({ HF_HOME: '/h' }), '/h/hub');
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
});

/** A cache folder laid out as huggingface_hub writes it: blobs by etag, snapshot symlinks, refs/main. */
function buildCache(src: string, repo: string): string {
  const cache = mkdtempSync(join(tmpdir(), 'dyllm-hfcache-'));
  const root = join(cache, `models--${repo.replace('/', '--')}`);
  mkdirSync(join(root, 'blobs'), { recursive: true });
  mkdirSync(join(root, 'snapshots', COMMIT), { recursive: true });
  mkdirSync(join(root, 'refs'));
  for (const f of readdirSync(src)) {
    const data = readFileSync(join(src, f));
    const etag = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(root, 'blobs', etag), data);
    symlinkSync(`../../blobs/${etag}`, join(root, 'snapshots', COMMIT, f));
  }
  writeFileSync(join(root, 'refs', 'main'), COMMIT);
  return cache;
}

test('org/name and org/name@commit resolve in the cache; a missing one lists where it looked', () => {
  const cache = buildCache(fixturePath('llada-tiny'), 'test-org/tiny');
  const env = { HF_HUB_CACHE: cache };
  const snap = join(cache, 'models--test-org--tiny', 'snapshots', COMMIT);
  assert.equal(resolveModelDir('test-org/tiny', env), snap);
  assert.equal(resolveModelDir(`test-org/tiny@${COMMIT}`, env), snap);
  assert.equal(findInCache({ repo: 'test-org/tiny', revision: 'main' }, cache).dir, snap);
  assert.equal(resolveModelDir('dyllm-demo', env), bundledModelPath);
  assert.throws(() => resolveModelDir('test-org/tiny@v9', env), (e: unknown) =>
    e instanceof LoadError && e.message.includes(join(cache, 'models--test-org--tiny', 'refs', 'v9')) && e.message.includes('run: dyllm pull test-org/tiny@v9') && !e.message.includes('\n'));
  assert.throws(() => resolveModelDir('nothing-here', env), /bundled model name \(dyllm-demo\) or a Hugging Face id/);
});

interface MockHub {
  url: string;
  close(): void;
  requests: { method: string; url: string; range: string | undefined; auth: string | undefined }[];
  /** Cut the connection after this many bytes on the next download of this file. */
  cut: Map<string, number>;
  corrupt: Set<string>;
  token: string | null;
  extraTreeEntries: object[];
}

/** The hub's routes as huggingface.co answers them, over a model folder. */
async function mockHub(src: string, repo: string): Promise<MockHub> {
  const files = readdirSync(src).map((f) => {
    const data = readFileSync(join(src, f));
    const lfs = f.endsWith('.safetensors');
    const gitOid = createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
    return { path: f, data, oid: gitOid, lfs: lfs ? { oid: createHash('sha256').update(data).digest('hex'), size: data.length, pointerSize: 134 } : undefined };
  });
  const hub: MockHub = { url: '', close: () => {}, requests: [], cut: new Map(), corrupt: new Set(), token: null, extraTreeEntries: [] };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hub.requests.push({ method: req.method ?? '', url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization });
    if (hub.token && req.headers.authorization !== `Bearer ${hub.token}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Invalid credentials"}');
      return;
    }
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname.startsWith(`/api/models/${repo}/revision/`)) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ _id: 'x', id: repo, sha: COMMIT, private: false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z' }));
    } else if (u.pathname === `/api/models/${repo}/tree/${COMMIT}`) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([
        ...files.map((f) => ({ type: 'file', path: f.path, size: f.lfs ? f.lfs.size : f.data.length, oid: f.oid, ...(f.lfs ? { lfs: f.lfs } : {}) })),
        { type: 'file', path: 'pytorch_model.bin', size: 10, oid: 'b'.repeat(40) },
        ...hub.extraTreeEntries,
      ]));
    } else if (u.pathname.startsWith(`/${repo}/resolve/${COMMIT}/`)) {
      const f = files.find((x) => `/${repo}/resolve/${COMMIT}/${x.path}` === u.pathname);
      if (!f) return void res.writeHead(404).end();
      let data = f.data;
      if (hub.corrupt.has(f.path)) data = Buffer.from(data.map((b, i) => (i === 100 ? b ^ 1 : b)));
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const from = m ? Number(m[1]) : 0;
      const body = data.subarray(from);
      res.writeHead(m ? 206 : 200, { 'content-length': String(body.length), ...(m ? { 'content-range': `bytes ${from}-${data.length - 1}/${data.length}` } : {}) });
      const cut = hub.cut.get(f.path);
      if (cut !== undefined) {
        hub.cut.delete(f.path);
        res.write(body.subarray(0, cut), () => res.destroy());
      } else {
        res.end(body);
      }
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hub.close = () => server.close();
  return hub;
}

test('pull: an interrupted download resumes with a range request, and the snapshot generates like the folder', async () => {
  const repo = 'test-org/tiny';
  const hub = await mockHub(fixturePath('llada-tiny'), repo);
  const cache = mkdtempSync(join(tmpdir(), 'dyllm-pull-'));
  try {
    hub.cut.set('model.safetensors', 1000);
    await assert.rejects(pullModel(repo, { endpoint: hub.url, cacheDir: cache }), /the transfer was cut; run the same pull again to resume/);
    const snap = await pullModel(repo, { endpoint: hub.url, cacheDir: cache });
    const ranged = hub.requests.filter((r) => r.range);
    assert.deepEqual(ranged.map((r) => r.range), ['bytes=1000-'], 'the second pull continued the partial blob');
    assert.ok(!readdirSync(snap).includes('pytorch_model.bin'), 'files dyllm does not load are skipped');
    assert.equal(readFileSync(join(cache, 'models--test-org--tiny', 'refs', 'main'), 'utf8'), COMMIT);
    // The pulled snapshot is found by id and computes what the fixture folder computes.
    const a = await loadPipeline(resolveModelDir(repo, { HF_HUB_CACHE: cache }), { backend: new ReferenceBackend() });
    const b = await loadPipeline(fixturePath('llada-tiny'), { backend: new ReferenceBackend() });
    const gen = (p: typeof a) => {
      const it = generateSteps(p.model, p.ids, { prompts: [[5, 6, 7]], options: resolveOptions(p.config, { genLength: 8, steps: 8 }) });
      let r = it.next();
      while (!r.done) r = it.next();
      return [...r.value.tokens[0]];
    };
    assert.deepEqual(gen(a), gen(b));
    // Pulling again downloads nothing.
    const before = hub.requests.length;
    await pullModel(repo, { endpoint: hub.url, cacheDir: cache });
    assert.ok(hub.requests.slice(before).every((r) => r.url.startsWith('/api/')));
  } finally {
    hub.close();
  }
});

test('pull: a corrupted LFS file is refused by its sha256; a hostile path is refused; a token is sent', async () => {
  const repo = 'test-org/tiny';
  const hub = await mockHub(fixturePath('llada-tiny'), repo);
  try {
    const c1 = mkdtempSync(join(tmpdir(), 'dyllm-pull-'));
    hub.corrupt.add('model.safetensors');
    await assert.rejects(pullModel(repo, { endpoint: hub.url, cacheDir: c1 }), /expected sha256 [0-9a-f]{64}, found [0-9a-f]{64} \(the partial file was removed; pull again\)/);
    hub.corrupt.clear();
    hub.extraTreeEntries.push({ type: 'file', path: '../../evil.json', size: 1, oid: 'c'.repeat(40) });
    await assert.rejects(pullModel(repo, { endpoint: hub.url, cacheDir: c1 }), /expected relative file paths inside the repository, found "\.\.\/\.\.\/evil\.json"/);
    hub.extraTreeEntries.length = 0;
    hub.token = 'hf_secret';
    const c2 = mkdtempSync(join(tmpdir(), 'dyllm-pull-'));
    await assert.rejects(pullModel(repo, { endpoint: hub.url, cacheDir: c2, token: 'wrong' }), /check the id, HF_ENDPOINT and HF_TOKEN/);
    const snap = await pullModel(repo, { endpoint: hub.url, cacheDir: c2, token: 'hf_secret' });
    assert.ok(existsSync(join(snap, 'config.json')) && statSync(join(snap, 'model.safetensors')).size > 0);
  } finally {
    hub.close();
  }
});

test('dyllm pull and --model org/name from the command line (HF_ENDPOINT, HF_HUB_CACHE)', async () => {
  const repo = 'test-org/tiny';
  const hub = await mockHub(fixturePath('llada-tiny'), repo);
  const cache = mkdtempSync(join(tmpdir(), 'dyllm-pull-'));
  const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache };
  const run = (...args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, [join(repoRoot, 'bin', 'dyllm.js'), ...args], { env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  try {
    const p = await run('pull', repo);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(p.stdout.trim(), join(cache, 'models--test-org--tiny', 'snapshots', COMMIT));
    const g = await run('generate', '--model', repo, '--prompt-ids', '5,6,7', '--gen-length', '8', '--json');
    assert.equal(g.code, 0, g.stderr);
    assert.equal(JSON.parse(g.stdout).tokens.length, 8);
    const miss = await run('generate', '--model', 'test-org/other', '--prompt-ids', '5', '--json');
    assert.equal(miss.code, 1);
    assert.match(miss.stderr, /^dyllm: error: test-org\/other: expected a folder, or test-org\/other@main in the Hugging Face cache, found nothing at .* \(run: dyllm pull test-org\/other\)\n$/);
  } finally {
    hub.close();
  }
});
