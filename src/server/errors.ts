/**
 * The one place errors become HTTP: a RequestError carries its status and the OpenAI error fields; ConfigError
 * (bad generation/acceleration options) is a 400 on the request field of the option it names (engine/schema.ts);
 * anything else is a 500 whose message is still one line.
 */
import { httpMessage } from '../engine/schema.js';
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

/** Any error → status, headers and the OpenAI error body. */
export function toHttpError(e: unknown): { status: number; headers: Readonly<Record<string, string>>; body: OpenAIErrorBody } {
  if (e instanceof RequestError) {
    return { status: e.status, headers: e.headers, body: { error: { message: e.message, type: e.type, param: e.param, code: e.code } } };
  }
  if (e instanceof ConfigError) {
    // Named as the request field the option came from (the option schema maps every option to its field).
    const { message, param } = httpMessage(e);
    return { status: 400, headers: {}, body: { error: { message, type: 'invalid_request_error', param, code: 'invalid_value' } } };
  }
  if (e instanceof LoadError) {
    return { status: 400, headers: {}, body: { error: { message: e.message, type: 'invalid_request_error', param: null, code: 'invalid_value' } } };
  }
  const msg = e instanceof Error ? e.message : String(e);
  return { status: 500, headers: {}, body: { error: { message: msg.split('\n')[0] || 'internal error', type: 'server_error', param: null, code: null } } };
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value'): RequestError =>
  new RequestError(400, message, 'invalid_request_error', param, code);
