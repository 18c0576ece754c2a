/**
 * The tokenizer thread: loads the model folder's tokenizer and chat template (src/load, nothing else of the model)
 * and turns prompts into token ids, one at a time, for the HTTP thread. Rendering a template and encoding a long
 * prompt take time proportional to its length; here they stall neither the HTTP thread nor the engine's stepping
 * loop, which receives token ids only.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodePrompt } from '../engine/pipeline.js';
import { loadChatTemplate } from '../load/chat-template.js';
import { ConfigError, LoadError } from '../load/errors.js';
import { resolveModelDir } from '../load/hub.js';
import { loadTokenizer } from '../load/tokenizer.js';
import type { EncodeMsg, FromTokenizer, TokenizerConfig } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('src/server/tokenizer-worker.ts must run as a worker thread');
const cfg = workerData as TokenizerConfig;
const send = (m: FromTokenizer): void => port.postMessage(m);

try {
  const dir = resolveModelDir(cfg.modelDir);
  const side = { dir, tokenizer: await loadTokenizer(dir), chatTemplate: await loadChatTemplate(dir) };
  port.on('message', (m: EncodeMsg) => {
    if (cfg.testFaults && m.testFault === 'tokenizer-exit') process.exit(71); // test hook (faults.ts)
    try {
      const tokens = m.prompt.kind === 'chat' ? encodePrompt(side, m.prompt.messages.map((x) => ({ role: x.role, content: x.content })), true) : encodePrompt(side, m.prompt.text, false);
      send({ type: 'encoded', id: m.id, tokens });
    } catch (e) {
      const invalid = e instanceof ConfigError || e instanceof LoadError;
      send({ type: 'encode-error', id: m.id, kind: invalid ? 'invalid' : 'internal', message: ((e as Error).message ?? String(e)).split('\n')[0] });
    }
  });
  send({ type: 'ready', hasChatTemplate: side.chatTemplate !== null });
} catch (e) {
  send({ type: 'fatal', message: (e as Error).message });
}
