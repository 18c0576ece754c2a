/**
 * A loaded model folder, ready to generate: the model on its kernel backend, the tokenizer, the chat template
 * and the special token ids, every one read from the folder's own files (never hard-coded).
 */
import type { KernelBackend } from '../kernels/backend.js';
import type { BackendName } from '../kernels/select.js';
import { loadChatTemplate, renderChatTemplate, type ChatMessage, type ChatTemplateInfo } from '../load/chat-template.js';
import type { GenerationDefaults, ModelConfig } from '../load/config.js';
import { LoadError } from '../load/errors.js';
import { resolveModelDir } from '../load/hub.js';
import { loadTokenizer, type Tokenizer } from '../load/tokenizer.js';
import { loadModel } from '../models/load-model.js';
import { turnEndTokens } from '../models/registry.js';
import type { DiffusionModel } from '../models/types.js';

export interface SpecialIds {
  readonly mask: number;
  readonly eos: number;
  /** End of an assistant turn (LLaDA `<|eot_id|>`, Dream `<|im_end|>`); null if the vocabulary lacks it. */
  readonly eot: number | null;
  readonly bos: number | null;
  readonly pad: number;
}

export interface Pipeline {
  readonly dir: string;
  readonly model: DiffusionModel;
  readonly config: ModelConfig;
  readonly generation: GenerationDefaults;
  readonly tokenizer: Tokenizer;
  readonly chatTemplate: ChatTemplateInfo | null;
  readonly ids: SpecialIds;
}

/**
 * Load a model for generation. `model` is a folder, a bundled model's name (`dyllm-demo`) or a Hugging Face id
 * (`org/name[@revision]`) already in the Hugging Face cache (load/hub.ts).
 */
export async function loadPipeline(model: string, opts: { backend?: BackendName | KernelBackend } = {}): Promise<Pipeline> {
  const dir = resolveModelDir(model);
  return loadPipelineDir(dir, opts);
}

async function loadPipelineDir(dir: string, opts: { backend?: BackendName | KernelBackend }): Promise<Pipeline> {
  const { model, config, generation } = loadModel(dir, opts);
  const tokenizer = await loadTokenizer(dir);
  const chatTemplate = await loadChatTemplate(dir);
  const maskTok = tokenizer.idToToken(config.maskTokenId);
  if (maskTok === undefined) {
    throw new LoadError(dir, `the tokenizer to know mask_token_id ${config.maskTokenId} from config.json`, 'no such token', 'tokenizer and config.json disagree');
  }
  const eotId = tokenizer.tokenToId(turnEndTokens[config.arch]);
  return {
    dir,
    model,
    config,
    generation,
    tokenizer,
    chatTemplate,
    ids: Object.freeze({ mask: config.maskTokenId, eos: config.eosTokenId, eot: eotId ?? null, bos: config.bosTokenId, pad: config.padTokenId }),
  };
}

/**
 * Token ids of a user prompt: through the chat template when `chat`, else the raw text (no special tokens). Needs
 * only the tokenizer side of a pipeline (the server's tokenizer worker loads just that).
 */
export function encodePrompt(p: Pick<Pipeline, 'dir' | 'tokenizer' | 'chatTemplate'>, text: string | readonly ChatMessage[], chat: boolean): number[] {
  if (!chat) {
    if (typeof text !== 'string') throw new LoadError(p.dir, 'a plain string prompt without --chat', 'a message list');
    return p.tokenizer.encode(text);
  }
  if (!p.chatTemplate) throw new LoadError(p.dir, 'a chat_template in tokenizer_config.json', 'none', 'drop --chat to send the raw prompt');
  const messages = typeof text === 'string' ? [{ role: 'user', content: text }] : text;
  const rendered = renderChatTemplate(p.chatTemplate.template, messages, {
    bos_token: p.chatTemplate.bos_token,
    eos_token: p.chatTemplate.eos_token,
    add_generation_prompt: true,
  });
  return p.tokenizer.encode(rendered);
}

/** The answer text of a generated region: cut at the first end token (EOS or end of turn), specials dropped. */
export function decodeAnswer(p: Pipeline, tokens: ArrayLike<number>): string {
  const ids: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === p.ids.eos || t === p.ids.eot) break;
    if (t === p.ids.mask) continue;
    ids.push(t);
  }
  return p.tokenizer.decode(ids, { skipSpecialTokens: true });
}
