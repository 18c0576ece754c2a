/**
 * Request bodies before they reach request.ts: the media type (application/json, UTF-8), the size (--body-limit,
 * counted as bytes arrive, chunked or not), the encoding (strict UTF-8) and the nesting depth (bounded before
 * JSON.parse, so no value deep enough to exhaust a recursive walk later ever exists). Every refusal is a
 * RequestError with its status: 415, 413, 400.
 */
import type { IncomingMessage } from 'node:http';
import { RequestError } from './errors.js';
import { parseJsonBody } from './request.js';

/** Arrays and objects nested deeper than this are refused (an OpenAI request needs about 5 levels). */
export const MAX_JSON_DEPTH = 64;

/**
 * POST bodies must be declared `application/json` (a `charset=utf-8` parameter is allowed). This is also what keeps
 * web pages out: a cross-site form or a `fetch` with a "simple" content type (text/plain, form encodings) is sent
 * without a CORS preflight, and is refused here before anything runs.
 */
export function checkContentType(req: IncomingMessage): void {
  const raw = req.headers['content-type'];
  const refuse = (found: string): never => {
    throw new RequestError(415, `Content-Type: expected application/json, found ${found}; send the body as JSON with the header "Content-Type: application/json"`, 'invalid_request_error', null, 'unsupported_media_type', { Connection: 'close' });
  };
  if (raw === undefined || raw.trim() === '') refuse('none');
  const [type, ...params] = raw!.split(';').map((x) => x.trim());
  if (type.toLowerCase() !== 'application/json') refuse(JSON.stringify(raw!.slice(0, 100)));
  for (const p of params) {
    if (p === '') continue;
    const m = /^charset\s*=\s*"?([^"]*)"?$/i.exec(p);
    if (!m || m[1].toLowerCase() !== 'utf-8') refuse(`${JSON.stringify(raw!.slice(0, 100))} (only charset=utf-8 is accepted)`);
  }
}

/** The body, or 413 once more than `limit` bytes arrived; rejects if the client goes away first. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): RequestError =>
      new RequestError(413, `request body exceeds the limit of ${limit} bytes (--body-limit)`, 'invalid_request_error', null, 'body_too_large', { Connection: 'close' });
    const cl = Number(req.headers['content-length']);
    if (Number.isFinite(cl) && cl > limit) {
      req.resume();
      reject(tooLarge());
      return;
    }
    const parts: Buffer[] = [];
    let n = 0;
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
    };
    req.on('data', (c: Buffer) => {
      if (settled) return;
      n += c.length;
      if (n > limit) {
        parts.length = 0;
        settle(() => reject(tooLarge()));
        return;
      }
      parts.push(c);
    });
    req.on('end', () => settle(() => resolve(Buffer.concat(parts))));
    req.on('error', (e) => settle(() => reject(e)));
    // A client that disconnects mid-body: nothing is answered, but the handler must not wait for ever.
    req.on('close', () => settle(() => reject(new RequestError(400, 'the client closed the connection before the body was complete', 'invalid_request_error', null, 'incomplete_body'))));
  });
}

/** Depth of the deepest array/object in JSON text (strings skipped); stops counting past `max`. */
export function jsonDepth(text: string, max: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > max) return deepest;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A JSON object body: valid UTF-8, nested at most MAX_JSON_DEPTH deep, an object at the top (request.ts). */
export function decodeJsonBody(raw: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw new RequestError(400, 'the request body is not valid UTF-8; send JSON text encoded as UTF-8', 'invalid_request_error', null, 'invalid_json');
  }
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new RequestError(400, `the request body nests arrays/objects more than ${MAX_JSON_DEPTH} levels deep; an OpenAI request needs a handful`, 'invalid_request_error', null, 'invalid_json');
  }
  return parseJsonBody(raw);
}
