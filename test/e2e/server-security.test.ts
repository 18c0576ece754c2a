/**
 * Who may drive `dyllm serve` (src/server/security.ts, body.ts): POST bodies must be application/json (a cross-site
 * text/plain fetch needs no preflight), a loopback server answers only loopback Host names (DNS rebinding),
 * foreign browser Origins are refused unless allowed with --cors-origin (then CORS is answered properly), and
 * --api-key / DYLLM_API_KEY guards every route but /health and the web view's page. The web view asks for the key
 * in headless Chromium; the CLI warns when it listens beyond loopback without a key.
 * Set DYLLM_SKIP_BROWSER=1 to skip the browser test where Chromium is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { isLoopbackAddress, isLoopbackHost, parseCorsOrigins } from '../../src/server/security.js';
import { repoRoot } from '../helpers/paths.js';
import { launchChromium } from '../helpers/browser.js';

const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?';
const KEY = 'sk-test-0123456789';
const ALLOWED = 'http://allowed.example:3000';

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string }
interface ErrorBody { error: { message: string; type: string; param: string | null; code: string | null } }

/** Raw HTTP (fetch may not set Host): any method, path, headers and body. */
function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const chatBody = JSON.stringify({ messages: [{ role: 'user', content: QUESTION }], max_tokens: 16 });
const errorOf = (a: Answer): ErrorBody['error'] => (JSON.parse(a.body) as ErrorBody).error;

test('loopback names, listen addresses and --cors-origin values', () => {
  for (const h of ['localhost', 'LOCALHOST:8000', '127.0.0.1', '127.0.0.1:8000', '127.3.4.5:1', '[::1]', '[::1]:8000']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['evil.example', 'evil.example:8000', '127.0.0.1.evil.example', 'localhost.evil.example', '0.0.0.0:8000', '10.0.0.1', '127.0.0.256', '[::2]:80', '127.0.0.1:99999', 'localhost:8000:1', '']) {
    assert.ok(!isLoopbackHost(h), h);
  }
  for (const a of ['127.0.0.1', '127.9.9.9', '::1', 'localhost', '::ffff:127.0.0.1']) assert.ok(isLoopbackAddress(a), a);
  for (const a of ['0.0.0.0', '::', '192.168.1.2', 'example.com']) assert.ok(!isLoopbackAddress(a), a);
  assert.deepEqual(parseCorsOrigins(['http://a.example:3000/', 'https://B.example,*', ' null ']), ['http://a.example:3000', 'https://b.example', '*', 'null']);
  assert.throws(() => parseCorsOrigins(['a.example']), /^Error: --cors-origin: expected an origin such as http:\/\/localhost:3000 \(or \*\), found "a.example"$/);
  assert.throws(() => parseCorsOrigins(['http://a.example/path']), /scheme, host and port only\), found "http:\/\/a.example\/path"$/);
});

describe('dyllm serve access control (bundled model, --api-key, --cors-origin)', () => {
  let s: DyllmServer;
  let port: string;
  const auth = { Authorization: `Bearer ${KEY}` };
  const json = { 'Content-Type': 'application/json' };
  before(async () => {
    s = await startServer({ modelDir: DEMO, port: 0, apiKey: KEY, corsOrigins: [ALLOWED] });
    port = String(s.port);
  });
  after(() => s?.close());

  test('POST needs Content-Type: application/json (charset=utf-8 allowed): else 415 before anything runs', async () => {
    for (const ct of [undefined, 'text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/jsonp']) {
      const a = await raw(s.url, 'POST', '/v1/chat/completions', { ...auth, ...(ct ? { 'Content-Type': ct } : {}) }, chatBody);
      assert.equal(a.status, 415, String(ct));
      const e = errorOf(a);
      assert.equal(e.code, 'unsupported_media_type');
      assert.match(e.message, /^Content-Type: expected application\/json, found .*; send the body as JSON with the header "Content-Type: application\/json"$/);
    }
    for (const ct of ['application/json', 'Application/JSON; charset=utf-8', 'application/json;charset="UTF-8"']) {
      const a = await raw(s.url, 'POST', '/v1/chat/completions', { ...auth, 'Content-Type': ct }, chatBody);
      assert.equal(a.status, 200, ct);
    }
  });

  test('a loopback server refuses a non-loopback Host (DNS rebinding) with 403, and answers loopback names', async () => {
    for (const host of ['evil.example:' + port, 'evil.example', '127.0.0.1.nip.io:' + port]) {
      const a = await raw(s.url, 'POST', '/v1/chat/completions', { ...auth, ...json, Host: host }, chatBody);
      assert.equal(a.status, 403, host);
      assert.equal(errorOf(a).code, 'forbidden_host');
      assert.equal((await raw(s.url, 'GET', '/health', { Host: host })).status, 403);
      assert.equal((await raw(s.url, 'GET', '/static/dyllm.css', { Host: host })).status, 403);
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `127.0.0.2:${port}`, `[::1]:${port}`, 'localhost']) {
      assert.equal((await raw(s.url, 'GET', '/health', { Host: host })).status, 200, host);
    }
  });

  test('a foreign Origin is refused (403); the server\'s own and --cors-origin ones are answered with CORS headers', async () => {
    const evil = await raw(s.url, 'POST', '/v1/chat/completions', { ...auth, ...json, Origin: 'http://evil.example' }, chatBody);
    assert.equal(evil.status, 403);
    assert.equal(errorOf(evil).code, 'forbidden_origin');
    assert.equal(errorOf(evil).message, 'Origin "http://evil.example" is not allowed to use this server; start it with --cors-origin http://evil.example to allow that web page');
    // The classic cross-site request without preflight: text/plain from a foreign page never runs.
    const simple = await raw(s.url, 'POST', '/v1/chat/completions', { 'Content-Type': 'text/plain', Origin: 'http://evil.example' }, chatBody);
    assert.equal(simple.status, 403);
    const own = await raw(s.url, 'GET', '/v1/models', { ...auth, Origin: `http://127.0.0.1:${port}` });
    assert.equal(own.status, 200);
    assert.equal(own.headers['access-control-allow-origin'], undefined);
    const ok = await raw(s.url, 'POST', '/v1/chat/completions', { ...auth, ...json, Origin: ALLOWED }, chatBody);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], ALLOWED);
    assert.equal(ok.headers.vary, 'Origin');
    // Errors carry the CORS headers too, so the allowed page can read them.
    const bad = await raw(s.url, 'POST', '/v1/chat/completions', { ...json, Origin: ALLOWED }, chatBody);
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['access-control-allow-origin'], ALLOWED);
  });

  test('CORS preflight: 204 with methods and headers (Authorization, Content-Type) for an allowed origin, 403 otherwise', async () => {
    const pre = { Origin: ALLOWED, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' };
    const a = await raw(s.url, 'OPTIONS', '/v1/chat/completions', pre);
    assert.equal(a.status, 204);
    assert.equal(a.headers['access-control-allow-origin'], ALLOWED);
    assert.equal(a.headers['access-control-allow-methods'], 'GET, POST, OPTIONS');
    assert.equal(a.headers['access-control-allow-headers'], 'Authorization, Content-Type');
    assert.equal(a.headers.vary, 'Origin');
    const evil = await raw(s.url, 'OPTIONS', '/v1/chat/completions', { ...pre, Origin: 'http://evil.example' });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
  });

  test('--api-key: every route but /health and the page needs "Authorization: Bearer KEY" (401 + WWW-Authenticate otherwise)', async () => {
    for (const [method, path] of [['GET', '/v1/models'], ['GET', '/metrics'], ['POST', '/v1/chat/completions'], ['POST', '/v1/completions'], ['GET', '/nowhere']]) {
      for (const h of [{} as Record<string, string>, { Authorization: 'Bearer wrong-key' }, { Authorization: KEY }, { Authorization: `Basic ${KEY}` }, { Authorization: `Bearer ${KEY}x` }]) {
        const a = await raw(s.url, method, path, { ...json, ...h }, method === 'POST' ? chatBody : undefined);
        assert.equal(a.status, 401, `${method} ${path} ${JSON.stringify(h)}`);
        assert.equal(a.headers['www-authenticate'], 'Bearer');
        const e = errorOf(a);
        assert.deepEqual([e.type, e.code], ['invalid_request_error', 'invalid_api_key']);
        assert.match(e.message, h.Authorization === 'Bearer wrong-key' || h.Authorization === `Bearer ${KEY}x` ? /is not this server's key$/ : /^this server needs an API key: send the header "Authorization: Bearer KEY"/);
      }
    }
    assert.equal((await raw(s.url, 'GET', '/health', {})).status, 200);
    assert.equal((await raw(s.url, 'GET', '/', {})).status, 200);
    // The pages' shared stylesheet is public as the pages are (a <link> sends no key), with the static-file headers.
    const css = await raw(s.url, 'GET', '/static/dyllm.css', {});
    assert.equal(css.status, 200);
    assert.deepEqual([css.headers['content-type'], css.headers['cache-control'], css.headers['x-content-type-options']], ['text/css; charset=utf-8', 'no-cache', 'nosniff']);
    assert.equal((await raw(s.url, 'GET', '/static/dyllm.css', { Origin: 'http://evil.example' })).status, 403);
    assert.equal((await raw(s.url, 'POST', '/static/dyllm.css', {})).status, 405);
    assert.equal((await raw(s.url, 'GET', '/static/other.css', { Authorization: `Bearer ${KEY}` })).status, 404);
    assert.equal((await raw(s.url, 'GET', '/metrics', { Authorization: `bearer  ${KEY}` })).status, 200);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }] });
    assert.match(r.choices[0].message.content!, /#### 19/);
    const wrong = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(() => wrong.models.list(), (e: Error & { status?: number }) => e.status === 401);
  });

  test('web view in headless Chromium: asks for the key once on 401, keeps it in sessionStorage, generates', async () => {
    const browser = await launchChromium();
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const dialogs: string[] = [];
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.accept(KEY);
      });
      await page.goto(s.url + '/');
      await page.waitForFunction(() => document.getElementById('model')!.textContent!.includes('dyllm-demo'));
      assert.equal(dialogs.length, 1);
      assert.match(dialogs[0], /API key/);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('dyllm-api-key')), KEY);
      await page.fill('#prompt', QUESTION);
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('answer')!.textContent!.includes('####') && !(document.getElementById('go') as HTMLButtonElement).disabled, null, { timeout: 20_000 });
      assert.match(await page.textContent('#answer') ?? '', /12\+7=19\. #### 19/);
      assert.equal(dialogs.length, 1, 'the key is asked for once');
      // Styled by /static/dyllm.css (the page has no CSS of its own).
      assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(250, 250, 247)');
    } finally {
      await browser.close();
    }
  });
});

/** Starts `dyllm serve` with args and env; resolves with stderr once the URL line is printed, then stops it. */
async function serveOnce(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'dyllm.js'), 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYLLM_API_KEY: '', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    if (/on http:\/\//.test(stdout)) child.kill('SIGTERM');
  });
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}

test('CLI: listening beyond loopback without a key warns on stderr in one line; with a key or on loopback it does not; bad flags exit 2', async () => {
  const open = await serveOnce(['--host', '0.0.0.0']);
  const warn = open.stderr.split('\n').filter((l) => l.includes('warning'));
  assert.deepEqual(warn, ['dyllm: warning: listening on 0.0.0.0 without an API key: anyone who can reach this address can run generations (set DYLLM_API_KEY or --api-key)']);
  const keyed = await serveOnce(['--host', '0.0.0.0'], { DYLLM_API_KEY: 'k' });
  assert.ok(!keyed.stderr.includes('warning'), keyed.stderr);
  assert.match(keyed.stdout, /on http:\/\/0\.0\.0\.0:\d+/);
  const local = await serveOnce([]);
  assert.ok(!local.stderr.includes('warning'), local.stderr);
  const empty = await serveOnce(['--api-key', '']);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /--api-key: expected a non-empty key, found an empty string/);
  const spaced = await serveOnce([], { DYLLM_API_KEY: 'two words' });
  assert.equal(spaced.code, 2);
  assert.match(spaced.stderr, /DYLLM_API_KEY: expected a key without spaces/);
  const bad = await serveOnce(['--cors-origin', 'evil']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--cors-origin: expected an origin such as http:\/\/localhost:3000 \(or \*\), found "evil"/);
});
