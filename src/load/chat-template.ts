/**
 * Chat templates (Jinja, from tokenizer_config.json) rendered with @huggingface/jinja, as transformers'
 * `apply_chat_template(..., tokenize=False)` does (docs/models.md §1.5, §2.5). The rendered string is then encoded
 * with add_special_tokens=False: the template already holds BOS / role markers.
 */
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { LoadError } from './errors.js';
import { pathExists, readOptionalJsonObject, readTextFile } from './files.js';
import { tokenContent } from './tokenizer.js';

export interface ChatMessage {
  role: string;
  content: string;
  /** Extra fields (e.g. `tool_calls`) are passed to the template as they are. */
  [k: string]: unknown;
}

export interface ChatTemplateVars {
  bos_token?: string;
  eos_token?: string;
  /** Append the assistant header. Default false, as in transformers. LLaDA's template appends it regardless. */
  add_generation_prompt?: boolean;
  [k: string]: unknown;
}

export interface ChatTemplateInfo {
  template: string;
  bos_token?: string;
  eos_token?: string;
}

export interface SpecialTokens {
  bos?: string;
  eos?: string;
  pad?: string;
  mask?: string;
}

const parsed = new Map<string, Template>();

function compile(template: string): Template {
  let t = parsed.get(template);
  if (t === undefined) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new LoadError('chat_template', 'a Jinja template that @huggingface/jinja can parse', `a parse error: ${(e as Error).message}`);
    }
    if (parsed.size >= 16) parsed.clear();
    parsed.set(template, t);
  }
  return t;
}

/**
 * Renders `template` for `messages` with transformers' variables (`messages`, `bos_token`, `eos_token`,
 * `add_generation_prompt`, plus any extra `vars`, e.g. `tools`). Jinja runs with trim_blocks and lstrip_blocks, as
 * in transformers. Errors raised by the template (`raise_exception`) or by rendering are rethrown as LoadError.
 */
export function renderChatTemplate(template: string, messages: readonly ChatMessage[], vars: ChatTemplateVars = {}): string {
  const t = compile(template);
  try {
    return t.render({ add_generation_prompt: false, ...vars, messages });
  } catch (e) {
    throw new LoadError('chat_template', 'a template that renders these messages', `an error: ${(e as Error).message}`, 'check bos_token/eos_token and the message roles');
  }
}

/** `chat_template` as tokenizer_config.json holds it: a string, or a list of `{name, template}` ("default" wins). */
function pickTemplate(file: string, v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const entries = v.filter((e): e is { name?: unknown; template: string } => !!e && typeof e === 'object' && typeof (e as { template?: unknown }).template === 'string');
    if (entries.length !== v.length || entries.length === 0) {
      throw new LoadError(file, 'chat_template to be a string or a list of {"name", "template"}', JSON.stringify(v).slice(0, 120));
    }
    return (entries.find((e) => e.name === 'default') ?? entries[0]).template;
  }
  throw new LoadError(file, 'chat_template to be a string or a list of {"name", "template"}', typeof v);
}

/**
 * The chat template of a model folder with its bos/eos strings: `tokenizer_config.json`'s `chat_template`, else
 * `chat_template.jinja` or `chat_template.json` (newer transformers layouts). Null when the folder has none.
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplateInfo | null> {
  const configFile = join(dir, 'tokenizer_config.json');
  const config = readOptionalJsonObject(configFile, 'tokenizer-config');
  const specialMap = readOptionalJsonObject(join(dir, 'special_tokens_map.json'), 'json-config');
  let template = pickTemplate(configFile, config?.chat_template);
  if (template === undefined) {
    const jinjaFile = join(dir, 'chat_template.jinja');
    if (pathExists(jinjaFile)) {
      template = readTextFile(jinjaFile, 'template');
    } else {
      const jsonFile = join(dir, 'chat_template.json');
      const j = readOptionalJsonObject(jsonFile, 'json-config');
      template = pickTemplate(jsonFile, j?.chat_template);
    }
  }
  if (template === undefined) return null;
  const out: ChatTemplateInfo = { template };
  const bos = tokenContent(config?.bos_token) ?? tokenContent(specialMap?.bos_token);
  const eos = tokenContent(config?.eos_token) ?? tokenContent(specialMap?.eos_token);
  if (bos !== undefined) out.bos_token = bos;
  if (eos !== undefined) out.eos_token = eos;
  return out;
}

/**
 * The bos/eos/pad/mask token strings of a model folder, from `tokenizer_config.json`, falling back to
 * `special_tokens_map.json`. LLaDA declares no `mask_token`; its mask `<|mdm_mask|>` is taken from
 * `added_tokens_decoder` when present. Ids are resolved by the caller through `Tokenizer.tokenToId`.
 */
export async function loadSpecialTokens(dir: string): Promise<SpecialTokens> {
  const config = readOptionalJsonObject(join(dir, 'tokenizer_config.json'), 'tokenizer-config');
  const specialMap = readOptionalJsonObject(join(dir, 'special_tokens_map.json'), 'json-config');
  const get = (k: string): string | undefined => tokenContent(config?.[k]) ?? tokenContent(specialMap?.[k]);
  const out: SpecialTokens = {};
  const bos = get('bos_token');
  const eos = get('eos_token');
  const pad = get('pad_token');
  let mask = get('mask_token');
  if (mask === undefined) {
    const dec = config?.added_tokens_decoder;
    if (dec && typeof dec === 'object' && Object.values(dec).some((t) => tokenContent(t) === '<|mdm_mask|>')) mask = '<|mdm_mask|>';
  }
  if (bos !== undefined) out.bos = bos;
  if (eos !== undefined) out.eos = eos;
  if (pad !== undefined) out.pad = pad;
  if (mask !== undefined) out.mask = mask;
  return out;
}
