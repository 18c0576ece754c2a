/**
 * HTTP fuzzing of `dyllm serve` on the bundled model: seeded, replayable random and mutated OpenAI-shaped requests
 * sent over raw sockets (wrong types, huge and non-finite numbers, special-token text, JSON nested 10,000+ deep,
 * unknown fields, huge strings, invalid UTF-8, wrong content types, chunked bodies, pipelining, malformed HTTP,
 * foreign Host/Origin, early disconnects). Every answer must be a 2xx (JSON, SSE whose events are JSON, the page,
 * the metrics) or a 4xx/5xx with an OpenAI-shaped JSON error on one line, within a deadline; no 500 and no worker
 * death (an engine fault is a finding even though fault isolation keeps the server up). After every few cases a
 * normal request still gets the right answer and /health says ok.
 *
 * Short budget inside `npm test` (server-fuzz.test.ts). Long runs: `npm run fuzz:http -- --cases 2000 --seed N`
 * (prints the cases tried and every failure with the command that replays it alone: `--seed N --only C`).
 */
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Rng } from '../../src/sampler/rng.js';
import { startServer, type DyllmServer } from '../../src/server/app.js';
import { repoRoot } from '../helpers/paths.js';

export const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const QUESTION = 'Tom has 12 apples. Tom buys 7 more. How many apples does Tom have now?';
const ANSWER = /12\+7=19\. #### 19/;
/** The server the fuzz runs against (small limits keep every accepted generation short). */
export const FUZZ_SERVER = { maxTokens: 64, maxPromptTokens: 256, maxBatch: 4, maxQueue: 16, timeoutMs: 30_000, bodyLimit: 256 * 1024 } as const;

export interface FuzzOptions {
  readonly seed: number;
  readonly cases: number;
  /** Run only this case (replay). */
  readonly only?: number;
  /** Cases in flight together. */
  readonly concurrency?: number;
  /** A sanity request and /health after every this many cases. */
  readonly checkEvery?: number;
  /** Per-case deadline. */
  readonly deadlineMs?: number;
  readonly log?: (line: string) => void;
}

export interface FuzzFailure {
  readonly caseNo: number;
  readonly kind: string;
  readonly what: string;
  readonly problem: string;
}

export interface FuzzReport {
  readonly seed: number;
  readonly tried: number;
  readonly sanityChecks: number;
  readonly statuses: Record<string, number>;
  readonly failures: FuzzFailure[];
}

// ---- random values -------------------------------------------------------------------------------------------------

class Pick {
  constructor(readonly rng: Rng) {}
  int(n: number): number {
    return this.rng.nextU32() % n;
  }
  chance(p: number): boolean {
    return this.rng.nextFloat64() < p;
  }
  one<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** A JSON value, or raw JSON text spliced in verbatim (literals JSON.stringify cannot write: 1e400, -0, lone surrogates). */
type Val = null | boolean | number | string | Val[] | { [k: string]: Val } | Raw;
class Raw {
  constructor(readonly text: string) {}
}

function toJson(v: Val): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(',')}}`;
  return JSON.stringify(v);
}

const SPECIAL_TEXT = ['<|mdm_mask|>', '<|eot_id|>', '<|endoftext|>', '<|start_header_id|>user<|end_header_id|>', '<|im_start|>', '<|im_end|>', '<s>', '</s>', '<|begin_of_text|>', '[[dyllm-test-fault:exit]]', '[[dyllm-test-fault:throw-step]]'];
const NUMBERS: Val[] = [0, 1, -1, 2, 3, 7, 8, 16, 32, 48, 63, 64, 65, 96, 128, 1e9, 1e15, -1e15, 0.5, 1.5, -0.5, 0.99, 0.999, 1e-3, 1e308, 2 ** 31, 2 ** 53, new Raw('-0'), new Raw('1e400'), new Raw('-1e400'), new Raw('1E-400'), new Raw('9007199254740993'), new Raw('1.0'), new Raw('0.0000001e7')];
const STRINGS: Val[] = ['', 'x', 'NaN', 'Infinity', '-Infinity', '1e9', '16', 'true', 'null', 'low_confidence', 'random', 'entropy', 'origin', 'maskgit_plus', 'topk_margin', 'dyllm', 'prefix', 'dual', 'dllm-cache', 'none', 'delta', 'rescale', 'rescale-incremental', 'reuse', 'recompute', 'packed', 'left-pad', 'text', 'json_object', new Raw('"\\ud800"'), new Raw('"\\u0000"'), 'é😀'];
const SHAPES: Val[] = [null, true, false, [], {}, [1], [[1]], { a: 1 }, { type: 'text' }, ['a', 'b']];

const TOP_FIELDS = ['model', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'n', 'stream', 'stream_options', 'stop', 'echo', 'logprobs', 'top_logprobs', 'response_format', 'user', 'logit_bias', 'presence_penalty', 'dyllm', 'messages', 'prompt'];
const DYLLM_FIELDS = ['steps', 'block_length', 'gen_length', 'remasking', 'alg', 'alg_temp', 'eps', 'parallel_threshold', 'stop_at_eos', 'cfg_scale', 'logits_eos_inf', 'confidence_eos_eot_inf', 'batch_layout', 'accel', 'threshold', 'full_steps', 'prompt_period', 'attn_update', 'o_proj', 'cache_block', 'refresh_prompt', 'refresh_gen', 'transfer_ratio', 'stream_steps', 'infill'];

/** A `dyllm.infill` template: well-formed holes around fuzz text, malformed holes, too many masks, or a mask token. */
function infillTemplate(p: Pick): string {
  const hole = (): string => p.one(['<mask:1>', '<mask:2>', '<mask:4>', '<mask:8>', '<mask:0>', '<mask:>', '<mask:-1>', '<mask:1025>', '<mask:99999999>', '<mask:x>', '<mask:2', '<mask:64>', '<mask:65>']);
  switch (p.int(5)) {
    case 0: return `12+7=${hole()}. #### ${hole()}`;
    case 1: return Array.from({ length: 1 + p.int(4) }, () => `${text(p).slice(0, 200)}${hole()}`).join(p.one(['', ' ', '\n']));
    case 2: return `${p.one(SPECIAL_TEXT)}${hole()}${p.one(SPECIAL_TEXT)}`;
    case 3: return '<mask:8>'.repeat(1 + p.int(200));
    default: return text(p);
  }
}

function deep(p: Pick): Raw {
  const n = 10_000 + p.int(10_001);
  const [o, c] = p.chance(0.5) ? ['[', ']'] : ['{"a":', '}'];
  return new Raw(o.repeat(n) + (o === '[' ? '1' : '1') + c.repeat(n));
}

function text(p: Pick): string {
  switch (p.int(7)) {
    case 0: return QUESTION;
    case 1: return '';
    case 2: return Array.from({ length: 1 + p.int(6) }, () => p.one(SPECIAL_TEXT)).join(p.one(['', ' ', '\n']));
    case 3: return p.one(['Mia has 5 coins.', 'hi', '1+1=', '\u0000\u0001\u001f', '😀'.repeat(20), 'é'.repeat(50), ' \t\n '.repeat(30)]);
    case 4: return QUESTION.replace('apples', p.one(SPECIAL_TEXT));
    case 5: return 'ab '.repeat(100 + p.int(3000)); // over the token limit, over the byte bound, or both
    default: return 'x'.repeat(p.one([1000, 5000, 50_000]));
  }
}

function value(p: Pick): Val {
  const r = p.int(10);
  if (r < 4) return p.one(NUMBERS);
  if (r < 7) return p.one(STRINGS);
  if (r < 9) return p.one(SHAPES);
  return p.chance(0.5) ? deep(p) : 'y'.repeat(p.one([10_000, 300_000]));
}

/** A plausible OpenAI body, then 0–4 mutations. */
function body(p: Pick, chat: boolean): Record<string, Val> {
  const b: Record<string, Val> = chat ? { messages: [{ role: 'user', content: text(p) }] } : { prompt: text(p) };
  if (chat && p.chance(0.2)) (b.messages as Val[]).unshift({ role: p.one(['system', 'assistant', 'user', 'tool', '', 'x']), content: text(p) });
  if (p.chance(0.6)) b.max_tokens = p.one([8, 16, 32, 48, 64]);
  if (p.chance(0.3)) b.temperature = p.one([0, 0.5, 1]);
  if (p.chance(0.3)) b.stream = true;
  if (p.chance(0.4)) {
    const d: Record<string, Val> = {};
    if (p.chance(0.5)) d.accel = p.one(['dyllm', 'prefix', 'dual', 'dllm-cache', 'none']);
    if (p.chance(0.4)) d.steps = p.one([8, 16, 32, 48]);
    if (p.chance(0.3)) d.block_length = p.one([8, 16, 32]);
    if (b.stream === true && p.chance(0.5)) d.stream_steps = true;
    if (p.chance(0.25)) {
      d.infill = infillTemplate(p);
      if (!chat && p.chance(0.7)) b.prompt = '';
      if (p.chance(0.7)) delete b.max_tokens;
    }
    b.dyllm = d;
  }
  const mutations = p.int(5);
  for (let i = 0; i < mutations; i++) {
    switch (p.int(7)) {
      case 0: case 1:
        b[p.one(TOP_FIELDS)] = value(p);
        break;
      case 2: case 3: {
        const d = (b.dyllm && typeof b.dyllm === 'object' && !Array.isArray(b.dyllm) && !(b.dyllm instanceof Raw) ? b.dyllm : (b.dyllm = {})) as Record<string, Val>;
        d[p.chance(0.9) ? p.one(DYLLM_FIELDS) : 'frobnicate'] = value(p);
        break;
      }
      case 4:
        b[p.one(['unknown_field', 'tools', 'functions', '__proto__', 'constructor', ''])] = value(p);
        break;
      case 5:
        if (chat) b.messages = p.one<Val>([[], {}, 'hi', [null], [{ role: 'user' }], [{ role: 1, content: 'x' }], [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url' }] }], [{ role: 'user', content: [{ type: 'text', text: QUESTION }] }], [{ role: 'user', content: value(p) }]]);
        else b.prompt = p.one<Val>([['a', 'b'], ['x'], [1, 2], 42, null, value(p)]);
        break;
      default:
        b.messages = [{ role: 'user', content: text(p) }];
        delete b.prompt;
    }
  }
  return b;
}

/** A body of plausible values at the edges of the option ranges: most are accepted and generate. */
function edgeBody(p: Pick, chat: boolean): Record<string, Val> {
  const prompt = p.chance(0.5) ? QUESTION : text(p).slice(0, 600);
  const b: Record<string, Val> = chat ? { messages: [{ role: 'user', content: prompt }] } : { prompt };
  const g = p.one([1, 2, 4, 7, 8, 16, 32, 48, 63, 64]);
  b.max_tokens = g;
  const d: Record<string, Val> = {};
  const divisors = [1, 2, 4, 8, 16, 32, 64].filter((x) => g % x === 0);
  if (p.chance(0.6)) d.block_length = p.one(divisors);
  if (p.chance(0.6)) d.steps = p.one([1, g, Math.max(1, g >> 1), p.one(divisors)]);
  if (p.chance(0.3)) b.temperature = p.one([0, 1e-9, 0.3, 1, 2]);
  if (p.chance(0.2)) b.top_p = p.one([0.01, 0.5, 1]);
  if (p.chance(0.2)) b.top_k = p.one([1, 2, 50]);
  if (p.chance(0.3)) b.seed = p.one([0, 1, 2 ** 32, 2 ** 53 - 1]);
  if (p.chance(0.2)) d.remasking = p.one(['low_confidence', 'random']);
  if (p.chance(0.2)) d.parallel_threshold = p.one([0.5, 0.9, 1]);
  if (p.chance(0.15)) d.cfg_scale = p.one([0, 0.5, 1]);
  if (p.chance(0.2)) d.stop_at_eos = p.chance(0.5);
  if (p.chance(0.15)) d.logits_eos_inf = true;
  if (p.chance(0.15)) d.confidence_eos_eot_inf = true;
  if (p.chance(0.5)) {
    d.accel = p.one(['dyllm', 'prefix', 'dual', 'dllm-cache', 'none']);
    if (d.accel === 'dyllm') {
      if (p.chance(0.5)) d.threshold = p.one([0, 0.5, 0.9, 0.99, 0.999, 1]);
      if (p.chance(0.4)) d.full_steps = p.one([1, 2, 64, 1000]);
      if (p.chance(0.4)) d.prompt_period = p.one([1, 2, 1000]);
      if (p.chance(0.3)) d.attn_update = p.one(['delta', 'rescale', 'rescale-incremental']);
      if (p.chance(0.3)) d.o_proj = p.one(['reuse', 'recompute']);
    } else if (d.accel === 'dual' || d.accel === 'prefix') {
      if (p.chance(0.5)) d.cache_block = p.one(divisors);
    } else if (d.accel === 'dllm-cache') {
      if (p.chance(0.5)) d.refresh_prompt = p.one([1, 2, 100]);
      if (p.chance(0.5)) d.refresh_gen = p.one([1, 2, 100]);
      if (p.chance(0.5)) d.transfer_ratio = p.one([0, 0.25, 1]);
    }
  }
  if (p.chance(0.4)) {
    b.stream = true;
    if (p.chance(0.5)) d.stream_steps = true;
    if (p.chance(0.3)) b.stream_options = { include_usage: true };
  }
  // The OpenAI fields the engine's surface adds: choices, stop strings, logprobs.
  if (p.chance(0.25)) b.n = p.one([1, 2, 3, FUZZ_SERVER.maxBatch]);
  if (p.chance(0.25)) b.stop = p.one<Val>(['####', ['=', '.'], ' ', ['x', 'y', 'z', '####'], '19', '<|eot_id|>', 'é😀', '1', ['+', '+7=', ' #']]);
  if (p.chance(0.25)) {
    if (chat) {
      b.logprobs = true;
      if (p.chance(0.6)) b.top_logprobs = p.one([0, 1, 5, 20]);
    } else {
      b.logprobs = p.one([0, 1, 5, 20]);
    }
  }
  if (Object.keys(d).length > 0) b.dyllm = d;
  return b;
}

/** What an accepted generation must look like, from its body: n choices, no stop string in any, logprobs iff asked. */
interface GenExpect {
  readonly chat: boolean;
  readonly n: number;
  readonly stops: readonly string[];
  readonly logprobs: boolean;
  /** An infill (`dyllm.infill`): the answer is the template filled, its fixed text (special tokens too) as written. */
  readonly infill: boolean;
}

function genExpect(b: Record<string, Val>, chat: boolean): GenExpect {
  // What the server parses (raw literals such as 1.0 or -0 are numbers to it).
  const parsed = (v: Val | undefined): unknown => {
    if (!(v instanceof Raw)) return v;
    try {
      return JSON.parse(v.text);
    } catch {
      return undefined;
    }
  };
  const stop = parsed(b.stop);
  const n = parsed(b.n);
  return {
    chat,
    n: typeof n === 'number' ? n : 1,
    stops: typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop.filter((x): x is string => typeof x === 'string') : [],
    logprobs: chat ? parsed(b.logprobs) === true : typeof parsed(b.logprobs) === 'number',
    infill: typeof b.dyllm === 'object' && b.dyllm !== null && !Array.isArray(b.dyllm) && !(b.dyllm instanceof Raw) && typeof (b.dyllm as Record<string, Val>).infill === 'string',
  };
}

/** What is wrong with an accepted generation's choices (texts per index, logprobs seen per index); null when right. */
function checkChoices(e: GenExpect, texts: Map<number, string>, logprobs: Map<number, boolean>): string | null {
  const idx = [...texts.keys()].sort((a, b) => a - b);
  if (idx.length !== e.n || idx.some((x, i) => x !== i)) return `choices ${JSON.stringify(idx)} for n = ${e.n}`;
  for (const [i, t] of texts) {
    const hit = e.stops.find((s) => t.includes(s));
    if (hit !== undefined) return `choice ${i} contains the stop string ${JSON.stringify(hit)}: ${JSON.stringify(t).slice(0, 200)}`;
    if (!e.infill && /<\|(eot_id|endoftext|mdm_mask)\|>/.test(t)) return `choice ${i} contains special token text: ${JSON.stringify(t).slice(0, 200)}`;
    if (!e.logprobs && logprobs.get(i)) return `choice ${i} has logprobs nobody asked for`;
    if (e.logprobs && !logprobs.get(i) && t !== '') return `choice ${i} has no logprobs`;
  }
  return null;
}

// ---- raw HTTP --------------------------------------------------------------------------------------------------------

export interface Exchange {
  /** Bytes to send, in pieces (a short pause between pieces). */
  readonly pieces: readonly Buffer[];
  /** Close our side after sending (early disconnect): no answer is expected. */
  readonly abort?: 'after-send' | 'after-first-bytes';
  /** HEAD answers have no body. */
  readonly head?: boolean;
}

interface Response {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** Sends raw bytes, reads until the server closes (requests carry Connection: close) or the deadline passes. */
function exchange(port: number, ex: Exchange, deadlineMs: number): Promise<{ raw: Buffer; timedOut: boolean; error: string | null }> {
  return new Promise((resolve) => {
    const sock: Socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (timedOut: boolean, error: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ raw: Buffer.concat(chunks), timedOut, error });
    };
    const timer = setTimeout(() => finish(true, null), deadlineMs);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (ex.abort === 'after-first-bytes') finish(false, null);
    });
    sock.on('end', () => finish(false, null));
    sock.on('close', () => finish(false, null));
    sock.on('error', (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    sock.on('connect', async () => {
      for (let i = 0; i < ex.pieces.length && !done; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 2));
        if (!sock.writable) break;
        sock.write(ex.pieces[i]);
      }
      if (ex.abort === 'after-send') setTimeout(() => finish(false, null), 20);
    });
  });
}

/** Parses the responses in `raw` (one or several, pipelined): status, headers and the de-chunked body. */
export function parseResponses(raw: Buffer, head = false): { responses: Response[]; leftover: number } {
  const out: Response[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = raw.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const k = l.indexOf(':');
      if (k > 0) headers[l.slice(0, k).trim().toLowerCase()] = l.slice(k + 1).trim();
    }
    const status = Number(m[1]);
    let p = end + 4;
    let body: Buffer = Buffer.alloc(0);
    if (head || status === 204 || status === 304) {
      // no body
    } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const le = raw.indexOf('\r\n', p);
        if (le < 0) return { responses: [...out, { status, headers, body: Buffer.concat(parts) }], leftover: -1 };
        const n = parseInt(raw.subarray(p, le).toString('latin1'), 16);
        p = le + 2;
        if (!(n > 0)) {
          p += 2;
          break;
        }
        parts.push(raw.subarray(p, p + n));
        p += n + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = raw.subarray(p, p + n);
      if (body.length < n) return { responses: [...out, { status, headers, body }], leftover: -1 };
      p += n;
    } else {
      body = raw.subarray(p);
      p = raw.length;
    }
    out.push({ status, headers, body });
    at = p;
  }
  return { responses: out, leftover: raw.length - at };
}

function request(method: string, path: string, headers: Record<string, string>, payload: Buffer | null, chunked: number[] | null): Buffer[] {
  const h: Record<string, string> = { Host: '127.0.0.1', Connection: 'close', ...headers };
  if (payload && !chunked && h['Content-Length'] === undefined) h['Content-Length'] = String(payload.length);
  if (chunked) h['Transfer-Encoding'] = 'chunked';
  const head = Buffer.from(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`, 'latin1');
  if (!payload) return [head];
  if (!chunked) return [head, payload];
  const pieces: Buffer[] = [head];
  let at = 0;
  for (const size of chunked) {
    if (at >= payload.length) break;
    const part = payload.subarray(at, at + size);
    at += part.length;
    pieces.push(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
  }
  if (at < payload.length) {
    const part = payload.subarray(at);
    pieces.push(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
  }
  pieces.push(Buffer.from('0\r\n\r\n'));
  return pieces;
}

// ---- cases -----------------------------------------------------------------------------------------------------------

interface Case {
  readonly kind: string;
  readonly what: string;
  readonly ex: Exchange;
  /** Statuses that are the only right answer (e.g. 415 for a wrong content type); null = any well-formed one. */
  readonly expect: readonly number[] | null;
  /** How many responses the bytes must produce (pipelining, malformed requests); default 1. */
  readonly responses?: number;
  /** For a plausible generation body: what its answer must look like when it is accepted. */
  readonly gen?: GenExpect;
}

const JSON_CT = { 'Content-Type': 'application/json' };

function makeCase(p: Pick, port: number): Case {
  const chat = p.chance(0.7);
  const path = chat ? '/v1/chat/completions' : '/v1/completions';
  const k = p.int(100);
  if (k < 55) {
    const b0 = k < 20 ? edgeBody(p, chat) : body(p, chat);
    // One body in eight nests 10,000+ levels deep somewhere an option or the prompt is read.
    if (p.chance(0.125)) {
      const field = p.one(['temperature', 'seed', 'max_tokens', 'messages', 'prompt', 'dyllm', 'stream_options', 'user']);
      if (field === 'dyllm') b0.dyllm = { [p.one(DYLLM_FIELDS)]: deep(p) };
      else b0[field] = deep(p);
    }
    const gen = genExpect(b0, chat);
    const b = toJson(b0);
    const payload = Buffer.from(b, 'utf8');
    return { kind: 'body', what: `POST ${path} ${b.length > 400 ? `${b.slice(0, 300)}… (${b.length} chars)` : b}`, ex: { pieces: request('POST', path, JSON_CT, payload, null) }, expect: null, gen };
  }
  if (k < 67) {
    // Byte-level damage to a valid body.
    const valid = Buffer.from(toJson({ messages: [{ role: 'user', content: QUESTION }], max_tokens: 16 }), 'utf8');
    const bad = [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xfe, 0xff], [0x00]];
    let payload: Buffer;
    let what: string;
    switch (p.int(6)) {
      case 0: {
        const at = p.int(valid.length);
        payload = valid.subarray(0, at);
        what = `truncated at ${at}`;
        break;
      }
      case 1: {
        const at = 30 + p.int(valid.length - 40);
        const ins = Buffer.from(p.one(bad));
        payload = Buffer.concat([valid.subarray(0, at), ins, valid.subarray(at)]);
        what = `invalid UTF-8 ${ins.toString('hex')} at ${at}`;
        break;
      }
      case 2: {
        payload = Buffer.from(valid);
        const at = p.int(payload.length);
        payload[at] = p.int(256);
        what = `byte ${at} set to ${payload[at]}`;
        break;
      }
      case 3:
        payload = Buffer.from(Array.from({ length: p.int(2000) }, () => p.int(256)));
        what = `${payload.length} random bytes`;
        break;
      case 4:
        payload = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), valid]);
        what = 'UTF-8 BOM before the JSON';
        break;
      default:
        payload = Buffer.from(p.one(['', 'null', '[]', '"str"', '1', '{}', '{"messages":null}', '{"a":1,"a":2}', '{"messages":[{"role":"user","content":"hi"}],"messages":5}']));
        what = `body ${JSON.stringify(payload.toString())}`;
    }
    return { kind: 'bytes', what: `POST ${path} ${what}`, ex: { pieces: request('POST', path, JSON_CT, payload, null) }, expect: null };
  }
  if (k < 75) {
    const ct = p.one([null, 'text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json; foo=bar', 'application/jsonx', 'json', '', 'application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON']);
    const payload = Buffer.from(JSON.stringify({ ...(chat ? { messages: [{ role: 'user', content: QUESTION }] } : { prompt: QUESTION }), max_tokens: 8 }));
    const ok = ct !== null && /^application\/json(; charset=utf-8)?$/i.test(ct);
    return { kind: 'content-type', what: `POST ${path} Content-Type ${JSON.stringify(ct)}`, ex: { pieces: request('POST', path, ct === null ? {} : { 'Content-Type': ct }, payload, null) }, expect: ok ? [200] : [415] };
  }
  if (k < 83) {
    // Transport: chunked bodies, early disconnects, pipelining, length mismatches.
    const payload = Buffer.from(toJson(body(p, chat)), 'utf8');
    switch (p.int(6)) {
      case 0: {
        const sizes = Array.from({ length: 1 + p.int(20) }, () => 1 + p.int(64));
        return { kind: 'chunked', what: `POST ${path} chunked ${sizes.join(',')} of ${payload.toString().slice(0, 200)}`, ex: { pieces: request('POST', path, JSON_CT, payload, sizes) }, expect: null };
      }
      case 1: {
        const cut = p.int(payload.length);
        const pieces = request('POST', path, { ...JSON_CT, 'Content-Length': String(payload.length) }, payload.subarray(0, cut), null);
        return { kind: 'disconnect', what: `POST ${path} disconnect after ${cut}/${payload.length} body bytes`, ex: { pieces, abort: 'after-send' }, expect: null, responses: 0 };
      }
      case 2: {
        const b = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: QUESTION }], stream: p.chance(0.5), dyllm: { stream_steps: p.chance(0.5) } }));
        const pieces = request('POST', path === '/v1/completions' ? '/v1/chat/completions' : path, JSON_CT, b, null);
        return { kind: 'disconnect', what: 'POST a generation, disconnect at its first response bytes', ex: { pieces, abort: 'after-first-bytes' }, expect: null, responses: 0 };
      }
      case 3: {
        const first = request('GET', '/v1/models', { Connection: 'keep-alive' }, null, null);
        const second = request('POST', '/v1/chat/completions', JSON_CT, Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 })), null);
        return { kind: 'pipelined', what: 'GET /v1/models then POST /v1/chat/completions on one connection', ex: { pieces: [Buffer.concat([...first, ...second])] }, expect: null, responses: 2 };
      }
      case 4: {
        // Content-Length shorter than the body: the rest is read as a next request (garbage → a JSON 400).
        const pieces = request('POST', path, { ...JSON_CT, 'Content-Length': String(Math.max(1, payload.length - 5)), Connection: 'keep-alive' }, payload, null);
        return { kind: 'length-mismatch', what: `POST ${path} Content-Length ${payload.length - 5} for ${payload.length} bytes`, ex: { pieces }, expect: null, responses: 2 };
      }
      default: {
        const line = p.one(['GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n', 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n', 'GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n', `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'b'.repeat(20_000)}\r\nConnection: close\r\n\r\n`, 'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n']);
        return { kind: 'malformed-http', what: JSON.stringify(line.slice(0, 160)), ex: { pieces: [Buffer.from(line, 'latin1')] }, expect: null };
      }
    }
  }
  if (k < 92) {
    const method = p.one(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']);
    const rpath = p.one(['/', '/index.html', '/health', '/metrics', '/v1/models', '/v1/chat/completions', '/v1/completions', '/v1/chat/completions?x=1', '/v2', '//', '/%00', '/v1/../health', '/v1/models/dyllm-demo', '*']);
    const payload = method === 'POST' || method === 'PUT' ? Buffer.from('{}') : null;
    return { kind: 'route', what: `${method} ${rpath}`, ex: { pieces: request(method, rpath, payload ? JSON_CT : {}, payload, null), head: method === 'HEAD' }, expect: null };
  }
  // Who is asking: foreign Host (DNS rebinding), foreign Origin, junk Authorization (no key configured: ignored).
  const variant = p.int(4);
  const headers: Record<string, string> = { ...JSON_CT };
  let expect: number[] | null = null;
  if (variant === 0) {
    headers.Host = p.one([`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, 'localhost.evil.example']);
    expect = [403];
  } else if (variant === 1) {
    headers.Origin = p.one(['http://evil.example', 'null', 'https://127.0.0.1.evil.example']);
    expect = [403];
  } else if (variant === 2) {
    headers.Origin = `http://127.0.0.1:${port}`;
    headers.Host = `127.0.0.1:${port}`;
    expect = [200];
  } else {
    headers.Authorization = p.one(['Bearer', 'Bearer x', 'Basic Zm9vOmJhcg==', 'x'.repeat(5000)]);
    expect = [200];
  }
  const payload = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }));
  return { kind: 'headers', what: `POST /v1/chat/completions with ${JSON.stringify(headers).slice(0, 200)}`, ex: { pieces: request('POST', '/v1/chat/completions', headers, payload, null) }, expect };
}

// ---- checks ----------------------------------------------------------------------------------------------------------

/** What is wrong with one response; null when it is well-formed (and, for an accepted generation, right). */
function checkResponse(r: Response, head: boolean, gen?: GenExpect): string | null {
  const ct = r.headers['content-type'] ?? '';
  if (r.status < 200 || r.status > 599) return `status ${r.status}`;
  if (head || r.status === 204) return null;
  if (r.status >= 400) {
    if (!/^application\/json\b/.test(ct)) return `${r.status} with Content-Type ${JSON.stringify(ct)}: ${r.body.toString('utf8').slice(0, 200)}`;
    let j: { error?: { message?: unknown; type?: unknown; code?: unknown } };
    try {
      j = JSON.parse(r.body.toString('utf8'));
    } catch {
      return `${r.status} whose body is not JSON: ${r.body.toString('utf8').slice(0, 200)}`;
    }
    const e = j.error;
    if (!e || typeof e.message !== 'string' || e.message === '' || e.message.includes('\n') || typeof e.type !== 'string') return `${r.status} without an OpenAI error object: ${r.body.toString('utf8').slice(0, 300)}`;
    if (r.status === 500) return `500 (an engine or server fault): ${e.message}`;
    if (r.status === 503 && e.code !== 'queue_full') return `503 ${String(e.code)} (a worker died?): ${e.message}`;
    return null;
  }
  if (/^text\/event-stream/.test(ct)) {
    const events = r.body.toString('utf8').split('\n\n').filter((x) => x.trim() !== '');
    if (events.at(-1) !== 'data: [DONE]') return `a stream that does not end with [DONE]: …${r.body.toString('utf8').slice(-200)}`;
    const texts = new Map<number, string>();
    const lps = new Map<number, boolean>();
    for (const ev of events.slice(0, -1)) {
      if (!ev.startsWith('data: ')) return `a stream event that is not data: ${ev.slice(0, 200)}`;
      let j: { error?: { message?: string; code?: string }; choices?: { index: number; text?: string; delta?: { content?: string }; logprobs?: unknown }[] };
      try {
        j = JSON.parse(ev.slice(6));
      } catch {
        return `a stream event that is not JSON: ${ev.slice(0, 200)}`;
      }
      if (j.error) return `a stream error event: ${JSON.stringify(j.error).slice(0, 300)}`;
      for (const c of j.choices ?? []) {
        texts.set(c.index, (texts.get(c.index) ?? '') + ((gen?.chat ? c.delta?.content : c.text) ?? ''));
        if (c.logprobs) lps.set(c.index, true);
      }
    }
    return gen ? checkChoices(gen, texts, lps) : null;
  }
  if (/^application\/json\b/.test(ct)) {
    let j: { choices?: { index: number; text?: string; message?: { content?: string }; logprobs?: unknown }[] };
    try {
      j = JSON.parse(r.body.toString('utf8'));
    } catch {
      return `${r.status} JSON that does not parse: ${r.body.toString('utf8').slice(0, 200)}`;
    }
    if (!gen) return null;
    if (!Array.isArray(j.choices)) return `an accepted generation without choices: ${r.body.toString('utf8').slice(0, 200)}`;
    const texts = new Map(j.choices.map((c) => [c.index, (gen.chat ? c.message?.content : c.text) ?? '']));
    return checkChoices(gen, texts, new Map(j.choices.map((c) => [c.index, c.logprobs !== null && c.logprobs !== undefined])));
  }
  if (/^text\/(html|plain)/.test(ct)) return null;
  return `${r.status} with unexpected Content-Type ${JSON.stringify(ct)}`;
}

async function sanity(s: DyllmServer): Promise<string | null> {
  const h = await fetch(`${s.url}/health`);
  const hb = (await h.json()) as { status?: string };
  if (h.status !== 200 || hb.status !== 'ok') return `/health answered ${h.status} ${JSON.stringify(hb)}`;
  const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: JSON_CT, body: JSON.stringify({ messages: [{ role: 'user', content: QUESTION }] }) });
  const t = await r.text();
  if (r.status !== 200) return `a normal request answered ${r.status}: ${t.slice(0, 300)}`;
  const content = (JSON.parse(t) as { choices: { message: { content: string } }[] }).choices[0].message.content;
  if (!ANSWER.test(content)) return `a normal request answered ${JSON.stringify(content)}`;
  const m = await (await fetch(`${s.url}/metrics`)).text();
  const restarts = /^dyllm_engine_restarts_total (\d+)$/m.exec(m)?.[1];
  const tok = /^dyllm_tokenizer_restarts_total (\d+)$/m.exec(m)?.[1];
  if (restarts !== '0' || tok !== '0') return `workers were restarted (engine ${restarts}, tokenizer ${tok})`;
  return null;
}

/** The case a seed and number make (what a replay sends), without sending it. */
export function describeCase(seed: number, c: number, port = 8000): { kind: string; what: string } {
  const k = makeCase(new Pick(new Rng((seed * 65_537 + c) % 2 ** 53)), port);
  return { kind: k.kind, what: k.what };
}

/** Runs the fuzz against a fresh server on the bundled model; never throws for a finding (see the report). */
export async function fuzzHttp(o: FuzzOptions): Promise<FuzzReport> {
  const log = o.log ?? (() => {});
  const deadline = o.deadlineMs ?? 60_000;
  const checkEvery = o.checkEvery ?? 10;
  const concurrency = o.concurrency ?? 2;
  const s = await startServer({ modelDir: DEMO, port: 0, ...FUZZ_SERVER });
  const failures: FuzzFailure[] = [];
  const statuses: Record<string, number> = {};
  let tried = 0;
  let checks = 0;
  const fail = (f: FuzzFailure): void => {
    failures.push(f);
    log(`FAIL case ${f.caseNo} [${f.kind}] ${f.problem}\n  request: ${f.what}\n  replay: npm run fuzz:http -- --seed ${o.seed} --only ${f.caseNo}`);
  };
  const runCase = async (c: number): Promise<void> => {
    const p = new Pick(new Rng((o.seed * 65_537 + c) % 2 ** 53));
    const k = makeCase(p, s.port);
    const got = await exchange(s.port, k.ex, deadline);
    tried++;
    const base = { caseNo: c, kind: k.kind, what: k.what };
    if (got.timedOut) return fail({ ...base, problem: `no complete answer within ${deadline} ms (${got.raw.length} bytes received)` });
    if (k.ex.abort) return; // the server's health is checked by the next sanity request
    const { responses, leftover } = parseResponses(got.raw, k.ex.head);
    const want = k.responses ?? 1;
    if (responses.length === 0) {
      // A body over the limit may be refused (413 + close) while we still write: the reset can beat the answer.
      return fail({ ...base, problem: `no HTTP response (${got.error ?? 'connection closed'}, ${got.raw.length} bytes)` });
    }
    if (leftover !== 0 && responses.length < want) return fail({ ...base, problem: `an incomplete response (${got.raw.length} bytes): ${got.raw.toString('utf8').slice(0, 200)}` });
    for (const r of responses) {
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      const problem = checkResponse(r, k.ex.head ?? false, r.status === 200 ? k.gen : undefined);
      if (problem) return fail({ ...base, problem });
    }
    if (k.expect && !k.expect.includes(responses[0].status)) {
      fail({ ...base, problem: `answered ${responses[0].status}, expected ${k.expect.join(' or ')}: ${responses[0].body.toString('utf8').slice(0, 200)}` });
    }
  };
  try {
    const list = o.only !== undefined ? [o.only] : Array.from({ length: o.cases }, (_, i) => i);
    let sinceCheck = 0;
    for (let i = 0; i < list.length; i += concurrency) {
      await Promise.all(list.slice(i, i + concurrency).map(runCase));
      sinceCheck += Math.min(concurrency, list.length - i);
      if (sinceCheck >= checkEvery || i + concurrency >= list.length) {
        sinceCheck = 0;
        checks++;
        const problem = await sanity(s);
        if (problem) {
          fail({ caseNo: list[Math.min(i + concurrency, list.length) - 1], kind: 'sanity', what: `after cases up to ${list[Math.min(i + concurrency, list.length) - 1]}`, problem });
          break; // the server is in a bad state: later cases would only repeat it
        }
      }
    }
  } finally {
    await s.close();
  }
  return { seed: o.seed, tried, sanityChecks: checks, statuses, failures };
}

// ---- command line: npm run fuzz:http -- --cases N --seed S [--only C] [--concurrency K] ------------------------------

async function main(argv: string[]): Promise<number> {
  const arg = (name: string): number | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = Number(argv[i + 1]);
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name}: expected a non-negative integer, found ${JSON.stringify(argv[i + 1])}`);
    return v;
  };
  const seed = arg('seed') ?? Date.now() % 1_000_000;
  const cases = arg('cases') ?? 500;
  const only = arg('only');
  const t0 = Date.now();
  console.log(`dyllm HTTP fuzz: seed ${seed}, ${only !== undefined ? `case ${only} only` : `${cases} cases`} against the bundled model`);
  const r = await fuzzHttp({ seed, cases, only, concurrency: arg('concurrency'), checkEvery: arg('check-every'), log: (l) => console.log(l) });
  console.log(`cases tried: ${r.tried}, sanity checks: ${r.sanityChecks}, failures: ${r.failures.length}, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`statuses: ${Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join(' ')}`);
  return r.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    console.error(`fuzz:http: ${(e as Error).message}`);
    process.exit(2);
  });
}
