/**
 * The helper thread of tokenizer-probe.ts: builds a tokenizer from the file's normalizer, pre-tokenizer and added
 * tokens (which the library runs through the normalizer) around a pass-through model, so that only those stages do
 * any work, and encodes the probe texts. Posts 'started' first (the time limit starts there), then 'done', or 'error'
 * with one line. A file the library cannot build at all is 'done' here: the loader's own build reports it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

const port = parentPort;
if (!port) throw new Error('src/load/tokenizer-probe-worker.ts must run as a worker thread');
const { normalizer, preTokenizer, addedTokens, texts } = workerData as { normalizer: unknown; preTokenizer: unknown; addedTokens: unknown[]; texts: string[] };
port.postMessage({ type: 'started' });
let hf: HfTokenizer | null = null;
try {
  hf = new HfTokenizer(
    {
      version: '1.0', truncation: null, padding: null, added_tokens: addedTokens, normalizer, pre_tokenizer: preTokenizer, post_processor: null, decoder: null,
      // No type, a vocab and nothing else: the library's pass-through model (its encode returns the pieces as given).
      model: { vocab: {} },
    } as never,
    {} as never,
  );
} catch {
  hf = null;
}
try {
  if (hf) for (const t of texts) hf.encode(t, { add_special_tokens: false });
  port.postMessage({ type: 'done' });
} catch (e) {
  port.postMessage({ type: 'error', message: (e instanceof Error ? e.message : String(e)).split('\n')[0] });
}
