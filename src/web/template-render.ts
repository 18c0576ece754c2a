/**
 * The browser's stand-in for load/template-sandbox.ts (scripts/build-web.mjs swaps it in). Callers render
 * synchronously, inside the page's engine worker. As in Node, a template runs in a helper thread with a deadline: a
 * Web Worker nested in the engine worker (template-worker.ts, served as /local/template-worker.js), which the engine
 * worker waits for with Atomics.wait and terminates on the deadline (the next render starts a new one), so a
 * template that loops ends in the usual one-line ChatTemplateError (load/chat-template.ts) in the page.
 *
 * That needs SharedArrayBuffer, so a cross-origin-isolated page (`dyllm serve` sends /local with COOP and COEP). The
 * helper is started when this module loads (and again after a deadline); a render waits for it to listen. A page
 * that is not isolated, or a helper that never starts, renders in the engine worker itself without the time limit
 * (a looping template then stalls only the engine worker; the page stays live and can be reloaded). The output size
 * limit holds always.
 */
import { Template } from '@huggingface/jinja';
import { DONE, STARTED, waitFor, type RenderReply } from '../load/template-protocol.js';
import { READY, REPLY_HEADER, REPLY_OK, REPLY_PARSE, REPLY_RENDER, type TemplateWorkerInit, type TemplateWorkerRender } from './template-worker.js';

export interface TemplateLimits {
  readonly timeoutMs: number;
  readonly maxOutputChars: number;
}

/** As in Node (load/template-sandbox.ts): real templates render in well under a millisecond; the margin is for a loaded machine. */
export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = Object.freeze({ timeoutMs: 5000, maxOutputChars: 4 * 1024 * 1024 });
export const MAX_TEMPLATE_TIMEOUT_MS = 60_000;

export type SandboxOutcome =
  | RenderReply
  | { readonly ok: false; readonly kind: 'timeout'; readonly ms: number }
  | { readonly ok: false; readonly kind: 'clone'; readonly message: string };

/** How long a started helper may take to take a request up (not counted against the template). */
const STARTUP_MS = 10_000;

interface WebWorker {
  postMessage(m: TemplateWorkerInit | TemplateWorkerRender): void;
  terminate(): void;
}
interface Helper {
  readonly worker: WebWorker;
  readonly sig: Int32Array;
  readonly head: Int32Array;
  readonly text: Uint16Array;
  nextId: number;
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];
const parsed = new Map<string, Template>();
let helper: Helper | null = null;

/** A nested worker for renders, or null where the page cannot wait for one (no isolation, no workers). */
function startHelper(): Helper | null {
  const g = globalThis as unknown as { crossOriginIsolated?: boolean; Worker?: new (url: URL, o: object) => WebWorker; location?: { href: string } };
  if (g.crossOriginIsolated !== true || typeof SharedArrayBuffer !== 'function' || typeof g.Worker !== 'function' || !g.location) return null;
  try {
    const signal = new SharedArrayBuffer(16);
    const reply = new SharedArrayBuffer(REPLY_HEADER + 2 * DEFAULT_TEMPLATE_LIMITS.maxOutputChars);
    const worker = new g.Worker(new URL('template-worker.js', g.location.href), { type: 'module', name: 'dyllm-chat-template' });
    worker.postMessage({ type: 'init', signal, reply });
    return { worker, sig: new Int32Array(signal), head: new Int32Array(reply, 0, 2), text: new Uint16Array(reply, REPLY_HEADER), nextId: 1 };
  } catch {
    return null;
  }
}

function inHelper(h: Helper, template: string, context: Record<string, unknown>, limits: TemplateLimits): SandboxOutcome {
  const id = h.nextId++;
  try {
    h.worker.postMessage({ type: 'render', id, template, context, maxOutputChars: Math.min(limits.maxOutputChars, h.text.length) });
  } catch (e) {
    return { ok: false, kind: 'clone', message: errorText(e) };
  }
  const started = waitFor(h.sig, STARTED, id, performance.now() + STARTUP_MS);
  if (!started || !waitFor(h.sig, DONE, id, performance.now() + limits.timeoutMs)) {
    h.worker.terminate();
    helper = startHelper();
    return { ok: false, kind: 'timeout', ms: limits.timeoutMs };
  }
  const outcome = h.head[0];
  const n = h.head[1];
  if (outcome === REPLY_OK || outcome === REPLY_PARSE || outcome === REPLY_RENDER) {
    let s = '';
    for (let i = 0; i < n; i += 8192) s += String.fromCharCode(...h.text.subarray(i, Math.min(n, i + 8192)));
    if (outcome === REPLY_OK) return { id, ok: true, text: s };
    return { id, ok: false, kind: outcome === REPLY_PARSE ? 'parse' : 'render', message: s };
  }
  return { id, ok: false, kind: 'size', length: n };
}

/** In the engine worker itself: no time limit (see above). */
function inThread(template: string, context: Record<string, unknown>, limits: TemplateLimits): SandboxOutcome {
  let t = parsed.get(template);
  if (t === undefined) {
    try {
      t = new Template(template);
    } catch (e) {
      return { id: 0, ok: false, kind: 'parse', message: errorText(e) };
    }
    if (parsed.size >= 16) parsed.clear();
    parsed.set(template, t);
  }
  let text: string;
  try {
    text = t.render(context);
  } catch (e) {
    return { id: 0, ok: false, kind: 'render', message: errorText(e) };
  }
  if (text.length > limits.maxOutputChars) return { id: 0, ok: false, kind: 'size', length: text.length };
  return { id: 0, ok: true, text };
}

export function renderInSandbox(template: string, context: Record<string, unknown>, limits: TemplateLimits): SandboxOutcome {
  const h = helper;
  if (h === null) return inThread(template, context, limits);
  if (!waitFor(h.sig, READY, 1, performance.now() + STARTUP_MS)) {
    // It never started (its script failed to load, say): render here from now on.
    stopTemplateHelper();
    return inThread(template, context, limits);
  }
  return inHelper(h, template, context, limits);
}

export function stopTemplateHelper(): void {
  helper?.worker.terminate();
  helper = null;
}

helper = startHelper();
