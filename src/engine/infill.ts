/**
 * Infilling: a template of fixed text with holes, `The capital of France is <mask:4>. Its river is <mask:3>.`,
 * becomes one canvas in which only the holes (N mask tokens each) are denoised. The prompt is the text before the
 * first hole, encoded raw (no chat template); the generated region is everything from the first hole on, its fixed
 * text pre-committed (GenerateRequest.fixed). The family's sampler and any acceleration method run unchanged: they
 * already work on "every masked position", as upstream does — LLaDA's generate.py takes `mask_index = (x ==
 * mask_id)` over the whole sequence and Dream's `_sample` likewise, so masks anywhere are filled, pre-committed
 * tokens never change, and LLaDA's per-block transfer counts count only the block's masks.
 *
 * Defaults: the gen length is the template's (set by it: giving one is refused); steps default to the number of
 * masks (one commit per step; rounded up to a multiple of the LLaDA blocks when a block length is given).
 */
import type { ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { Tokenizer } from '../load/tokenizer.js';
import type { GenerateOptionsInput } from '../sampler/options.js';
import type { SpecialIds } from './pipeline.js';
import { OptionError } from './schema.js';

/** Most mask tokens one template may hold (all holes together). */
export const MAX_INFILL_MASKS = 1024;
/** Longest template, in characters, before anything is tokenised. */
export const MAX_INFILL_CHARS = 65_536;

/** A template piece: fixed text, or a hole of `hole` masks. */
export type InfillPart = { readonly text: string } | { readonly hole: number };

/**
 * The template's pieces. `what` names the input in errors as its surface calls it (`--infill`, `infill`,
 * `dyllm.infill`). Every `<mask:…>` must be a hole of 1..1024 masks; at least one hole; at most 1024 masks in all.
 */
export function parseInfill(template: unknown, what: string): InfillPart[] {
  if (typeof template !== 'string') throw new ConfigError(`${what}: expected a template string with <mask:N> holes, found ${template === null ? 'null' : typeof template}`);
  if (template.length > MAX_INFILL_CHARS) throw new ConfigError(`${what}: expected a template of at most ${MAX_INFILL_CHARS} characters, found ${template.length}`);
  const parts: InfillPart[] = [];
  let total = 0;
  let last = 0;
  const re = /<mask:([^>]{0,16})>/g;
  for (let m = re.exec(template); m; m = re.exec(template)) {
    const n = /^\d{1,7}$/.test(m[1]) ? Number(m[1]) : NaN;
    if (!(n >= 1 && n <= MAX_INFILL_MASKS)) throw new ConfigError(`${what}: expected <mask:N> with N in [1, ${MAX_INFILL_MASKS}], found "${m[0]}"`);
    total += n;
    if (total > MAX_INFILL_MASKS) throw new ConfigError(`${what}: expected at most ${MAX_INFILL_MASKS} masks in all holes, found ${total} by "${m[0]}" (shorten the holes)`);
    if (m.index > last) parts.push({ text: template.slice(last, m.index) });
    parts.push({ hole: n });
    last = m.index + m[0].length;
  }
  if (total === 0) throw new ConfigError(`${what}: expected at least one <mask:N> hole, found none (write e.g. "The capital of France is <mask:4>.")`);
  if (last < template.length) parts.push({ text: template.slice(last) });
  return parts;
}

/** A template as a canvas: the prompt ids, the generated region's ids (masks at the holes) and where the holes are. */
export interface InfillCanvas {
  readonly parts: readonly InfillPart[];
  readonly prompt: number[];
  readonly region: number[];
  /** Each hole's offset and length in the region, in template order. */
  readonly holes: readonly { readonly start: number; readonly length: number }[];
  readonly masks: number;
}

/** Encode the template's pieces (raw, each on its own) around the holes; the fixed text may not hold a mask token itself. */
export function encodeInfill(p: { tokenizer: Tokenizer; ids: Pick<SpecialIds, 'mask'>; config: Pick<ModelConfig, 'maxSequenceLength'> }, parts: readonly InfillPart[], what: string): InfillCanvas {
  const prompt: number[] = [];
  const region: number[] = [];
  const holes: { start: number; length: number }[] = [];
  for (const part of parts) {
    if ('hole' in part) {
      holes.push({ start: region.length, length: part.hole });
      for (let i = 0; i < part.hole; i++) region.push(p.ids.mask);
      continue;
    }
    const ids = p.tokenizer.encode(part.text);
    if (ids.includes(p.ids.mask)) {
      throw new ConfigError(`${what}: the fixed text holds the mask token ${JSON.stringify(p.tokenizer.idToToken(p.ids.mask) ?? String(p.ids.mask))}; write holes as <mask:N>`);
    }
    (holes.length === 0 ? prompt : region).push(...ids);
  }
  const total = prompt.length + region.length;
  if (total > p.config.maxSequenceLength) {
    throw new ConfigError(`${what}: the template is ${total} tokens, more than the model's maximum sequence length ${p.config.maxSequenceLength}`);
  }
  return { parts, prompt, region, holes, masks: holes.reduce((n, h) => n + h.length, 0) };
}

/**
 * The generation options of an infill: the gen length is the region's (a given one is refused, naming the option as
 * each surface does), and steps default to the number of masks (a multiple of the blocks when a block length is set).
 */
export function infillOptions(input: GenerateOptionsInput, c: Pick<InfillCanvas, 'region' | 'masks'>): GenerateOptionsInput {
  const G = c.region.length;
  refuseInfillGenLength(input);
  // Stopping at an end token fills the rest of the region with end tokens (engine/canvas.ts finishIfDone): the
  // fixed text after a hole would be overwritten and later holes left masked.
  if (input.stopAtEos === true) throw new OptionError('stopAtEos', 'an infill fills every hole and keeps the fixed text after an end token; leave it off');
  if (input.steps !== undefined) return { ...input, genLength: G };
  const bl = input.blockLength;
  const blocks = typeof bl === 'number' && bl >= 1 && G % bl === 0 ? G / bl : 1;
  return { ...input, genLength: G, steps: Math.min(G, Math.ceil(c.masks / blocks) * blocks) };
}

/** An infill's gen length is its template's: a given one is an OptionError on genLength (named per surface). */
export function refuseInfillGenLength(input: GenerateOptionsInput): void {
  if (input.genLength !== undefined) throw new OptionError('genLength', 'set by the infill template (its positions from the first hole on); leave it unset');
}

/** The filled template (the fixed text as written, each hole's text in its place) and each hole's own text. */
export function fillTemplate(c: Pick<InfillCanvas, 'parts' | 'holes'>, region: ArrayLike<number>, decode: (ids: number[]) => string): { text: string; fills: string[] } {
  const fills = c.holes.map((h) => decode(Array.from({ length: h.length }, (_, i) => region[h.start + i])));
  let k = 0;
  const text = c.parts.map((part) => ('hole' in part ? fills[k++] : part.text)).join('');
  return { text, fills };
}

/**
 * The filled template up to the first position of the region still masked: the fixed text before it and the holes
 * filled so far (a hole partly filled contributes its committed prefix). Each hole is decoded on its own, as in
 * fillTemplate, so the text only grows as positions commit and ends as a prefix of fillTemplate's text (what a
 * stream sends as deltas).
 */
export function filledPrefix(c: Pick<InfillCanvas, 'parts' | 'holes'>, region: ArrayLike<number>, maskId: number, decode: (ids: number[]) => string): string {
  let out = '';
  let k = 0;
  for (const part of c.parts) {
    if (!('hole' in part)) {
      out += part.text;
      continue;
    }
    const h = c.holes[k++];
    const end = firstMask(region, h.start, h.start + h.length, maskId);
    out += decode(Array.from({ length: end - h.start }, (_, i) => region[h.start + i]));
    if (end < h.start + h.length) return out;
  }
  return out;
}

function firstMask(region: ArrayLike<number>, from: number, to: number, maskId: number): number {
  for (let i = from; i < to; i++) if (region[i] === maskId) return i;
  return to;
}
