/**
 * The tokenizer thread: loads the model folder's tokenizer and chat template (src/load, nothing else of the model)
 * and turns prompts into token ids, one at a time, for the HTTP thread. Rendering a template and encoding a long
 * prompt take time proportional to its length; here they stall neither the HTTP thread nor the engine's stepping
 * loop, which receives token ids only.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeInfill, parseInfill } from '../engine/infill.js';
import { encodePrompt } from '../engine/pipeline.js';
import { loadChatTemplate } from '../load/chat-template.js';
import { loadConfig } from '../load/config.js';
import { ConfigError, LoadError } from '../load/errors.js';
import { resolveModelDir } from '../load/hub.js';
import { loadTokenizer } from '../load/tokenizer.js';
import type { EncodedMsg, EncodeMsg, FromTokenizer, PromptSpec, TokenizerConfig } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('src/server/tokenizer-worker.ts must run as a worker thread');
const cfg = workerData as TokenizerConfig;
const send = (m: FromTokenizer): void => port.postMessage(m);

try {
  const dir = resolveModelDir(cfg.modelDir);
  const side = { dir, tokenizer: await loadTokenizer(dir), chatTemplate: await loadChatTemplate(dir) };
  // An infill needs the mask id (refused inside fixed text) and the sequence limit; config.json holds both.
  const { config } = loadConfig(dir);
  const encode = (prompt: PromptSpec): Omit<EncodedMsg, 'type' | 'id'> => {
    if (prompt.kind === 'text') return { tokens: encodePrompt(side, prompt.text, false), infill: null };
    const chat = prompt.messages && encodePrompt(side, prompt.messages.map((x) => ({ role: x.role, content: x.content })), true);
    if (prompt.kind === 'chat') return { tokens: chat!, infill: null };
    // An infill: the template's text before its first hole follows the chat prompt (if any), encoded raw.
    const before = chat?.length ?? 0;
    const c = encodeInfill({ tokenizer: side.tokenizer, ids: { mask: config.maskTokenId }, config }, parseInfill(prompt.template, 'dyllm.infill'), 'dyllm.infill');
    const total = before + c.prompt.length + c.region.length;
    if (total > config.maxSequenceLength) {
      throw new ConfigError(`dyllm.infill: the chat prompt (${before} tokens) and the template (${total - before} tokens) are ${total} tokens, more than the model's maximum sequence length ${config.maxSequenceLength}`);
    }
    return { tokens: [...(chat ?? []), ...c.prompt], infill: { region: c.region, holes: c.holes.map((h) => ({ ...h })), masks: c.masks } };
  };
  port.on('message', (m: EncodeMsg) => {
    if (cfg.testFaults && m.testFault === 'tokenizer-exit') process.exit(71); // test hook (faults.ts)
    try {
      send({ type: 'encoded', id: m.id, ...encode(m.prompt) });
    } catch (e) {
      const invalid = e instanceof ConfigError || e instanceof LoadError;
      send({ type: 'encode-error', id: m.id, kind: invalid ? 'invalid' : 'internal', message: ((e as Error).message ?? String(e)).split('\n')[0] });
    }
  });
  send({ type: 'ready', hasChatTemplate: side.chatTemplate !== null });
} catch (e) {
  send({ type: 'fatal', message: (e as Error).message });
}
