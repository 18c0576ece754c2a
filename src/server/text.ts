/**
 * Text helpers of the OpenAI surface, run in the engine worker where the tokenizer is: stop strings (where an
 * answer is cut, and how much of a streamed prefix to hold back because it may be the start of one) and the bytes
 * of a token for logprobs.
 */

/** Index of the earliest occurrence of any stop string in `text`, or −1. */
export function firstStop(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/**
 * Length of the longest suffix of `text` that is a proper prefix of a stop string: streamed text holds it back
 * until the next characters show whether the stop string follows (text already sent can never be taken back).
 */
export function heldBackStopPrefix(text: string, stops: readonly string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(s.slice(0, n))) {
        keep = n;
        break;
      }
    }
  }
  return keep;
}

/** GPT-2 byte-level BPE's alphabet reversed: the character that stands for each byte → that byte. */
const BYTE_OF_CHAR: ReadonlyMap<number, number> = (() => {
  const m = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    m.set(printable ? b : 256 + extra++, b);
  }
  return m;
})();

/**
 * The bytes of a token for OpenAI's `bytes` field. `text` is the token decoded alone; when that is not valid
 * UTF-8 on its own (a byte-level piece of a multi-byte character decodes to U+FFFD) and the vocabulary entry
 * `raw` is spelled in the byte-level alphabet, its bytes are read from that spelling.
 */
export function tokenBytes(text: string, raw: string | undefined): number[] {
  if (text.includes('\uFFFD') && raw !== undefined) {
    const bytes: number[] = [];
    for (const ch of raw) {
      const b = BYTE_OF_CHAR.get(ch.codePointAt(0)!);
      if (b === undefined) return [...Buffer.from(text, 'utf8')];
      bytes.push(b);
    }
    return bytes;
  }
  return [...Buffer.from(text, 'utf8')];
}

/** One line of an exception, for an error message. */
export function oneLine(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0] || (e instanceof Error ? e.name : 'unknown error');
}

/**
 * How many leading tokens of `ids` decode (by `decode`, the answer text: special tokens dropped) within the first
 * `len` characters: the largest k whose text is at most `len` long, or with `touching`, the smallest k whose text
 * reaches `len` (the tokens that make up text[0, len)).
 */
export function tokensWithin(decode: (ids: number[]) => string, ids: readonly number[], len: number, touching = false): number {
  const at = (k: number): number => decode(ids.slice(0, k)).length;
  let lo = 0;
  let hi = ids.length;
  if (touching) {
    // smallest k with at(k) >= len
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at(mid) >= len) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
  // largest k with at(k) <= len
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (at(mid) <= len) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
