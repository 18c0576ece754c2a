/**
 * The /local page's chat-template helper: a Web Worker nested in the page's engine worker (template-render.ts starts
 * it; scripts/build-web.mjs bundles it as dist/web/template-worker.js). It parses and renders Jinja templates with
 * @huggingface/jinja, one request at a time, and answers through SharedArrayBuffers only, since the engine worker
 * waits for it synchronously (Atomics.wait) and receives no message while it waits:
 *   signal (Int32Array): [STARTED] = id of the request taken up, [DONE] = id of the request answered, [READY] = 1 once
 *   this worker listens;
 *   reply: Int32 [0] the outcome (REPLY_OK, REPLY_PARSE, REPLY_RENDER, REPLY_SIZE), [1] a length, then the text (or
 *   the error's first line) as UTF-16 code units, at most `capacity` of them.
 * When a render runs past the deadline the engine worker terminates this one and starts another.
 */
import { Template } from '@huggingface/jinja';
import { DONE, STARTED } from '../load/template-protocol.js';

export const READY = 2;
export const REPLY_OK = 0;
export const REPLY_PARSE = 1;
export const REPLY_RENDER = 2;
export const REPLY_SIZE = 3;
/** Bytes before the text in the reply buffer. */
export const REPLY_HEADER = 8;

export interface TemplateWorkerInit {
  readonly type: 'init';
  readonly signal: SharedArrayBuffer;
  readonly reply: SharedArrayBuffer;
}
export interface TemplateWorkerRender {
  readonly type: 'render';
  readonly id: number;
  readonly template: string;
  readonly context: Record<string, unknown>;
  readonly maxOutputChars: number;
}

interface Scope {
  addEventListener(type: 'message', f: (e: { data: TemplateWorkerInit | TemplateWorkerRender }) => void): void;
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/** Only in a worker that its starter names so (template-render.ts); imported anywhere else it does nothing. */
if ((globalThis as { name?: unknown }).name === 'dyllm-chat-template') {
  let sig: Int32Array | null = null;
  let head: Int32Array | null = null;
  let text: Uint16Array | null = null;
  const parsed = new Map<string, Template>();
  const answer = (id: number, outcome: number, s: string | null, length: number): void => {
    const n = s === null ? 0 : Math.min(s.length, text!.length);
    for (let i = 0; i < n; i++) text![i] = s!.charCodeAt(i);
    head![0] = outcome;
    head![1] = s === null ? length : n;
    Atomics.store(sig!, DONE, id);
    Atomics.notify(sig!, DONE);
  };
  (globalThis as unknown as Scope).addEventListener('message', (e) => {
    const m = e.data;
    if (m.type === 'init') {
      sig = new Int32Array(m.signal);
      head = new Int32Array(m.reply, 0, 2);
      text = new Uint16Array(m.reply, REPLY_HEADER);
      Atomics.store(sig, READY, 1);
      Atomics.notify(sig, READY);
      return;
    }
    if (sig === null) return;
    Atomics.store(sig, STARTED, m.id);
    Atomics.notify(sig, STARTED);
    let t = parsed.get(m.template);
    if (t === undefined) {
      try {
        t = new Template(m.template);
      } catch (err) {
        answer(m.id, REPLY_PARSE, errorText(err), 0);
        return;
      }
      if (parsed.size >= 16) parsed.clear();
      parsed.set(m.template, t);
    }
    let out: string;
    try {
      out = t.render(m.context);
    } catch (err) {
      answer(m.id, REPLY_RENDER, errorText(err), 0);
      return;
    }
    if (out.length > Math.min(m.maxOutputChars, text!.length)) answer(m.id, REPLY_SIZE, null, out.length);
    else answer(m.id, REPLY_OK, out, 0);
  });
}
