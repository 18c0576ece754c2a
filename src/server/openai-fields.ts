/**
 * OpenAI response fields the server builds from the engine's messages: the `logprobs` objects of chat and of the
 * (legacy) completions endpoint, in the shapes of OpenAI's API reference, and the rounding of timing fields.
 */
import type { LogprobMsg } from './protocol.js';

/** OpenAI chat `logprobs` of some answer tokens. */
export function chatLogprobs(entries: readonly LogprobMsg[]): Record<string, unknown> {
  return {
    content: entries.map((e) => ({ token: e.token, logprob: e.logprob, bytes: e.bytes, top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })) })),
    refusal: null,
  };
}

/** OpenAI (legacy) completions `logprobs` of some answer tokens whose text starts at `offset` of the answer. */
export function completionLogprobs(entries: readonly LogprobMsg[], offset: number): Record<string, unknown> {
  const textOffset: number[] = [];
  for (const e of entries) {
    textOffset.push(offset);
    offset += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}

/** A timing figure to the microsecond (3 decimals of milliseconds). */
export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
