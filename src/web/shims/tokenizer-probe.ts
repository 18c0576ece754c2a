/**
 * load/tokenizer-probe.ts for the browser bundle (scripts/build-web.mjs): a page's engine has no Node helper thread
 * to probe a tokenizer's patterns in, so nothing is probed. A pattern that backtracks catastrophically stalls only the
 * page's engine worker (the page stays live and can be reloaded); `dyllm serve` refuses such a folder at start.
 */
export async function probeTokenizerPatterns(_file: string, _normalizer: unknown, _preTokenizer: unknown, _addedTokens?: unknown[]): Promise<void> {}
