/**
 * A loaded model folder, ready to generate: the model on its kernel backend, the tokenizer, the chat template
 * and the special token ids, every one read from the folder's own files (never hard-coded).
 */
import { join } from 'node:path';
import type { KernelBackend } from '../kernels/backend.js';
import type { BackendName } from '../kernels/select.js';
import { loadChatTemplate, renderChatTemplate, specialTokenFile, type ChatMessage, type ChatTemplateInfo, type TemplateLimits } from '../load/chat-template.js';
import type { GenerationDefaults, ModelConfig } from '../load/config.js';
import { filesFromBytes } from '../load/bytes.js';
import { LoadError } from '../load/errors.js';
import type { CheckpointFiles } from '../load/safetensors.js';
import { resolveModelDir } from '../load/hub.js';
import { loadTokenizer, tokenizerFile, type Tokenizer } from '../load/tokenizer.js';
import { familyOf } from '../families/registry.js';
import { loadModel, type LoadProgress, type ModelLoadOptions, type QuantOption } from '../models/load-model.js';
import type { DiffusionModel } from '../models/types.js';

export interface SpecialIds {
  readonly mask: number;
  readonly eos: number;
  /** End of an assistant turn (the family's turnEndToken); null if the vocabulary lacks it. */
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

export interface PipelineOptions {
  readonly backend?: BackendName | KernelBackend;
  /** Quantise the linear layers while loading (docs/quantization.md); default 'none'. */
  readonly quant?: QuantOption;
  /** Limits on rendering the chat template (default: templateLimits(), i.e. 1 s or DYLLM_TEMPLATE_TIMEOUT_MS). */
  readonly templateLimits?: Partial<TemplateLimits>;
  /** Called as the weights are read (see loadModel). */
  readonly onProgress?: LoadProgress;
  /** The packed-weight cache (see loadModel; docs/loading.md). Default: env DYLLM_PACK_CACHE=1, else off. */
  readonly packCache?: ModelLoadOptions['packCache'];
}

/**
 * Load a model for generation. `model` is a folder, a bundled model's name (`dyllm-demo`) or a Hugging Face id
 * (`org/name[@revision]`) already in the Hugging Face cache (load/hub.ts).
 */
export async function loadPipeline(model: string, opts: PipelineOptions = {}): Promise<Pipeline> {
  const dir = resolveModelDir(model);
  return loadPipelineDir(dir, opts);
}

/**
 * Load a model from its files' bytes (fetched, or out of a browser's Cache Storage) instead of a folder: `files`
 * maps file names (config.json, tokenizer.json, model.safetensors, …) to bytes; `name` stands for the folder in
 * messages. The same parsers and checks as loadPipeline (load/bytes.ts); no node:fs on this path.
 */
export async function loadPipelineFromBytes(name: string, files: ReadonlyMap<string, Uint8Array>, opts: PipelineOptions = {}): Promise<Pipeline> {
  return loadPipelineDir(name, opts, filesFromBytes(name, files));
}

async function loadPipelineDir(dir: string, opts: PipelineOptions, files?: CheckpointFiles): Promise<Pipeline> {
  const { model, config, generation } = loadModel(dir, { ...opts, files });
  const tokenizer = await loadTokenizer(dir, files);
  const chatTemplate = await loadChatTemplate(dir, { limits: opts.templateLimits, files });
  checkTokenizerFitsModel(dir, config, generation, tokenizer, chatTemplate, files);
  const eotId = tokenizer.tokenToId(familyOf(config.arch).turnEndToken);
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
 * The tokenizer and the model must agree, or generation fails late (an id past the embedding) or silently (a
 * special token the tokenizer spells as plain text): every id the tokenizer can produce is a row of the embedding,
 * every special id the engine uses names a token, and the bos/eos strings the chat template inserts are tokens.
 */
function checkTokenizerFitsModel(dir: string, config: ModelConfig, generation: GenerationDefaults, tokenizer: Tokenizer, chatTemplate: ChatTemplateInfo | null, files?: CheckpointFiles): void {
  const cfgFile = join(dir, 'config.json');
  const family = familyOf(config.arch);
  const rowsKey = family.embeddingRowsKey;
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new LoadError(
      tokenizerFile(dir, files),
      `a tokenizer with at most ${config.vocabSize} ids (the model's embedding rows, ${rowsKey} in ${cfgFile})`,
      `${tokenizer.vocabSize} ids (largest id ${tokenizer.vocabSize - 1})`,
      'the tokenizer belongs to a different model',
    );
  }
  // Where each id was read from (load/config.ts reads some from generation_config.json first).
  const fromGen = (key: string): boolean => generation[key] !== undefined && generation[key] !== null && family.idsFromGenerationConfig.includes(key);
  const ids: [string, number | null][] = [
    ['mask_token_id', config.maskTokenId],
    ['eos_token_id', config.eosTokenId],
    ['pad_token_id', config.padTokenId],
    ['bos_token_id', config.bosTokenId],
  ];
  for (const [key, id] of ids) {
    if (id === null || tokenizer.idToToken(id) !== undefined) continue;
    const file = fromGen(key) ? join(dir, 'generation_config.json') : cfgFile;
    throw new LoadError(file, `the id of a token of the tokenizer (${tokenizerFile(dir, files)})`, `${id}, which names no token`, 'tokenizer and config disagree', { key });
  }
  if (chatTemplate) {
    for (const [key, tok] of [['bos_token', chatTemplate.bos_token], ['eos_token', chatTemplate.eos_token]] as const) {
      if (tok === undefined || tokenizer.tokenToId(tok) !== undefined) continue;
      throw new LoadError(
        specialTokenFile(dir, key, files),
        `a token of the tokenizer (the chat template inserts it as ${key})`,
        `${JSON.stringify(tok)}, which the tokenizer does not know`,
        'it would be encoded as plain text',
        { key },
      );
    }
  }
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
  const rendered = renderChatTemplate(
    p.chatTemplate.template,
    messages,
    { bos_token: p.chatTemplate.bos_token, eos_token: p.chatTemplate.eos_token, add_generation_prompt: true },
    { name: p.chatTemplate.source, limits: p.chatTemplate.limits },
  );
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
