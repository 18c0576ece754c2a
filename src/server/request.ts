/**
 * OpenAI request bodies → a validated generation request. Field types and shapes are checked here (400 with
 * the field as `param`); option values go through the engine's own resolveOptions / resolveAccel, so the
 * server accepts exactly what the CLI accepts. Defaults come from the model's generation_config.json.
 */
import { resolveAccel, type AccelOptions, type AccelOptionsInput } from '../engine/accel.js';
import { resolveOptions, type GenerateOptions, type GenerateOptionsInput } from '../engine/options.js';
import type { Architecture, GenerationDefaults } from '../load/config.js';
import { badRequest, RequestError } from './errors.js';
import type { PromptMessage, SubmitMsg } from './protocol.js';

export interface ModelInfo {
  readonly arch: Architecture;
  readonly generation: GenerationDefaults;
}

export interface ParsedRequest {
  readonly prompt: SubmitMsg['prompt'];
  readonly options: GenerateOptions;
  readonly accel: AccelOptions;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly streamSteps: boolean;
}

/** `dyllm` object keys → engine option keys (generation, then acceleration). */
const DYLLM_GEN: Readonly<Record<string, keyof GenerateOptionsInput>> = {
  steps: 'steps', block_length: 'blockLength', remasking: 'remasking', alg: 'alg', alg_temp: 'algTemp', eps: 'eps',
  parallel_threshold: 'parallelThreshold', stop_at_eos: 'stopAtEos', cfg_scale: 'cfgScale', logits_eos_inf: 'logitsEosInf',
  confidence_eos_eot_inf: 'confidenceEosEotInf', batch_layout: 'batchLayout', gen_length: 'genLength',
};
const DYLLM_ACCEL: Readonly<Record<string, keyof AccelOptionsInput>> = {
  accel: 'method', threshold: 'threshold', full_steps: 'fullSteps', prompt_period: 'promptPeriod',
  attn_update: 'attnUpdate', o_proj: 'oProj', cache_block: 'cacheBlock', refresh_prompt: 'promptInterval', refresh_gen: 'genInterval',
  transfer_ratio: 'transferRatio',
};
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

function parsePrompt(body: Record<string, unknown>, chat: boolean): SubmitMsg['prompt'] {
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

/** Validate an OpenAI chat/completions body into engine options. `maxTokens` caps max_tokens (→ genLength). */
export function parseGenerationRequest(body: Record<string, unknown>, chat: boolean, model: ModelInfo, maxTokens: number): ParsedRequest {
  const known = new Set(['messages', 'prompt', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'n', 'stream', 'stream_options', 'stop', 'dyllm', 'echo', 'logprobs', 'top_logprobs', 'response_format']);
  for (const k of Object.keys(body)) {
    if (!known.has(k) && !IGNORED.has(k)) throw badRequest(`${k}: unknown field`, k, 'unknown_field');
  }
  if (!chat && body.messages !== undefined) throw badRequest('messages: use /v1/chat/completions for chat messages', 'messages');
  if (chat && body.prompt !== undefined) throw badRequest('prompt: use /v1/completions for a raw prompt', 'prompt');
  const prompt = parsePrompt(body, chat);
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw badRequest('n: only n = 1 is supported', 'n');
  if (body.stop !== undefined && body.stop !== null) throw badRequest('stop: stop sequences are not supported (the answer ends at the model\'s end token)', 'stop');
  for (const k of ['echo', 'logprobs']) if (body[k] !== undefined && body[k] !== null && body[k] !== false) throw badRequest(`${k}: not supported`, k);
  if (body.top_logprobs !== undefined && body.top_logprobs !== null) throw badRequest('top_logprobs: not supported', 'top_logprobs');
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
  const mt = body.max_completion_tokens ?? body.max_tokens;
  if (mt !== undefined && mt !== null) {
    if (typeof mt !== 'number' || !Number.isSafeInteger(mt) || mt < 1) throw badRequest(`max_tokens: expected an integer ≥ 1, found ${JSON.stringify(mt)}`, 'max_tokens');
    gen.genLength = mt;
  }
  for (const [k, o] of [['temperature', 'temperature'], ['top_p', 'topP'], ['top_k', 'topK'], ['seed', 'seed']] as const) {
    if (body[k] !== undefined && body[k] !== null) gen[o] = body[k];
  }
  let streamSteps = false;
  if (body.dyllm !== undefined && body.dyllm !== null) {
    if (!isObj(body.dyllm)) throw badRequest('dyllm: expected an object', 'dyllm');
    for (const [k, v] of Object.entries(body.dyllm)) {
      if (v === undefined || v === null) continue;
      if (k === 'stream_steps') {
        if (typeof v !== 'boolean') throw badRequest('dyllm.stream_steps: expected true or false', 'dyllm.stream_steps');
        streamSteps = v;
      } else if (k in DYLLM_GEN) gen[DYLLM_GEN[k]] = v;
      else if (k in DYLLM_ACCEL) acc[DYLLM_ACCEL[k]] = v;
      else throw badRequest(`dyllm.${k}: unknown option (see docs/server.md)`, `dyllm.${k}`, 'unknown_field');
    }
  }
  if (gen.genLength !== undefined && (gen.genLength as number) > maxTokens) {
    throw new RequestError(400, `max_tokens: ${String(gen.genLength)} exceeds this server's limit of ${maxTokens} (--max-tokens)`, 'invalid_request_error', 'max_tokens', 'max_tokens_exceeded');
  }
  // ConfigErrors propagate: errors.ts turns them into a 400 on the field they name.
  const options = resolveOptions(model.arch, gen as GenerateOptionsInput, model.generation);
  const accel = resolveAccel(model.arch, acc as AccelOptionsInput);
  if (options.genLength > maxTokens) {
    throw new RequestError(400, `max_tokens: ${options.genLength} exceeds this server's limit of ${maxTokens} (--max-tokens)`, 'invalid_request_error', 'max_tokens', 'max_tokens_exceeded');
  }
  if (streamSteps && !stream) throw badRequest('dyllm.stream_steps: needs "stream": true', 'dyllm.stream_steps');
  return { prompt, options, accel, stream, includeUsage, streamSteps };
}
