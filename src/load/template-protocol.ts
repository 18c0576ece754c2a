/**
 * What the chat-template helper thread (template-worker.ts) and the threads that use it (template-sandbox.ts)
 * exchange. Signals: an Int32Array over `WorkerData.signal`, [STARTED] = id of the request the helper took up,
 * [DONE] = id of the request whose reply it has posted on `WorkerData.port`.
 */
import type { MessagePort } from 'node:worker_threads';

export const STARTED = 0;
export const DONE = 1;
export const WORKER_KIND = 'dyllm-chat-template';

/** Block the calling thread (Atomics.wait: a worker, or Node's main thread) until sig[i] === id or `until` (performance.now()) passes; true when it got there. */
export function waitFor(sig: Int32Array, i: number, id: number, until: number): boolean {
  for (;;) {
    const cur = Atomics.load(sig, i);
    if (cur === id) return true;
    const left = until - performance.now();
    if (left <= 0) return false;
    Atomics.wait(sig, i, cur, left);
  }
}


export interface WorkerData {
  readonly kind: typeof WORKER_KIND;
  readonly signal: SharedArrayBuffer;
  readonly port: MessagePort;
}

export interface RenderRequest {
  readonly id: number;
  readonly template: string;
  readonly context: Record<string, unknown>;
  readonly maxOutputChars: number;
}

export type RenderReply =
  | { readonly id: number; readonly ok: true; readonly text: string }
  | { readonly id: number; readonly ok: false; readonly kind: 'parse' | 'render'; readonly message: string }
  | { readonly id: number; readonly ok: false; readonly kind: 'size'; readonly length: number };
