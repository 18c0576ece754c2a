/**
 * The HTTP thread's handle on the tokenizer worker (tokenizer-worker.ts): prompts go out, token ids come back.
 * Prompts are bounded in bytes before they are sent (promptBytes / maxPromptBytes), so no request can make the
 * worker encode more than a few times the token limit's worth of text. If the worker dies, the prompts it held
 * fail with 503 and it is restarted (supervisor.ts).
 */
import { RequestError } from './errors.js';
import type { EncodedInfill, EncodeMsg, FromTokenizer, PromptSpec, TestFault, TokenizerConfig, TokenizerReadyMsg } from './protocol.js';
import { SupervisedWorker, type RestartLimits, type WorkerState } from './supervisor.js';

/**
 * Bytes of prompt text allowed per prompt token before tokenizing. English averages about 4 bytes per token and
 * CJK 3, a byte-level BPE never makes a token of less than one byte, so a prompt that fits the token limit is far
 * under 16 bytes per token; text beyond it cannot fit and is refused without being encoded.
 */
export const PROMPT_BYTES_PER_TOKEN = 16;
/** Per chat message: its role and the separators the template adds count as this many bytes of text. */
const MESSAGE_OVERHEAD_BYTES = 16;

export function maxPromptBytes(maxPromptTokens: number): number {
  return maxPromptTokens * PROMPT_BYTES_PER_TOKEN;
}

/**
 * The UTF-8 size of a prompt's text (chat: every message's role and content, plus a per-message overhead). An
 * infill's template is bounded on its own (request.ts); here only its chat messages count.
 */
export function promptBytes(p: PromptSpec): number {
  if (p.kind === 'text') return Buffer.byteLength(p.text, 'utf8');
  let n = 0;
  for (const m of p.messages ?? []) n += Buffer.byteLength(m.role, 'utf8') + Buffer.byteLength(m.content, 'utf8') + MESSAGE_OVERHEAD_BYTES;
  return n;
}

/** A prompt's ids and, for an infill, its region and holes. */
export interface Encoded {
  readonly tokens: number[];
  readonly infill: EncodedInfill | null;
}

interface Pending {
  resolve(e: Encoded): void;
  reject(e: RequestError): void;
}

export class TokenizerClient {
  private readonly w: SupervisedWorker<EncodeMsg, FromTokenizer, TokenizerReadyMsg>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  readonly ready: Promise<TokenizerReadyMsg>;
  onRestart: () => void = () => {};

  constructor(cfg: TokenizerConfig, limits: RestartLimits) {
    this.w = new SupervisedWorker<EncodeMsg, FromTokenizer, TokenizerReadyMsg>('tokenizer', new URL('./tokenizer-worker.js', import.meta.url), cfg, limits, {
      onReady: () => {},
      onMessage: (m) => {
        if (m.type !== 'encoded' && m.type !== 'encode-error') return;
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.type === 'encoded') p.resolve({ tokens: m.tokens, infill: m.infill });
        else if (m.kind === 'invalid') p.reject(new RequestError(400, m.message, 'invalid_request_error', null, 'invalid_prompt'));
        else p.reject(new RequestError(500, `the prompt could not be encoded: ${m.message}`, 'server_error', null, 'tokenizer_error'));
      },
      onDeath: (why) => {
        const e = this.unavailable(why);
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      },
      onRestart: () => this.onRestart(),
    });
    this.ready = this.w.firstReady;
  }

  get state(): WorkerState {
    return this.w.state;
  }

  get reason(): string | null {
    return this.w.reason;
  }

  /** Token ids of a prompt; rejects with a RequestError (400 for a prompt the template refuses, 503 while restarting). */
  encode(prompt: PromptSpec, testFault: TestFault | null): Promise<Encoded> {
    return new Promise<Encoded>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      if (!this.w.post({ type: 'encode', id, prompt, testFault })) {
        this.pending.delete(id);
        reject(this.unavailable(this.w.reason ?? 'not running'));
      }
    });
  }

  terminate(): Promise<void> {
    return this.w.terminate();
  }

  private unavailable(why: string): RequestError {
    return this.w.state === 'down'
      ? new RequestError(503, `the tokenizer is not running (${this.w.reason ?? why})`, 'server_error', null, 'engine_down')
      : new RequestError(503, `${why}; it is restarting, retry shortly`, 'overloaded_error', null, 'engine_restarting', { 'Retry-After': '2' });
  }
}
