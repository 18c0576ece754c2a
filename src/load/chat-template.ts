/**
 * Chat templates (Jinja, from tokenizer_config.json) rendered with @huggingface/jinja, as transformers'
 * `apply_chat_template(..., tokenize=False)` does (docs/models.md §1.5, §2.5). The rendered string is then encoded
 * with add_special_tokens=False: the template already holds BOS / role markers.
 *
 * A template is code from the model folder, so it is bounded: its source (MAX_TEMPLATE_SOURCE_CHARS), its run time
 * and its output (TemplateLimits; it runs in a helper thread, template-sandbox.ts). A template that breaks a limit
 * is a LoadError naming where the template came from; one that breaks it on a probe render at load stops the load.
 */
import { join } from 'node:path';
import { ConfigError, LoadError } from './errors.js';
import { FILE_LIMITS, formatBytes, pathExists, readOptionalJsonObject, readTextFile, type ModelFiles } from './files.js';
import { DEFAULT_TEMPLATE_LIMITS, MAX_TEMPLATE_TIMEOUT_MS, renderInSandbox, type TemplateLimits } from './template-sandbox.js';
import { tokenContent } from './tokenizer.js';

export { DEFAULT_TEMPLATE_LIMITS, stopTemplateHelper, type TemplateLimits } from './template-sandbox.js';

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
  /** Where the template came from, for messages: `<dir>/tokenizer_config.json (chat_template)`, a .jinja path. */
  source?: string;
  /** The limits it was checked with at load and is rendered with (default: templateLimits()). */
  limits?: TemplateLimits;
}

export interface SpecialTokens {
  bos?: string;
  eos?: string;
  pad?: string;
  mask?: string;
}

/** Why a template was refused: the LoadError a render throws, with the reason as data. */
export class ChatTemplateError extends LoadError {
  constructor(
    readonly reason: 'source' | 'parse' | 'render' | 'size' | 'timeout' | 'clone' | 'start',
    file: string,
    expected: string,
    found: string,
    hint?: string,
  ) {
    super(file, expected, found, hint);
  }
}

/** Longest template source accepted (real chat templates are a few KiB; tool-use ones up to ~20 KiB). */
export const MAX_TEMPLATE_SOURCE_CHARS = FILE_LIMITS.template;

export interface RenderOptions {
  /** What to call the template in errors (default "chat_template"). */
  readonly name?: string;
  /** Overrides of the default limits (templateLimits()). */
  readonly limits?: Partial<TemplateLimits>;
}

/**
 * The default limits: DEFAULT_TEMPLATE_LIMITS, with the time limit taken from `DYLLM_TEMPLATE_TIMEOUT_MS` when set
 * (milliseconds, 1 to 60000).
 */
export function templateLimits(overrides: Partial<TemplateLimits> = {}, env: NodeJS.ProcessEnv = process.env): TemplateLimits {
  let timeoutMs = DEFAULT_TEMPLATE_LIMITS.timeoutMs;
  const fromEnv = env.DYLLM_TEMPLATE_TIMEOUT_MS;
  if (fromEnv !== undefined && fromEnv !== '') {
    const v = Number(fromEnv);
    if (!/^\d+$/.test(fromEnv.trim()) || !Number.isSafeInteger(v) || v < 1 || v > MAX_TEMPLATE_TIMEOUT_MS) {
      throw new ConfigError(`DYLLM_TEMPLATE_TIMEOUT_MS: expected an integer number of milliseconds in [1, ${MAX_TEMPLATE_TIMEOUT_MS}], found ${JSON.stringify(fromEnv)}`);
    }
    timeoutMs = v;
  }
  const out = { ...DEFAULT_TEMPLATE_LIMITS, timeoutMs, ...withoutUndefined(overrides) };
  if (!Number.isSafeInteger(out.timeoutMs) || out.timeoutMs < 1 || out.timeoutMs > MAX_TEMPLATE_TIMEOUT_MS) {
    throw new ConfigError(`template timeoutMs: expected an integer in [1, ${MAX_TEMPLATE_TIMEOUT_MS}], found ${JSON.stringify(out.timeoutMs)}`);
  }
  if (!Number.isSafeInteger(out.maxOutputChars) || out.maxOutputChars < 1 || out.maxOutputChars > 256 * 1024 * 1024) {
    throw new ConfigError(`template maxOutputChars: expected an integer in [1, ${256 * 1024 * 1024}], found ${JSON.stringify(out.maxOutputChars)}`);
  }
  return Object.freeze(out);
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkSource(name: string, template: string): void {
  if (template.length > MAX_TEMPLATE_SOURCE_CHARS) {
    throw new ChatTemplateError('source', name, `a chat template of at most ${MAX_TEMPLATE_SOURCE_CHARS} characters (${formatBytes(MAX_TEMPLATE_SOURCE_CHARS)})`, `${template.length} characters`, 'real chat templates are a few KiB');
  }
}

/**
 * Renders `template` for `messages` with transformers' variables (`messages`, `bos_token`, `eos_token`,
 * `add_generation_prompt`, plus any extra `vars`, e.g. `tools`). Jinja runs with trim_blocks and lstrip_blocks, as
 * in transformers. Errors raised by the template (`raise_exception`) or by rendering, a render that runs past the
 * time limit and an output over the size limit are LoadErrors naming the template. Synchronous: the render runs
 * in a helper thread and this thread waits for it (template-sandbox.ts).
 */
export function renderChatTemplate(template: string, messages: readonly ChatMessage[], vars: ChatTemplateVars = {}, opts: RenderOptions = {}): string {
  const name = opts.name ?? 'chat_template';
  checkSource(name, template);
  const limits = templateLimits(opts.limits);
  const r = renderInSandbox(template, { add_generation_prompt: false, ...vars, messages }, limits);
  if (r.ok) return r.text;
  switch (r.kind) {
    case 'parse':
      throw new ChatTemplateError('parse', name, 'a Jinja template that @huggingface/jinja can parse', `a parse error: ${r.message}`);
    case 'render':
      throw new ChatTemplateError('render', name, 'a template that renders these messages', `an error: ${r.message}`, 'check bos_token/eos_token and the message roles');
    case 'size':
      throw new ChatTemplateError('size', name, `a rendered prompt of at most ${limits.maxOutputChars} characters`, `${r.length} characters`, 'the template repeats its output; fix the template');
    case 'timeout':
      throw new ChatTemplateError(
        'timeout',
        name,
        `a template that renders within ${limits.timeoutMs} ms`,
        'a render that had not finished (stopped: it loops too long or ran out of memory)',
        'fix the template, or raise DYLLM_TEMPLATE_TIMEOUT_MS',
      );
    case 'clone':
      throw new ChatTemplateError('clone', name, 'messages and template variables that are plain data', `${r.message}`);
    case 'start':
      throw new ChatTemplateError('start', name, 'a template helper thread', r.message, 'the machine may be overloaded; retry');
  }
}

/**
 * The load-time check of a template: it must parse, and a probe render (one user message "Hi", with a generation
 * prompt) must finish within the limits. The probe may fail with a template error (a template may insist on a
 * system message, say): that is reported per request, not at load.
 */
export function checkChatTemplate(info: ChatTemplateInfo): void {
  const name = info.source ?? 'chat_template';
  try {
    renderChatTemplate(info.template, [{ role: 'user', content: 'Hi' }], { bos_token: info.bos_token, eos_token: info.eos_token, add_generation_prompt: true }, { name, limits: info.limits });
  } catch (e) {
    if (e instanceof ChatTemplateError && e.reason === 'render') return;
    throw e;
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
 * `chat_template.jinja` or `chat_template.json` (newer transformers layouts). Null when the folder has none. The
 * template is checked (checkChatTemplate) with `limits` (default templateLimits()).
 */
export async function loadChatTemplate(dir: string, opts: { limits?: Partial<TemplateLimits>; files?: ModelFiles } = {}): Promise<ChatTemplateInfo | null> {
  const files = opts.files;
  const configFile = join(dir, 'tokenizer_config.json');
  const config = readOptionalJsonObject(configFile, 'tokenizer-config', files);
  const specialMap = readOptionalJsonObject(join(dir, 'special_tokens_map.json'), 'json-config', files);
  let template = pickTemplate(configFile, config?.chat_template);
  let source = `${configFile} (chat_template)`;
  if (template === undefined) {
    const jinjaFile = join(dir, 'chat_template.jinja');
    if (pathExists(jinjaFile, files)) {
      template = readTextFile(jinjaFile, 'template', files);
      source = jinjaFile;
    } else {
      const jsonFile = join(dir, 'chat_template.json');
      const j = readOptionalJsonObject(jsonFile, 'json-config', files);
      template = pickTemplate(jsonFile, j?.chat_template);
      source = `${jsonFile} (chat_template)`;
    }
  }
  if (template === undefined) return null;
  checkSource(source, template);
  const out: ChatTemplateInfo = { template, source, limits: templateLimits(opts.limits) };
  const bos = tokenContent(config?.bos_token) ?? tokenContent(specialMap?.bos_token);
  const eos = tokenContent(config?.eos_token) ?? tokenContent(specialMap?.eos_token);
  if (bos !== undefined) out.bos_token = bos;
  if (eos !== undefined) out.eos_token = eos;
  checkChatTemplate(out);
  return out;
}

/** The file that defines a special token string (`bos_token`, …): tokenizer_config.json, else special_tokens_map.json. */
export function specialTokenFile(dir: string, key: string, files?: ModelFiles): string {
  const configFile = join(dir, 'tokenizer_config.json');
  const config = readOptionalJsonObject(configFile, 'tokenizer-config', files);
  return tokenContent(config?.[key]) !== undefined ? configFile : join(dir, 'special_tokens_map.json');
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
