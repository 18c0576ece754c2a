/**
 * Serving replicas (docs/server.md, "Replicas"): `dyllm serve` keeps no state across requests, so any HTTP load
 * balancer can spread requests over several. Two `dyllm serve` processes behind a round-robin proxy written here
 * (the stand-in for nginx, HAProxy or a cloud balancer) answer exactly as one does, streaming included; each
 * replica's /health and /metrics are what a balancer and Prometheus read.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import OpenAI from 'openai';
import { repoRoot } from '../helpers/paths.js';

const BIN = join(repoRoot, 'bin', 'dyllm.js');
const QUESTIONS = [
  'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?',
  'Mia has 25 coins. Mia gives 8 to Ben. How many coins does Mia have now?',
];

interface Replica {
  child: ChildProcess;
  url: string;
}

async function startReplica(): Promise<Replica> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--max-batch', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/\S+)\n/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`dyllm serve exited with ${code}: ${err}`)));
  });
  return { child, url };
}

/** Round robin over the replicas; the X-Replica response header says which one answered. */
function roundRobin(urls: string[]): Promise<{ server: Server; url: string }> {
  let next = 0;
  const server = createServer((req, res) => {
    const i = next++ % urls.length;
    const up = request(new URL(req.url ?? '/', urls[i]), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, { ...r.headers, 'x-replica': String(i) });
      r.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(e.message);
    });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

async function metric(url: string, line: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const l = text.split('\n').find((x) => x.startsWith(line + ' '));
  return l === undefined ? 0 : Number(l.split(' ').pop());
}

describe('dyllm serve replicas behind a round-robin balancer', { timeout: 180_000 }, () => {
  const replicas: Replica[] = [];
  let proxy: { server: Server; url: string };
  let client: OpenAI;

  before(async () => {
    replicas.push(...(await Promise.all([startReplica(), startReplica()])));
    proxy = await roundRobin(replicas.map((r) => r.url));
    client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });

  after(async () => {
    proxy?.server.close();
    await Promise.all(replicas.map((r) => new Promise<void>((resolve) => {
      if (r.child.exitCode !== null) return resolve();
      r.child.on('exit', () => resolve());
      r.child.kill('SIGKILL');
    })));
  });

  test('answers do not depend on the replica: requests alternate and each gets what one server gives', { timeout: 120_000 }, async () => {
    const ask = async (q: string) => {
      const r = await client.chat.completions.create({ model: 'dyllm-demo', messages: [{ role: 'user', content: q }] }).withResponse();
      return { text: r.data.choices[0].message.content, replica: r.response.headers.get('x-replica') };
    };
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await ask(QUESTIONS[i % 2]));
    assert.deepEqual(answers.map((a) => a.replica), ['0', '1', '0', '1']);
    // Question 0 went to replicas 0 and 0, question 1 to 1 and 1: ask each on the other replica directly.
    for (const [i, url] of [[0, replicas[1].url], [1, replicas[0].url]] as const) {
      const direct = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
      const r = await direct.chat.completions.create({ model: 'dyllm-demo', messages: [{ role: 'user', content: QUESTIONS[i] }] });
      assert.equal(r.choices[0].message.content, answers[i].text);
      assert.equal(answers[i + 2].text, answers[i].text);
    }
    assert.match(answers[0].text!, /12\+7=19\. #### 19/);
    // Streaming through the balancer: the deltas concatenate to the non-streaming answer.
    let streamed = '';
    const stream = await client.chat.completions.create({ model: 'dyllm-demo', messages: [{ role: 'user', content: QUESTIONS[0] }], stream: true });
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(streamed, answers[0].text);
  });

  test('each replica has its own /health and /metrics for the balancer and Prometheus', async () => {
    for (const r of replicas) {
      const h = await fetch(`${r.url}/health`);
      assert.equal(h.status, 200);
      assert.equal(((await h.json()) as { status: string }).status, 'ok');
      assert.equal(await metric(r.url, 'dyllm_draining'), 0);
    }
    // Two non-streaming answers through the balancer and one direct request each, one replica also streamed.
    const served = await Promise.all(replicas.map((r) => metric(r.url, 'dyllm_requests_total{route="/v1/chat/completions",status="200"}')));
    assert.deepEqual(served, [4, 3]);
    // A stopped replica (SIGTERM: drains, answering /health with 503 "draining" meanwhile, then exits) is what a
    // balancer's health check takes out of rotation; the other keeps answering.
    replicas[1].child.kill('SIGTERM');
    await new Promise<void>((resolve) => replicas[1].child.on('exit', () => resolve()));
    const gone = await fetch(`${proxy.url}/health`).then((r) => r.status);
    const alive = await fetch(`${proxy.url}/health`).then((r) => r.status);
    assert.deepEqual([gone, alive].sort(), [200, 502]);
  });
});
