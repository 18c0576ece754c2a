/**
 * A diffusion family: what differs between LLaDA and Dream outside the network itself (models/llada.ts,
 * models/dream.ts) — which positions may commit at a step and how many (the schedule: LLaDA's semi-autoregressive
 * blocks, Dream's timesteps), which model row predicts a position (Dream's shifted logits), how candidates are scored
 * and chosen (the family's sampler: sampler/llada.ts, sampler/dream.ts), its official defaults and which options
 * apply. The denoising loop (engine/generate.ts), the options and the acceleration methods ask the family; they name
 * none.
 *
 * May import: load/ (types), sampler/. Imported by engine/, cli/, server/.
 */
import type { Architecture } from '../load/config.js';
import type { RowStats } from '../sampler/confidence.js';
import type { GenerateOptions } from '../sampler/options.js';
import type { Selection } from '../sampler/pick.js';
import type { Rng } from '../sampler/rng.js';

/** An option value the family refuses: which option, and why (engine/options.ts turns it into an OptionError). */
export interface OptionProblem {
  readonly option: string;
  readonly detail: string;
}

/** One sequence of a request's canvas as the family sees it: prompt (+ pads) then the generated region. */
export interface CanvasSequence {
  readonly tokens: Int32Array; // [len], written by the loop as tokens commit
  readonly genStart: number;
}

export interface SamplerSetup {
  readonly options: GenerateOptions;
  readonly sequences: readonly CanvasSequence[];
  readonly maskId: number;
  readonly eosId: number;
  /** End of an assistant turn; null when the vocabulary lacks it. */
  readonly eotId: number | null;
  readonly vocabSize: number;
  /** One PRNG per sequence. */
  readonly rngs: readonly Rng[];
}

/** The logits of one active sequence's candidate rows (its masked positions before `candidateEnd`, ascending). */
export interface CandidateLogits {
  readonly seq: number;
  readonly logits: Float32Array; // [n, V]
  readonly stats: RowStats | null;
  readonly n: number;
}

/** One request's selection rules, with the per-sequence schedule state they keep. */
export interface FamilySampler {
  /** Masked positions of sequence `seq` before this (exclusive) may commit this step. */
  candidateEnd(seq: number): number;
  /** Whether kernel row statistics can stand in for the sampler's softmax under these options (null: they cannot). */
  readonly rowStats: { readonly entropy: boolean } | null;
  /** The commits of one step: a Selection (rows index the candidates) per entry of `rows`. */
  select(step: number, rows: readonly CandidateLogits[]): Selection[];
  /** After a step's commits: advance sequence `seq`'s schedule; true once it is spent (the sequence ends). */
  advance(seq: number): boolean;
}

export interface DiffusionFamily {
  /** config.json's model family (load/config.ts). */
  readonly arch: Architecture;
  /** Its name in messages and help ("LLaDA"). */
  readonly label: string;
  /** The token closing an assistant turn in its chat template: an end token besides EOS. */
  readonly turnEndToken: string;
  /** The config.json key that gives the embedding's row count (for messages about the tokenizer). */
  readonly embeddingRowsKey: string;
  /** Special-token ids load/config.ts reads from generation_config.json before config.json. */
  readonly idsFromGenerationConfig: readonly string[];
  /** A prompt must hold at least one token (the shifted logits read the row before the first position). */
  readonly needsPrompt: boolean;
  /** Semi-autoregressive blocks: the canvas is denoised block after block. */
  readonly usesBlocks: boolean;
  /** Steps allowed beyond the gen length (null: at most one step per position). */
  readonly maxSteps: number | null;
  /** Generation options only this family's sampler reads (the others ignore them; help marks them). */
  readonly options: readonly (keyof GenerateOptions)[];
  /** generation_config.json keys that give an option's default. */
  readonly generationConfig: Readonly<Partial<Record<keyof GenerateOptions, string>>>;
  /** Defaults of acceleration knobs, by method (e.g. DyLLM's τ). */
  readonly accelDefaults: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The model row whose logits predict canvas position `pos`. */
  logitRow(pos: number): number;
  /** The schedule's shape: gen length, steps and block length (`given`: the block length as the user set it). */
  checkSchedule(genLength: number, steps: number, blockLength: number, given: number | undefined): OptionProblem | null;
  /** Checks across resolved options only this family has. */
  checkOptions(o: GenerateOptions): OptionProblem | null;
  /** One request's selection rules (checks the sampler's options first). */
  sampler(setup: SamplerSetup): FamilySampler;
}
