/**
 * OpenAI request bodies → a validated generation request. Field shapes are checked here (400 with the field as
 * `param`); option fields come from the option schema (engine/schema.ts) and their values go through the engine's
 * own resolveOptions / resolveAccel, so the server accepts exactly what the CLI accepts, with the same ranges.
 * Defaults come from the model's generation_config.json.
 */
import { MAX_TOP_LOGPROBS } from '../engine/generate.js';
import { accelMethod } from '../engine/accel/registry.js';
import { ACCEL_OPTIONS, resolveAccel, type AccelOptions, type AccelOptionsInput } from '../engine/accel.js';
import { GENERATION_OPTIONS, resolveOptions, type GenerateOptions, type GenerateOptionsInput } from '../engine/options.js';
import { infillOptions, parseInfill, refuseInfillGenLength, type InfillPart } from '../engine/infill.js';
import { didYouMean, type OptionSpec } from '../engine/schema.js';
import type { Architecture, GenerationDefaults } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import { gpuAccelRefusal } from '../models/gpu-model.js';
import { badRequest, RequestError } from './errors.js';
import type { EncodedInfill, PromptMessage, PromptSpec } from './protocol.js';
import { PROMPT_BYTES_PER_TOKEN } from './tokenizer.js';

export interface ModelInfo {
  readonly arch: Architecture;
  readonly generation: GenerationDefaults;
  readonly vocabSize: number;
  readonly maxSequenceLength: number;
}

/** The request's generation: options resolved (an infill's once its template is encoded: resolveInfill). */
export interface ParsedRequest {
  readonly prompt: PromptSpec;
  readonly options: GenerateOptions;
  readonly accel: AccelOptions;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly streamSteps: boolean;
  /** Choices, denoised together in one run. */
  readonly n: number;
  /** Stop strings (none: []). */
  readonly stop: readonly string[];
  /** Top alternatives per answer token; null = no logprobs. */
  readonly logprobs: number | null;
  /** `dyllm.infill`: the template's pieces (the answer is the filled template); null for other requests. */
  readonly infill: { readonly parts: readonly InfillPart[] } | null;
}

/** An infill request before its template is encoded: the options wait for the gen length the template sets. */
export interface PendingInfill extends Omit<ParsedRequest, 'options' | 'accel' | 'infill'> {
  readonly prompt: Extract<PromptSpec, { kind: 'infill' }>;
  readonly infill: { readonly parts: readonly InfillPart[]; readonly gen: GenerateOptionsInput; readonly acc: AccelOptionsInput };
}

/** Most choices one request may ask for (and never more than --max-batch). */
export const MAX_N = 8;
/** Most stop strings, and the longest one (characters), as OpenAI bounds them. */
export const MAX_STOPS = 4;
export const MAX_STOP_CHARS = 256;

/** `stop`: a string or an array of up to MAX_STOPS non-empty strings, each at most MAX_STOP_CHARS long. */
function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > MAX_STOPS) {
    throw badRequest(`stop: expected a string or an array of at most ${MAX_STOPS} strings, found ${Array.isArray(list) ? `an array of ${list.length}` : describe(v)}`, 'stop');
  }
  return list.map((s, i) => {
    const where = typeof v === 'string' ? 'stop' : `stop[${i}]`;
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_STOP_CHARS) {
      throw badRequest(`${where}: expected a non-empty string of at most ${MAX_STOP_CHARS} characters, found ${typeof s === 'string' ? `${s.length} characters` : describe(s)}`, 'stop');
    }
    return s;
  });
}

/** An integer field in [lo, hi]. */
function intIn(v: unknown, field: string, lo: number, hi: number, why = ''): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) throw badRequest(`${field}: expected an integer in [${lo}, ${hi}]${why}, found ${describe(v)}`, field);
  return v;
}

/** A found value for a message, cut short. */
function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/**
 * Logprobs fields: chat takes `logprobs: true` and `top_logprobs: 0..20`; completions take `logprobs: k`
 * (0..20). Returns the top-k count, or null when logprobs are off.
 */
function parseLogprobs(body: Record<string, unknown>, chat: boolean): number | null {
  const lp = body.logprobs;
  const top = body.top_logprobs;
  if (!chat) {
    if (top !== undefined && top !== null) throw badRequest('top_logprobs: a chat completions field; /v1/completions takes "logprobs": k (the number of alternatives)', 'top_logprobs');
    if (lp === undefined || lp === null) return null;
    return intIn(lp, 'logprobs', 0, MAX_TOP_LOGPROBS, ' (alternatives per token)');
  }
  if (lp !== undefined && lp !== null && typeof lp !== 'boolean') throw badRequest(`logprobs: expected true or false, found ${describe(lp)} (the number of alternatives goes in top_logprobs)`, 'logprobs');
  if (top !== undefined && top !== null) {
    const k = intIn(top, 'top_logprobs', 0, MAX_TOP_LOGPROBS);
    if (lp !== true) throw badRequest('top_logprobs: needs "logprobs": true', 'top_logprobs');
    return k;
  }
  return lp === true ? 0 : null;
}

/** Every declared option by its HTTP field (and aliases): the OpenAI top-level ones and those of the `dyllm` object. */
function fieldTable(): Map<string, OptionSpec> {
  const t = new Map<string, OptionSpec>();
  for (const spec of [...GENERATION_OPTIONS, ...ACCEL_OPTIONS]) for (const f of [spec.field, ...(spec.aliases ?? [])]) t.set(f, spec);
  return t;
}
const FIELDS = fieldTable();
const TOP_LEVEL = [...FIELDS.keys()].filter((f) => !f.startsWith('dyllm.'));
const DYLLM_FIELDS = [...FIELDS.keys()].filter((f) => f.startsWith('dyllm.')).map((f) => f.slice('dyllm.'.length));
/** OpenAI fields accepted and ignored (they have no meaning for a diffusion sampler, or are informational). */
const IGNORED = new Set(['model', 'user', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'metadata', 'store', 'service_tier', 'parallel_tool_calls']);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseJsonBody(raw: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest(`the request body is not valid JSON (${(e as Error).message})`, null, 'invalid_json');
  }
  if (!isObj(v)) throw badRequest('the request body must be a JSON object', null, 'invalid_json');
  return v;
}

function messageContent(v: unknown, i: number): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    return v.map((part, j) => {
      if (isObj(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
      throw badRequest(`messages[${i}].content[${j}]: only {"type":"text","text":…} parts are supported`, `messages[${i}].content`);
    }).join('');
  }
  throw badRequest(`messages[${i}].content: expected a string or an array of text parts, found ${JSON.stringify(v)}`, `messages[${i}].content`);
}

function parsePrompt(body: Record<string, unknown>, chat: boolean): PromptSpec {
  if (chat) {
    const m = body.messages;
    if (!Array.isArray(m) || m.length === 0) throw badRequest('messages: expected a non-empty array of {role, content}', 'messages');
    const messages: PromptMessage[] = m.map((x, i) => {
      if (!isObj(x) || typeof x.role !== 'string') throw badRequest(`messages[${i}]: expected {"role": string, "content": …}`, `messages[${i}]`);
      return { role: x.role, content: messageContent(x.content, i) };
    });
    return { kind: 'chat', messages };
  }
  let p = body.prompt;
  if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') p = p[0];
  if (typeof p !== 'string') throw badRequest('prompt: expected a string (one prompt per request)', 'prompt');
  return { kind: 'text', text: p };
}

/**
 * Validate an OpenAI chat/completions body into engine options. `maxTokens` caps max_tokens (→ genLength);
 * `maxBatch` (the server's --max-batch) caps n together with MAX_N. A `dyllm.infill` request comes back pending:
 * its options are resolved by resolveInfill once the template is encoded.
 */
export function parseGenerationRequest(body: Record<string, unknown>, chat: boolean, model: ModelInfo, maxTokens: number, maxPromptTokens = Number.MAX_SAFE_INTEGER, maxBatch = MAX_N): ParsedRequest | PendingInfill {
  const known = new Set(['messages', 'prompt', ...TOP_LEVEL, 'n', 'stream', 'stream_options', 'stop', 'dyllm', 'echo', 'logprobs', 'top_logprobs', 'response_format']);
  for (const k of Object.keys(body)) {
    if (!known.has(k) && !IGNORED.has(k)) throw badRequest(`${k}: unknown field`, k, 'unknown_field');
  }
  if (!chat && body.messages !== undefined) throw badRequest('messages: use /v1/chat/completions for chat messages', 'messages');
  if (chat && body.prompt !== undefined) throw badRequest('prompt: use /v1/completions for a raw prompt', 'prompt');
  const infillGiven = isObj(body.dyllm) && body.dyllm.infill !== undefined && body.dyllm.infill !== null;
  // An infill's prompt is its template's text before the first hole: a completions request gives no other prompt.
  if (infillGiven && !chat && !(body.prompt === undefined || body.prompt === null || body.prompt === '' || (Array.isArray(body.prompt) && body.prompt.length === 1 && body.prompt[0] === ''))) {
    throw badRequest('prompt: expected no prompt (or "") with dyllm.infill: the template\'s text before its first hole is the prompt', 'prompt');
  }
  const prompt = infillGiven && !chat ? null : parsePrompt(body, chat);
  const maxN = Math.max(1, Math.min(MAX_N, maxBatch));
  const n = body.n === undefined || body.n === null ? 1 : intIn(body.n, 'n', 1, maxN, ` (choices are denoised together: at most ${maxN} on this server, --max-batch)`);
  const stop = parseStop(body.stop);
  const logprobs = parseLogprobs(body, chat);
  if (body.echo !== undefined && body.echo !== null && body.echo !== false) throw badRequest('echo: not supported', 'echo');
  if (body.response_format !== undefined && body.response_format !== null && !(isObj(body.response_format) && body.response_format.type === 'text')) {
    throw badRequest('response_format: only {"type":"text"} is supported', 'response_format');
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw badRequest('stream: expected true or false', 'stream');
  const stream = body.stream === true;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isObj(body.stream_options)) throw badRequest('stream_options: expected an object', 'stream_options');
    const iu = body.stream_options.include_usage;
    if (iu !== undefined && typeof iu !== 'boolean') throw badRequest('stream_options.include_usage: expected true or false', 'stream_options.include_usage');
    includeUsage = iu === true;
  }

  const gen: Record<string, unknown> = {};
  const acc: Record<string, unknown> = {};
  const set = (field: string, v: unknown): void => {
    const spec = FIELDS.get(field)!;
    const target = GENERATION_OPTIONS.includes(spec) ? gen : acc;
    if (target[spec.key] !== undefined && target[spec.key] !== v) throw badRequest(`${field}: conflicts with another field that sets the same option (${spec.field})`, field);
    target[spec.key] = v;
  };
  for (const f of TOP_LEVEL) if (body[f] !== undefined && body[f] !== null) set(f, body[f]);
  let streamSteps = false;
  let template: unknown;
  if (body.dyllm !== undefined && body.dyllm !== null) {
    if (!isObj(body.dyllm)) throw badRequest('dyllm: expected an object', 'dyllm');
    for (const [k, v] of Object.entries(body.dyllm)) {
      if (v === undefined || v === null) continue;
      if (k === 'infill') template = v;
      else if (k === 'stream_steps') {
        if (typeof v !== 'boolean') throw badRequest('dyllm.stream_steps: expected true or false', 'dyllm.stream_steps');
        streamSteps = v;
      } else if (DYLLM_FIELDS.includes(k)) set(`dyllm.${k}`, v);
      else throw badRequest(`dyllm.${k}: unknown option${didYouMean(k, [...DYLLM_FIELDS, 'stream_steps', 'infill'])} (see docs/server.md)`, `dyllm.${k}`, 'unknown_field');
    }
  }
  if (streamSteps && !stream) throw badRequest('dyllm.stream_steps: needs "stream": true', 'dyllm.stream_steps');
  if (template !== undefined) {
    const messages = prompt?.kind === 'chat' ? prompt.messages : null;
    const parts = parseInfillField(template, maxTokens, maxPromptTokens);
    refuseInfillGenLength(gen as GenerateOptionsInput); // an OptionError on max_tokens (errors.ts)
    if (stop.length > 0) throw badRequest('stop: not supported with dyllm.infill (the answer is the whole filled template); drop stop', 'stop');
    if (logprobs !== null) throw badRequest('logprobs: not supported with dyllm.infill; drop logprobs', 'logprobs');
    return {
      prompt: { kind: 'infill', template: template as string, messages }, stream, includeUsage, streamSteps, n, stop, logprobs,
      infill: { parts, gen: gen as GenerateOptionsInput, acc: acc as AccelOptionsInput },
    };
  }
  if (typeof gen.genLength === 'number' && gen.genLength > maxTokens) {
    throw new RequestError(400, `max_tokens: ${String(gen.genLength)} exceeds this server's limit of ${maxTokens} (--max-tokens)`, 'invalid_request_error', 'max_tokens', 'max_tokens_exceeded');
  }
  // OptionErrors propagate: errors.ts names the field they are about.
  const options = resolveOptions(model, gen as GenerateOptionsInput, model.generation, { maxCanvas: Math.max(maxTokens, 1) + maxPromptTokens });
  const accel = resolveAccel(model, acc as AccelOptionsInput, options);
  if (options.genLength > maxTokens) {
    throw new RequestError(400, `max_tokens: ${options.genLength} exceeds this server's limit of ${maxTokens} (--max-tokens)`, 'invalid_request_error', 'max_tokens', 'max_tokens_exceeded');
  }
  return { prompt: prompt!, options, accel, stream, includeUsage, streamSteps, n, stop, logprobs, infill: null };
}

/**
 * On a WebGPU server: a request whose acceleration does not run on the GPU is refused (400) with the line `dyllm
 * generate --backend webgpu` refuses it with (models/gpu-model.ts gpuAccelRefusal), its param the option's field.
 */
export function refuseOnGpu(r: ParsedRequest): void {
  const why = gpuAccelRefusal(r.accel, accelMethod(r.accel.method).dense === true);
  if (!why) return;
  const name = why.split(/[\s:]/)[0].replace(/^--/, '');
  const spec = ACCEL_OPTIONS.find((s) => s.flag === name || s.key === name);
  throw new RequestError(400, why, 'invalid_request_error', spec?.field ?? null, 'unsupported_on_webgpu');
}

/** Whether a parsed request is an infill waiting for its template's encoding (resolveInfill). */
export function isPendingInfill(r: ParsedRequest | PendingInfill): r is PendingInfill {
  return !('options' in r);
}

/**
 * `dyllm.infill`, bounded before it is scanned: a string of at most (max prompt tokens + max tokens) × 16 bytes
 * (request text that long cannot fit the server's limits, as for prompts: tokenizer.ts), holes as
 * engine/infill.ts parses them, and at most --max-tokens masks in all.
 */
function parseInfillField(v: unknown, maxTokens: number, maxPromptTokens: number): InfillPart[] {
  const field = 'dyllm.infill';
  if (typeof v === 'string') {
    const limit = (maxPromptTokens + maxTokens) * PROMPT_BYTES_PER_TOKEN;
    const bytes = Buffer.byteLength(v, 'utf8');
    if (bytes > limit) {
      throw new RequestError(400, `${field}: ${bytes} bytes of template cannot fit this server's limits of ${maxPromptTokens} prompt tokens and ${maxTokens} generated positions (at most ${limit} bytes are accepted); shorten the template`, 'invalid_request_error', field, 'prompt_too_long');
    }
  }
  let parts: InfillPart[];
  try {
    parts = parseInfill(v, field);
  } catch (e) {
    if (e instanceof ConfigError) throw badRequest(e.message, field);
    throw e;
  }
  let masks = 0;
  for (const p of parts) if ('hole' in p) masks += p.hole;
  if (masks > maxTokens) {
    throw new RequestError(400, `${field}: ${masks} masks exceed this server's limit of ${maxTokens} generated positions (--max-tokens); shorten the holes`, 'invalid_request_error', field, 'max_tokens_exceeded');
  }
  return parts;
}

/**
 * An infill's options once its template is encoded: the gen length is the region's (at most --max-tokens), steps
 * default to its masks (engine/infill.ts infillOptions); every option checked as for any request.
 */
export function resolveInfill(r: PendingInfill, enc: EncodedInfill, model: ModelInfo, maxTokens: number, maxPromptTokens = Number.MAX_SAFE_INTEGER): ParsedRequest {
  if (enc.region.length > maxTokens) {
    throw new RequestError(400, `dyllm.infill: the template from its first hole on is ${enc.region.length} tokens, over this server's limit of ${maxTokens} generated positions (--max-tokens); shorten the text after the first hole or raise --max-tokens`, 'invalid_request_error', 'dyllm.infill', 'max_tokens_exceeded');
  }
  const options = resolveOptions(model, infillOptions(r.infill.gen, enc), model.generation, { maxCanvas: Math.max(maxTokens, 1) + maxPromptTokens });
  const accel = resolveAccel(model, r.infill.acc, options);
  return { ...r, options, accel, infill: { parts: r.infill.parts } };
}
