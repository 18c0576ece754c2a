/**
 * Who may talk to the server, checked before any route runs (as llama-server, Jupyter and Ollama do for a local
 * server that any web page the user opens could otherwise reach):
 *
 * 1. Host: when the server listens on a loopback address, a request whose Host header is not a loopback name
 *    (localhost, 127.x.x.x, [::1], with or without a port) is refused (403). This defeats DNS rebinding, where a
 *    page at evil.example re-points its own name at 127.0.0.1 and then talks to the server as "same origin".
 * 2. Origin: a browser request whose Origin is neither the server's own nor allowed by --cors-origin is refused
 *    (403). Allowed origins get proper CORS answers (preflight included) so that web apps can be allowed on purpose.
 * 3. API key: with --api-key / DYLLM_API_KEY, every route except /health and the web view's page needs
 *    `Authorization: Bearer KEY` (compared in constant time); otherwise 401 with `WWW-Authenticate: Bearer`.
 * The Content-Type check for POST bodies (body.ts) completes this: without it a cross-site `fetch` with a
 * text/plain body needs no preflight.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestError } from './errors.js';
import { LOCAL_PUBLIC_PATHS } from './local.js';

export interface AccessOptions {
  /** Required bearer token; null = none. */
  readonly apiKey: string | null;
  /** Allowed cross-origin browser origins (`*` = any). */
  readonly corsOrigins: readonly string[];
  /** The server listens on a loopback address: enforce loopback Host names. */
  readonly loopback: boolean;
}

/** Paths that need no API key: the health probe, and the web view's page and stylesheet (it asks for the key itself). */
const PUBLIC_PATHS = new Set(['/health', '/', '/index.html', '/static/dyllm.css', ...LOCAL_PUBLIC_PATHS]);

const IPV4_LOOPBACK = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Whether a listen address is loopback-only: 127.0.0.0/8, ::1 (also IPv4-mapped), or the name localhost. */
export function isLoopbackAddress(addr: string): boolean {
  const a = addr.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (a === 'localhost' || a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  const m = IPV4_LOOPBACK.exec(v4);
  return m !== null && m.slice(1).every((x) => Number(x) <= 255);
}

/** Whether a Host header names this machine's loopback: localhost, 127.x.x.x or [::1], with an optional port. */
export function isLoopbackHost(host: string): boolean {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(host.trim());
  if (!m || (m[2] !== undefined && Number(m[2]) > 65535)) return false;
  const name = m[1].toLowerCase();
  if (name.startsWith('[')) return isLoopbackAddress(name) && name !== '[localhost]';
  return name === 'localhost' || (IPV4_LOOPBACK.test(name) && isLoopbackAddress(name));
}

/** Parses --cors-origin values (repeatable, comma lists): `*` or scheme://host[:port], normalised. */
export function parseCorsOrigins(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const o = part.trim();
      if (o === '') continue;
      if (o === '*' || o === 'null') {
        out.push(o);
        continue;
      }
      let u: URL;
      try {
        u = new URL(o);
      } catch {
        throw new Error(`--cors-origin: expected an origin such as http://localhost:3000 (or *), found "${o}"`);
      }
      if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.pathname !== '/' || u.search || u.hash || u.username) {
        throw new Error(`--cors-origin: expected an origin such as http://localhost:3000 (scheme, host and port only), found "${o}"`);
      }
      out.push(u.origin);
    }
  }
  return out;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class AccessGate {
  private readonly keyDigest: Buffer | null;
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;

  constructor(private readonly o: AccessOptions) {
    this.keyDigest = o.apiKey !== null ? digest(o.apiKey) : null;
    this.any = o.corsOrigins.includes('*');
    this.origins = new Set(o.corsOrigins.map((x) => x.toLowerCase()));
  }

  /**
   * Checks a request before routing. Throws a RequestError (403, 401) to refuse it; returns true when it answered
   * the request itself (a CORS preflight), false to go on. Sets the CORS headers of an allowed cross-origin request.
   */
  check(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    const host = req.headers.host;
    if (this.o.loopback && host !== undefined && !isLoopbackHost(host)) {
      throw new RequestError(403, `Host ${JSON.stringify(host.slice(0, 100))} is not a loopback name; this server listens on a loopback address and answers only to localhost, 127.0.0.1 or [::1] (listen on another --host to serve other names)`, 'invalid_request_error', null, 'forbidden_host');
    }
    const origin = req.headers.origin;
    if (this.corsEnabled) res.setHeader('Vary', 'Origin');
    if (origin !== undefined && !this.sameOrigin(origin, host)) {
      if (!this.any && !this.origins.has(origin.toLowerCase())) {
        throw new RequestError(403, `Origin ${JSON.stringify(origin.slice(0, 200))} is not allowed to use this server; start it with --cors-origin ${origin.slice(0, 200)} to allow that web page`, 'invalid_request_error', null, 'forbidden_origin');
      }
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        Allow: 'GET, POST, OPTIONS',
        ...(origin !== undefined ? {
          'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
          'Access-Control-Allow-Headers': 'Authorization, Content-Type',
          'Access-Control-Max-Age': '600',
        } : {}),
      });
      res.end();
      return true;
    }
    if (this.keyDigest !== null && !PUBLIC_PATHS.has(path)) this.checkKey(req.headers.authorization);
    return false;
  }

  private get corsEnabled(): boolean {
    return this.o.corsOrigins.length > 0;
  }

  /** An Origin equal to the server's own (scheme http, the Host the request was sent to). */
  private sameOrigin(origin: string, host: string | undefined): boolean {
    return host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`;
  }

  private checkKey(auth: string | undefined): void {
    const unauthorized = (message: string): never => {
      throw new RequestError(401, message, 'invalid_request_error', null, 'invalid_api_key', { 'WWW-Authenticate': 'Bearer' });
    };
    const m = auth === undefined ? null : /^Bearer[ \t]+(\S.*)$/i.exec(auth.trim());
    if (!m) unauthorized('this server needs an API key: send the header "Authorization: Bearer KEY" with the key it was started with (--api-key or DYLLM_API_KEY)');
    // Digests have one length whatever was sent, so the comparison's time tells nothing about the key.
    if (!timingSafeEqual(digest(m![1].trim()), this.keyDigest!)) unauthorized('the API key in "Authorization: Bearer …" is not this server\'s key');
  }
}
