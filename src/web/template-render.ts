/**
 * The browser's stand-in for load/template-sandbox.ts (scripts/build-web.mjs swaps it in): the page's engine already
 * runs in a Web Worker of its own, so a chat template renders in that worker, synchronously, with @huggingface/jinja.
 * There is no helper thread to stop, so the time limit is not enforced here; a template that loops only stalls the
 * page's engine worker (the page stays live and can be reloaded). The output size limit is enforced.
 */
import { Template } from '@huggingface/jinja';
import type { RenderReply } from '../load/template-protocol.js';

export interface TemplateLimits {
  readonly timeoutMs: number;
  readonly maxOutputChars: number;
}

export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = Object.freeze({ timeoutMs: 1000, maxOutputChars: 4 * 1024 * 1024 });
export const MAX_TEMPLATE_TIMEOUT_MS = 60_000;

export type SandboxOutcome = RenderReply;

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];
const parsed = new Map<string, Template>();

export function renderInSandbox(template: string, context: Record<string, unknown>, limits: TemplateLimits): SandboxOutcome {
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

export function stopTemplateHelper(): void {}
