/**
 * The one place errors become HTTP (style §2 principle 14): a RequestError carries its status and the OpenAI
 * error fields; ConfigError (bad generation/acceleration options) is a 400 on the field it names; anything else
 * is a 500 whose message is still one line.
 */
import { ConfigError, LoadError } from '../load/errors.js';

export type ErrorType = 'invalid_request_error' | 'server_error' | 'overloaded_error' | 'timeout_error' | 'not_found_error';

/** A request the server refuses or cannot finish: status, message, and OpenAI's type/param/code. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

export interface OpenAIErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null };
}

/** ConfigError messages start with the option's name ("steps: expected …"); map it back to the request field. */
const OPTION_PARAMS: Readonly<Record<string, string>> = {
  genLength: 'max_tokens', steps: 'dyllm.steps', blockLength: 'dyllm.block_length', temperature: 'temperature', seed: 'seed',
  remasking: 'dyllm.remasking', cfgScale: 'dyllm.cfg_scale', logitsEosInf: 'dyllm.logits_eos_inf', confidenceEosEotInf: 'dyllm.confidence_eos_eot_inf',
  alg: 'dyllm.alg', algTemp: 'dyllm.alg_temp', topP: 'top_p', topK: 'top_k', eps: 'dyllm.eps', parallelThreshold: 'dyllm.parallel_threshold',
  stopAtEos: 'dyllm.stop_at_eos', batchLayout: 'dyllm.batch_layout', accel: 'dyllm.accel', threshold: 'dyllm.threshold', fullSteps: 'dyllm.full_steps',
  promptPeriod: 'dyllm.prompt_period',
};

export function paramOf(configMessage: string): string | null {
  const m = /^(\w+):/.exec(configMessage);
  return m ? (OPTION_PARAMS[m[1]] ?? m[1]) : null;
}

/** Any error → status, headers and the OpenAI error body. */
export function toHttpError(e: unknown): { status: number; headers: Readonly<Record<string, string>>; body: OpenAIErrorBody } {
  if (e instanceof RequestError) {
    return { status: e.status, headers: e.headers, body: { error: { message: e.message, type: e.type, param: e.param, code: e.code } } };
  }
  if (e instanceof ConfigError || e instanceof LoadError) {
    return { status: 400, headers: {}, body: { error: { message: e.message, type: 'invalid_request_error', param: paramOf(e.message), code: 'invalid_value' } } };
  }
  const msg = e instanceof Error ? e.message : String(e);
  return { status: 500, headers: {}, body: { error: { message: msg.split('\n')[0] || 'internal error', type: 'server_error', param: null, code: null } } };
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value'): RequestError =>
  new RequestError(400, message, 'invalid_request_error', param, code);
