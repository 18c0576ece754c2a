/**
 * Chat templates are code from the model folder: a template can loop for hours (`range(100000000)`, nested
 * loops), build strings until memory runs out, or recurse. Rendering must still never hang the process or a
 * request, and callers render synchronously (encodePrompt is sync and runs inside the server's engine thread).
 *
 * So templates run in a persistent helper thread (template-worker.ts) with its own small heap, and the calling
 * thread waits for the reply synchronously: `Atomics.wait` on a SharedArrayBuffer the helper signals, then
 * `receiveMessageOnPort`. The deadline counts from the moment the helper takes the request up (its start-up is not
 * the template's fault). On the deadline the helper is terminated (a template that exhausted the helper's heap
 * ends the same way) and the next render starts a fresh one. The rendered text is bounded too, and refused by the
 * helper before it is copied back.
 *
 * Cost (measured on a busy 2-core machine, so rough): a render of Dream's template for one short message takes
 * ~0.14 ms through the helper against ~0.04 ms in-process (the structured clones of messages and reply; ~0.11 ms
 * against ~0.03 ms for a 100k-character message); starting the helper, once per thread at load, ~65 ms.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { DONE, STARTED, WORKER_KIND, waitFor, type RenderReply, type RenderRequest, type WorkerData } from './template-protocol.js';

export interface TemplateLimits {
  /** How long one render may run, in milliseconds. */
  readonly timeoutMs: number;
  /** Longest rendered text, in UTF-16 code units (string length). */
  readonly maxOutputChars: number;
}

export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = Object.freeze({ timeoutMs: 5000, maxOutputChars: 4 * 1024 * 1024 });
export const MAX_TEMPLATE_TIMEOUT_MS = 60_000;
/** Heap of the helper thread: rendering a chat needs a few MB; a template that wants more is stopped. */
const HELPER_HEAP_MB = 256;
/** How long a new helper may take to start (not counted against the template). */
const STARTUP_MS = 30_000;

export type SandboxOutcome =
  | RenderReply
  | { readonly ok: false; readonly kind: 'timeout'; readonly ms: number }
  | { readonly ok: false; readonly kind: 'start'; readonly message: string }
  | { readonly ok: false; readonly kind: 'clone'; readonly message: string };

interface Helper {
  readonly worker: Worker;
  readonly sig: Int32Array;
  readonly port: MessagePort;
  nextId: number;
  exited: boolean;
}

let helper: Helper | null = null;

function spawn(): Helper {
  const signal = new SharedArrayBuffer(8);
  const { port1, port2 } = new MessageChannel();
  const data: WorkerData = { kind: WORKER_KIND, signal, port: port2 };
  const worker = new Worker(new URL('./template-worker.js', import.meta.url), {
    workerData: data,
    transferList: [port2],
    execArgv: [],
    resourceLimits: { maxOldGenerationSizeMb: HELPER_HEAP_MB, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
  });
  const h: Helper = { worker, sig: new Int32Array(signal), port: port1, nextId: 1, exited: false };
  // A helper that runs out of heap dies with an 'error' event; the render waiting on it reports a timeout.
  worker.on('error', () => {});
  worker.on('exit', () => {
    h.exited = true;
  });
  // Neither keeps the process alive.
  worker.unref();
  port1.unref();
  return h;
}

function kill(h: Helper): void {
  if (helper === h) helper = null;
  h.exited = true;
  void h.worker.terminate().catch(() => {});
  h.port.close();
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Render `template` with `context` in the helper thread, synchronously, within `limits`. Never throws for
 * anything the template does; the outcome says what happened.
 */
export function renderInSandbox(template: string, context: Record<string, unknown>, limits: TemplateLimits): SandboxOutcome {
  if (helper === null || helper.exited) {
    try {
      helper = spawn();
    } catch (e) {
      // Thread creation itself failed (out of memory or threads): this render cannot run.
      return { ok: false, kind: 'start', message: `the template helper thread could not start (${(e as Error).message.split('\n')[0]})` };
    }
  }
  const h = helper;
  const id = h.nextId++;
  const req: RenderRequest = { id, template, context, maxOutputChars: limits.maxOutputChars };
  try {
    h.worker.postMessage(req);
  } catch (e) {
    // DataCloneError: something in the messages or variables is not plain data (a function, a symbol).
    return { ok: false, kind: 'clone', message: (e as Error).message.split('\n')[0] };
  }
  if (!waitFor(h.sig, STARTED, id, performance.now() + STARTUP_MS)) {
    kill(h);
    return { ok: false, kind: 'start', message: `the template helper thread did not start within ${STARTUP_MS / 1000} s` };
  }
  const t0 = performance.now();
  if (!waitFor(h.sig, DONE, id, t0 + limits.timeoutMs)) {
    kill(h);
    return { ok: false, kind: 'timeout', ms: limits.timeoutMs };
  }
  // The reply is posted before DONE is stored, so it is there; allow a moment for the port to deliver it.
  for (let tries = 0; tries < 1000; tries++) {
    const m = receiveMessageOnPort(h.port);
    if (m === undefined) {
      Atomics.wait(pause, 0, 0, 1);
      continue;
    }
    const r = m.message as RenderReply;
    if (r.id === id) return r;
  }
  kill(h);
  return { ok: false, kind: 'start', message: 'the template helper thread signalled a reply it did not deliver' };
}

/** Stop the helper thread now (tests; a process that wants to release it early). The next render starts one. */
export function stopTemplateHelper(): void {
  if (helper) kill(helper);
}
