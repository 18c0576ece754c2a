/**
 * `dyllm serve`: an OpenAI-compatible HTTP server (node:http, no framework) in front of two worker threads: the
 * tokenizer (tokenizer.ts: chat template + encoding) and the engine (engine.ts, worker.ts, scheduler.ts: every model
 * step). This thread only checks access (security.ts), parses, validates, schedules admission and writes
 * responses. Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health, /metrics, / (the
 * web view). Limits: bounded queue (503 + Retry-After), body size (413), media type (415), JSON depth and UTF-8
 * (400), prompt bytes before tokenizing and tokens after (400), max_tokens cap (400), per-request timeout (504 or
 * a stream error event), disconnect → cancel, drain() for SIGTERM. /local: the engine in the browser (local.ts). A request that fails while it is stepped fails
 * alone (500); a worker that dies is restarted (503 meanwhile, /health says so). Errors become HTTP only through
 * errors.ts. Protocol details: docs/server.md.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { BackendName } from '../kernels/select.js';
import type { QuantOption } from '../models/load-model.js';
import { checkContentType, decodeJsonBody, readBody } from './body.js';
import { EngineClient } from './engine.js';
import { RequestError, toHttpError } from './errors.js';
import { testFaultOf, testFaultsEnabled } from './faults.js';
import { localRoutes } from './local.js';
import { Metrics } from './metrics.js';
import { chatLogprobs, completionLogprobs, round } from './openai-fields.js';
import type { DoneMsg, ErrorMsg, InfillJob, LogprobMsg, ReadyMsg, StepChoiceMsg, StepMsg, TestFault } from './protocol.js';
import { isPendingInfill, MAX_N, parseGenerationRequest, refuseOnGpu, resolveInfill, type ParsedRequest } from './request.js';
import { AccessGate, isLoopbackAddress } from './security.js';
import { endSse, sendSse, startSse } from './sse.js';
import { DEFAULT_RESTART_LIMITS, type RestartLimits, type WorkerState } from './supervisor.js';
import { maxPromptBytes, promptBytes, TokenizerClient, type Encoded } from './tokenizer.js';

export interface ServerOptions {
  readonly modelDir: string;
  /** 'webgpu': the engine steps on the `webgpu` package's adapter (docs/webgpu.md). */
  readonly backend?: BackendName | 'webgpu';
  /** Quantise the linear layers while loading (docs/quantization.md); default 'none'. */
  readonly quant?: QuantOption;
  readonly host?: string;
  /** 0 = an ephemeral port. */
  readonly port?: number;
  /** Requests accepted beyond the batch before 503. */
  readonly maxQueue?: number;
  /** Requests denoised together (one merged forward per step). */
  readonly maxBatch?: number;
  /** Cap on max_tokens (the canvas length G). */
  readonly maxTokens?: number;
  readonly maxPromptTokens?: number;
  /** Per-request limit from acceptance to the answer; 0 = none. */
  readonly timeoutMs?: number;
  /** Request body limit in bytes. */
  readonly bodyLimit?: number;
  /** The model id reported by /v1/models and in responses (default: the folder name). */
  readonly modelName?: string;
  /** Required `Authorization: Bearer` token for every route but /health and the web view's page; null = none. */
  readonly apiKey?: string | null;
  /** Cross-origin browser origins allowed (`*` = any); others are refused (403). Default: none. */
  readonly corsOrigins?: readonly string[];
  /** Worker restarts tolerated within a window before the server reports engine_down (default 5 per 60 s). */
  readonly restartLimits?: RestartLimits;
}

export interface DyllmServer {
  readonly url: string;
  readonly port: number;
  readonly model: ReadyMsg;
  readonly metrics: Metrics;
  /** Refuse new requests (503), wait for the in-flight ones, then close. */
  drain(): Promise<void>;
  /** Cancel everything and close now. */
  close(): Promise<void>;
}

export const SERVER_DEFAULTS = {
  host: '127.0.0.1', port: 8000, maxQueue: 32, maxBatch: 8, maxTokens: 1024, maxPromptTokens: 4096, timeoutMs: 120_000, bodyLimit: 1 << 20,
} as const;

/** Glyphs of the denoise-streaming canvas text: a masked position, an end token (end of text / turn), another special token. */
export const MASK_GLYPH = '░';
export const END_GLYPH = '∎';
export const SPECIAL_GLYPH = '◇';

const STATIC_DIR = new URL('../../../src/server/static/', import.meta.url);

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const s = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s), ...headers });
  res.end(s);
}

/** The only place a thrown error becomes an HTTP answer (before the headers) or an SSE error event (after). */
function sendError(res: ServerResponse, e: unknown): void {
  const { status, headers, body } = toHttpError(e);
  if (res.headersSent) {
    sendSse(res, body);
    endSse(res);
    return;
  }
  sendJson(res, status, body, headers);
}

/** A malformed HTTP request (bad request line or headers) still gets a JSON error, then the connection closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify({ error: { message: `malformed HTTP request (${err.code ?? err.message})`, type: 'invalid_request_error', param: null, code: 'bad_http_request' } });
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** The `dyllm` object of a step chunk: one denoising step of one choice (`kind: "step"`). */
function stepInfo(m: StepMsg, c: StepChoiceMsg): Record<string, unknown> {
  const canvas = c.pieces!.map((p, i) => (p === null ? MASK_GLYPH : c.end![i] ? END_GLYPH : c.special![i] ? SPECIAL_GLYPH : p)).join('');
  return {
    kind: 'step', index: c.index, step: m.step, max_steps: m.maxSteps, canvas, tokens: c.pieces, special: c.special, end: c.end, token_ids: c.tokens,
    committed: c.committed, recomputed: c.recomputed, forward_ms: m.forwardMs, ffn_fraction: m.ffnFraction,
  };
}

export async function startServer(opts: ServerOptions): Promise<DyllmServer> {
  const o = { ...SERVER_DEFAULTS, backend: 'auto' as BackendName | 'webgpu', apiKey: null as string | null, corsOrigins: [] as readonly string[], restartLimits: DEFAULT_RESTART_LIMITS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as Required<ServerOptions>;
  const testFaults = testFaultsEnabled();
  const engine = new EngineClient({ modelDir: o.modelDir, backend: o.backend, quant: o.quant, maxBatch: o.maxBatch, maxPromptTokens: o.maxPromptTokens, testFaults }, o.restartLimits);
  const tokenizer = new TokenizerClient({ modelDir: o.modelDir, testFaults }, o.restartLimits);
  let model: ReadyMsg;
  try {
    [model] = await Promise.all([engine.ready, tokenizer.ready]);
  } catch (e) {
    await Promise.all([engine.terminate(), tokenizer.terminate()]);
    throw e;
  }
  const modelId = o.modelName ?? basename(o.modelDir.replace(/\/+$/, ''));
  /** The server's start (Unix seconds): /v1/models' `created`. */
  const startedAt = Math.floor(Date.now() / 1000);
  const metrics = new Metrics();
  const capacity = o.maxBatch + o.maxQueue;
  const promptByteLimit = maxPromptBytes(o.maxPromptTokens);
  const gate = new AccessGate({ apiKey: o.apiKey, corsOrigins: o.corsOrigins, loopback: isLoopbackAddress(o.host) });
  let inflight = 0;
  let draining = false;
  const idle: (() => void)[] = [];
  const cancels = new Set<(reason: 'shutdown') => void>();
  engine.onTick = (t) => {
    metrics.ticks++;
    metrics.mergedRequests += t.merged;
    metrics.committedTokens += t.generatedTokens;
    metrics.step.observe(t.ms / 1000);
  };
  engine.onRestart = () => metrics.engineRestarts++;
  tokenizer.onRestart = () => metrics.tokenizerRestarts++;
  const local = localRoutes(o.modelDir, modelId);
  let indexHtml: string | null = null;
  try {
    indexHtml = readFileSync(new URL('index.html', STATIC_DIR), 'utf8');
  } catch {
    indexHtml = null;
  }
  // The stylesheet both pages link (the web view and /local).
  let css: string | null = null;
  try {
    css = readFileSync(new URL('dyllm.css', STATIC_DIR), 'utf8');
  } catch {
    css = null;
  }

  /** The workers' joint state: down if either is down, restarting if either restarts, else running. */
  function workersState(): { state: WorkerState; reason: string | null } {
    for (const st of ['down', 'restarting', 'starting'] as const) {
      for (const w of [engine, tokenizer]) if (w.state === st) return { state: st, reason: w.reason };
    }
    return { state: 'running', reason: null };
  }

  /** 503 while a worker restarts or stays down. */
  function checkWorkers(): void {
    const { state, reason } = workersState();
    if (state === 'running') return;
    if (state === 'down') throw new RequestError(503, `the engine is not running (${reason ?? 'stopped'}); restart the server`, 'server_error', null, 'engine_down');
    throw new RequestError(503, `the engine is restarting (${reason ?? 'starting'}); retry shortly`, 'overloaded_error', null, 'engine_restarting', { 'Retry-After': '2' });
  }

  function release(): void {
    inflight--;
    if (inflight === 0) for (const f of idle.splice(0)) f();
  }

  async function generate(req: IncomingMessage, res: ServerResponse, chat: boolean): Promise<void> {
    if (draining) throw new RequestError(503, 'the server is shutting down', 'overloaded_error', null, 'draining', { 'Retry-After': '5', Connection: 'close' });
    checkContentType(req);
    const body = decodeJsonBody(await readBody(req, o.bodyLimit));
    const parsed = parseGenerationRequest(body, chat, model, o.maxTokens, o.maxPromptTokens, o.maxBatch);
    const param = chat ? 'messages' : parsed.prompt.kind === 'infill' ? 'dyllm.infill' : 'prompt';
    // Bounded in bytes before anything encodes it: text this long cannot fit the token limit.
    const bytes = promptBytes(parsed.prompt);
    if (bytes > promptByteLimit) {
      throw new RequestError(400, `${param}: ${bytes} bytes of prompt text cannot fit this server's limit of ${o.maxPromptTokens} prompt tokens (at most ${promptByteLimit} bytes are accepted); shorten the prompt or raise --max-prompt-tokens`, 'invalid_request_error', param, 'prompt_too_long');
    }
    checkWorkers();
    if (inflight >= capacity) {
      throw new RequestError(503, `the server is at capacity (${o.maxBatch} running + ${o.maxQueue} queued); retry later`, 'overloaded_error', null, 'queue_full', { 'Retry-After': '1' });
    }
    inflight++;
    try {
      const fault = testFaults ? testFaultOf(parsed.prompt) : null;
      let enc: Encoded;
      try {
        enc = await tokenizer.encode(parsed.prompt, fault);
      } catch (e) {
        if (e instanceof RequestError && e.code === 'invalid_prompt') {
          // An infill template's own errors already name dyllm.infill (engine/infill.ts).
          const own = e.message.startsWith('dyllm.infill: ');
          throw new RequestError(400, own ? e.message : `${param}: ${e.message}`, 'invalid_request_error', own ? 'dyllm.infill' : param, 'invalid_prompt');
        }
        throw e;
      }
      const tokens = enc.tokens;
      if (tokens.length > o.maxPromptTokens) {
        throw new RequestError(400, `${param}: the prompt has ${tokens.length} tokens, over this server's limit of ${o.maxPromptTokens}; shorten it or raise --max-prompt-tokens`, 'invalid_request_error', param, 'prompt_too_long');
      }
      if (res.destroyed || req.socket.destroyed) return; // the client left while the prompt was encoded
      const r = isPendingInfill(parsed) ? resolveInfill(parsed, enc.infill!, model, o.maxTokens, o.maxPromptTokens) : parsed;
      if (model.backend === 'webgpu') refuseOnGpu(r);
      await runJob(req, res, chat, r, tokens, fault, r.infill && enc.infill ? { ...enc.infill, parts: r.infill.parts } : null);
    } finally {
      release();
    }
  }

  function runJob(req: IncomingMessage, res: ServerResponse, chat: boolean, r: ParsedRequest, tokens: number[], fault: TestFault | null, infill: InfillJob | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = (chat ? 'chatcmpl-' : 'cmpl-') + randomUUID().replace(/-/g, '');
      const created = Math.floor(Date.now() / 1000);
      // Per choice: the text streamed so far, the logprob entries streamed, those waiting for a delta to ride on.
      const sent: string[] = new Array<string>(r.n).fill('');
      const lpSent: number[] = new Array<number>(r.n).fill(0);
      const lpOffset: number[] = new Array<number>(r.n).fill(0);
      const lpPending: LogprobMsg[][] = Array.from({ length: r.n }, () => []);
      let settled = false;
      let timer: NodeJS.Timeout | null = null;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        cancels.delete(shutdown);
        res.off('close', onClose);
        if (err !== undefined) reject(err);
        else resolve();
      };
      /** The logprobs field of a choice for these entries (null when logprobs are off); counts them as streamed. */
      const logprobsOf = (index: number, entries: readonly LogprobMsg[] | null): Record<string, unknown> | null => {
        if (r.logprobs === null || entries === null) return null;
        lpSent[index] += entries.length;
        const out = chat ? chatLogprobs(entries) : completionLogprobs(entries, lpOffset[index]);
        for (const e of entries) lpOffset[index] += e.token.length;
        return out;
      };
      /** Pending logprob entries of a choice, taken for the chunk that carries its next delta. */
      const takePending = (index: number): LogprobMsg[] | null => (r.logprobs === null ? null : lpPending[index].splice(0));
      const chunk = (index: number, delta: { role?: string; content?: string }, finishReason: string | null, logprobs: LogprobMsg[] | null = null, extra?: Record<string, unknown>) =>
        chat
          ? { id, object: 'chat.completion.chunk', created, model: modelId, system_fingerprint: null, choices: [{ index, delta, logprobs: logprobsOf(index, logprobs), finish_reason: finishReason }], ...extra }
          : { id, object: 'text_completion', created, model: modelId, choices: [{ index, text: delta.content ?? '', logprobs: logprobsOf(index, logprobs), finish_reason: finishReason }], ...extra };
      const cancel = (reason: 'disconnect' | 'timeout' | 'shutdown'): void => {
        if (jobId !== null) engine.cancel(jobId, reason);
        metrics.countCancel(reason);
      };
      const onClose = (): void => {
        if (settled || res.writableFinished) return;
        cancel('disconnect'); // the worker stops it at the next step boundary
        finish();
      };
      const shutdown = (): void => {
        cancel('shutdown');
        finish(new RequestError(503, 'the server shut down before the answer was complete', 'server_error', null, 'shutdown'));
      };
      res.on('close', onClose);
      cancels.add(shutdown);

      const submitted = {
        tokens, promptParam: chat ? 'messages' as const : infill ? 'dyllm.infill' as const : 'prompt' as const, infill, options: r.options, accel: r.accel, stream: r.stream,
        streamSteps: r.streamSteps, n: r.n, stop: r.stop, logprobs: r.logprobs, testFault: fault,
      };
      const jobId: number | null = engine.submit(submitted, {
        accepted() {
          if (settled) return;
          if (r.stream) {
            startSse(res);
            if (chat) for (let b = 0; b < r.n; b++) sendSse(res, chunk(b, { role: 'assistant', content: '' }, null));
          }
        },
        step(m: StepMsg) {
          if (settled) return;
          for (const c of m.choices) {
            const b = c.index;
            let delta: string | undefined;
            if (c.prefixText.length > sent[b].length && c.prefixText.startsWith(sent[b])) {
              delta = c.prefixText.slice(sent[b].length);
              sent[b] = c.prefixText;
            }
            if (c.logprobs) lpPending[b].push(...c.logprobs);
            const lp = delta !== undefined ? takePending(b) : null;
            if (r.streamSteps) sendSse(res, chunk(b, delta !== undefined ? { content: delta } : {}, null, lp, { dyllm: stepInfo(m, c) }));
            else if (delta !== undefined) sendSse(res, chunk(b, { content: delta }, null, lp));
          }
        },
        done(m: DoneMsg) {
          if (settled) return;
          metrics.generatedTokens += m.completionTokens;
          metrics.promptTokens += m.promptTokens;
          metrics.request.observe(m.elapsedMs / 1000);
          metrics.salientSum += m.salientFraction;
          metrics.salientCount++;
          if (r.accel.method !== 'none') metrics.lastSalient = m.salientFraction;
          const usage = { prompt_tokens: m.promptTokens, completion_tokens: m.completionTokens, total_tokens: m.promptTokens + m.completionTokens };
          const stats = { kind: 'summary', done: true, steps: m.steps, nfe: m.nfe, elapsed_ms: round(m.elapsedMs), queue_ms: round(m.queueMs), tokens_per_s: round(m.completionTokens / Math.max(m.elapsedMs / 1000, 1e-9)), salient_fraction: m.salientFraction, accel: r.accel.method, ...(infill ? { fills: m.choices.map((c) => c.fills) } : {}) };
          if (r.stream) {
            m.choices.forEach((c, i) => {
              const b = c.index;
              const rest = c.text.startsWith(sent[b]) ? c.text.slice(sent[b].length) : '';
              const restLp = c.logprobs ? c.logprobs.slice(lpSent[b]) : null;
              if (rest || (restLp && restLp.length > 0)) sendSse(res, chunk(b, { content: rest }, null, restLp));
              // The request's summary rides on the last choice's final chunk.
              sendSse(res, chunk(b, {}, c.finishReason, null, i === m.choices.length - 1 ? { dyllm: stats } : undefined));
            });
            if (r.includeUsage) sendSse(res, { ...chunk(0, {}, null), choices: [], usage });
            endSse(res);
          } else {
            const choices = m.choices.map((c) => {
              const logprobs = r.logprobs === null || !c.logprobs ? null : chat ? chatLogprobs(c.logprobs) : completionLogprobs(c.logprobs, 0);
              return chat
                ? { index: c.index, message: { role: 'assistant', content: c.text, refusal: null }, logprobs, finish_reason: c.finishReason }
                : { index: c.index, text: c.text, logprobs, finish_reason: c.finishReason };
            });
            sendJson(res, 200, { id, object: chat ? 'chat.completion' : 'text_completion', created, model: modelId, choices, usage, dyllm: stats });
          }
          finish();
        },
        error(m) {
          finish(workerError(m));
        },
      });
      if (jobId === null) {
        // The engine worker died between the admission check and now.
        try {
          checkWorkers();
        } catch (e) {
          finish(e);
          return;
        }
        finish(new RequestError(503, 'the engine is not running; retry shortly', 'overloaded_error', null, 'engine_restarting', { 'Retry-After': '2' }));
        return;
      }
      if (o.timeoutMs > 0) {
        timer = setTimeout(() => {
          cancel('timeout');
          finish(new RequestError(504, `generation did not finish within ${o.timeoutMs} ms (--timeout-ms); it was cancelled`, 'timeout_error', null, 'timeout'));
        }, o.timeoutMs);
      }
    });
  }

  /** A worker's error message → the request's RequestError. */
  function workerError(m: ErrorMsg): RequestError {
    if (m.kind === 'invalid') return new RequestError(400, m.message, 'invalid_request_error', m.param, 'invalid_value');
    if (m.kind === 'internal') return new RequestError(500, m.message, 'server_error', null, 'generation_failed');
    metrics.workerFailedRequests++;
    return engine.state === 'down'
      ? new RequestError(503, `${m.message}; the engine is not running (${engine.reason ?? 'stopped'})`, 'server_error', null, 'engine_down')
      : new RequestError(503, `${m.message}; the engine is restarting, retry shortly`, 'overloaded_error', null, 'engine_restarting', { 'Retry-After': '2' });
  }

  function route(req: IncomingMessage): string {
    const path = (req.url ?? '/').split('?')[0];
    return `${req.method} ${path}`;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rt = route(req);
    if (gate.check(req, res, rt.slice(rt.indexOf(' ') + 1))) return;
    switch (rt) {
      case 'POST /v1/chat/completions':
        return generate(req, res, true);
      case 'POST /v1/completions':
        return generate(req, res, false);
      case 'GET /v1/models':
        return sendJson(res, 200, { object: 'list', data: [{ id: modelId, object: 'model', created: startedAt, owned_by: 'dyllm', dyllm: { arch: model.arch, backend: model.backend, threads: model.threads, chat_template: model.hasChatTemplate, max_tokens: o.maxTokens, max_n: Math.min(MAX_N, o.maxBatch) } }] });
      case 'GET /health': {
        if (draining) return sendJson(res, 503, { status: 'draining', inflight }, { 'Retry-After': '5' });
        const { state, reason } = workersState();
        if (state === 'down') return sendJson(res, 503, { status: 'engine_down', reason, restarts: metrics.engineRestarts + metrics.tokenizerRestarts });
        if (state !== 'running') return sendJson(res, 503, { status: 'engine_restarting', reason, restarts: metrics.engineRestarts + metrics.tokenizerRestarts }, { 'Retry-After': '2' });
        return sendJson(res, 200, { status: 'ok', model: modelId, backend: model.backend, inflight, capacity });
      }
      case 'GET /metrics': {
        const live = Math.min(inflight, o.maxBatch);
        const s = metrics.render({ queued: inflight - live, live, inflight, draining, engineUp: workersState().state === 'running' });
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(s);
        return;
      }
      case 'GET /':
      case 'GET /index.html':
        if (indexHtml === null) throw new RequestError(404, 'the web view is not installed (src/server/static/index.html)', 'not_found_error');
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' });
        res.end(indexHtml);
        return;
      case 'GET /static/dyllm.css':
        if (css === null) throw new RequestError(404, 'the pages\' stylesheet is not installed (src/server/static/dyllm.css)', 'not_found_error');
        res.writeHead(200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' });
        res.end(css);
        return;
      default: {
        const known = ['/v1/chat/completions', '/v1/completions', '/v1/models', '/health', '/metrics', '/', '/index.html', '/static/dyllm.css'];
        const path = rt.slice(rt.indexOf(' ') + 1);
        if (local.handle(req, res, path)) return; // the in-browser engine's page and files (local.ts)
        if (known.includes(path)) throw new RequestError(405, `${req.method} is not allowed on ${path}`, 'invalid_request_error', null, 'method_not_allowed');
        throw new RequestError(404, `no route ${rt}`, 'not_found_error', null, 'not_found');
      }
    }
  }

  const server: Server = createServer((req, res) => {
    const rt = route(req);
    const label = ['POST /v1/chat/completions', 'POST /v1/completions', 'GET /v1/models', 'GET /health', 'GET /metrics', 'GET /'].includes(rt) ? rt.split(' ')[1] : rt.startsWith('GET /local') ? '/local' : 'other';
    res.on('finish', () => metrics.countRequest(label, res.statusCode));
    handle(req, res).catch((e) => sendError(res, e));
  });
  server.on('clientError', onClientError);
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000; // receiving one request (headers and body), not answering it
  await new Promise<void>((resolve, reject) => {
    const failed = (e: Error): void => {
      void Promise.all([engine.terminate(), tokenizer.terminate()]).finally(() => reject(e));
    };
    server.once('error', failed);
    server.listen(o.port, o.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  let closed: Promise<void> | null = null;
  const closeAll = (): Promise<void> => {
    closed ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await Promise.all([engine.terminate(), tokenizer.terminate()]);
    })();
    return closed;
  };

  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    model,
    metrics,
    async drain() {
      draining = true;
      server.closeIdleConnections();
      if (inflight > 0) await new Promise<void>((resolve) => idle.push(resolve));
      await closeAll();
    },
    async close() {
      draining = true;
      for (const c of [...cancels]) c('shutdown');
      await closeAll();
    },
  };
}
