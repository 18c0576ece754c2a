/**
 * The chat-template helper thread (see template-sandbox.ts): parses and renders Jinja templates with
 * @huggingface/jinja, one request at a time, and reports through a SharedArrayBuffer so the requesting thread can
 * wait for it synchronously with a deadline. It has nothing else to do: when a template runs too long, the
 * requesting thread terminates this thread and starts a new one.
 *
 * Only ever started by template-sandbox.ts (workerData.kind says so): imported anywhere else, it does nothing.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Template } from '@huggingface/jinja';
import { DONE, STARTED, WORKER_KIND, type RenderReply, type RenderRequest, type WorkerData } from './template-protocol.js';

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];

const data = workerData as WorkerData | null;
if (parentPort && data?.kind === WORKER_KIND) {
  const { signal, port } = data;
  const sig = new Int32Array(signal);
  const parsed = new Map<string, Template>();

  const reply = (r: RenderReply): void => {
    port.postMessage(r);
    Atomics.store(sig, DONE, r.id);
    Atomics.notify(sig, DONE);
  };

  parentPort.on('message', (req: RenderRequest) => {
    Atomics.store(sig, STARTED, req.id);
    Atomics.notify(sig, STARTED);
    let t = parsed.get(req.template);
    if (t === undefined) {
      try {
        t = new Template(req.template);
      } catch (e) {
        reply({ id: req.id, ok: false, kind: 'parse', message: errorText(e) });
        return;
      }
      if (parsed.size >= 16) parsed.clear();
      parsed.set(req.template, t);
    }
    let text: string;
    try {
      text = t.render(req.context);
    } catch (e) {
      reply({ id: req.id, ok: false, kind: 'render', message: errorText(e) });
      return;
    }
    if (text.length > req.maxOutputChars) reply({ id: req.id, ok: false, kind: 'size', length: text.length });
    else reply({ id: req.id, ok: true, text });
  });
}
