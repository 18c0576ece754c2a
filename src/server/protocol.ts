/**
 * Messages between the HTTP thread (app.ts), the engine worker (worker.ts) and the tokenizer worker
 * (tokenizer-worker.ts). The main thread validates requests and speaks HTTP; the tokenizer worker renders the chat
 * template and encodes prompts (so a long prompt never stalls the stepping loop); the engine worker owns the model,
 * schedules and decodes. Plain data only (structured clone); typed arrays are copied.
 */
import type { AccelOptions } from '../engine/accel.js';
import type { InfillPart } from '../engine/infill.js';
import type { GenerateOptions } from '../engine/options.js';
import type { BackendName } from '../kernels/select.js';
import type { Architecture, GenerationDefaults } from '../load/config.js';
import type { QuantOption } from '../models/load-model.js';

export interface WorkerConfig {
  readonly modelDir: string;
  /** 'webgpu': the pipeline's model on the `webgpu` package's adapter (server/gpu-device.ts). */
  readonly backend: BackendName | 'webgpu';
  /** Load-time quantisation of the linear layers (docs/quantization.md). */
  readonly quant?: QuantOption;
  /** Requests stepped together (the rest wait in the worker's queue). */
  readonly maxBatch: number;
  readonly maxPromptTokens: number;
  /** Honour SubmitMsg.testFault (only when DYLLM_TEST_FAULTS is set; see faults.ts). */
  readonly testFaults: boolean;
}

/** What a test can make happen to one request or to a worker (faults.ts); never set for users. */
export type TestFault = 'throw-step' | 'throw-forward' | 'exit' | 'uncaught' | 'tokenizer-exit';

/** A chat message as the chat template sees it. */
export interface PromptMessage {
  readonly role: string;
  readonly content: string;
}

export interface SubmitMsg {
  readonly type: 'submit';
  readonly id: number;
  /** The prompt's token ids (the tokenizer worker encoded them). */
  readonly tokens: readonly number[];
  /** The request field the prompt came from (named in an error about it). */
  readonly promptParam: 'messages' | 'prompt' | 'dyllm.infill';
  /** Infilling (`dyllm.infill`): the generated region's pre-committed ids and holes; the answer is the filled template. */
  readonly infill?: InfillJob | null;
  readonly options: GenerateOptions;
  readonly accel: AccelOptions;
  /** Send a StepMsg per step (ordinary streaming needs the committed-prefix text). */
  readonly stream: boolean;
  /** Add the canvas pieces (denoise streaming extension). */
  readonly streamSteps: boolean;
  /** Choices denoised together in one run (n copies of the prompt; sequence b draws from seed + b). */
  readonly n: number;
  /** Stop strings: each choice's answer is cut at the first one; the run stops once every choice is stopped or done. */
  readonly stop: readonly string[];
  /** Report each answer token's logprob with this many top alternatives; null = off. */
  readonly logprobs: number | null;
  readonly testFault: TestFault | null;
}

/**
 * A prompt as the request gave it: chat messages (the template is applied), raw text, or an infill template
 * (`dyllm.infill`; after the chat messages' generation prompt when `messages` is set).
 */
export type PromptSpec =
  | { readonly kind: 'chat'; readonly messages: readonly PromptMessage[] }
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'infill'; readonly template: string; readonly messages: readonly PromptMessage[] | null };

/** An infill template as the tokenizer worker encoded it (engine/infill.ts InfillCanvas, less the prompt ids). */
export interface EncodedInfill {
  /** The generated region: the fixed text's ids, the mask id at the holes. */
  readonly region: number[];
  /** Each hole's offset and length in the region. */
  readonly holes: { readonly start: number; readonly length: number }[];
  readonly masks: number;
}

/** What the engine worker needs of an infill: the region to pre-commit and the template to fill. */
export interface InfillJob extends EncodedInfill {
  readonly parts: readonly InfillPart[];
}

export interface CancelMsg {
  readonly type: 'cancel';
  readonly id: number;
  readonly reason: 'disconnect' | 'timeout' | 'shutdown';
}

export type ToWorker = SubmitMsg | CancelMsg;

export interface ReadyMsg {
  readonly type: 'ready';
  readonly arch: Architecture;
  readonly generation: GenerationDefaults;
  readonly backend: string;
  readonly hasChatTemplate: boolean;
  /** Kernel threads the backend runs (native: the addon's pool; reference: 1). */
  readonly threads: number;
  /** Bounds of the option schema (engine/schema.ts) that depend on the model. */
  readonly vocabSize: number;
  readonly maxSequenceLength: number;
}

export interface FatalMsg {
  readonly type: 'fatal';
  readonly message: string;
}

/** The request passed the worker's checks (prompt encoded, run built) and is queued. */
export interface AcceptedMsg {
  readonly type: 'accepted';
  readonly id: number;
  readonly promptTokens: number;
}

/** One answer token's log-probability at its commit step (OpenAI's logprobs content entry, made by the worker). */
export interface TokenLogprobMsg {
  /** The token's text (its piece, decoded alone). */
  readonly token: string;
  /** Its bytes (a byte-level piece of a multi-byte character is not valid UTF-8 alone). */
  readonly bytes: number[];
  readonly logprob: number;
}

export interface LogprobMsg extends TokenLogprobMsg {
  /** The most likely tokens of the same row, most likely first. */
  readonly top: TokenLogprobMsg[];
}

/** One choice's part of a step. */
export interface StepChoiceMsg {
  readonly index: number;
  /**
   * The answer decoded from the longest committed prefix of the canvas, cut at the first end token and at the
   * first stop string; a trailing incomplete UTF-8 sequence and a trailing part of a stop string are held back.
   * Only ever grows: what the main thread streams as deltas.
   */
  readonly prefixText: string;
  /** Canvas positions in [0, G) committed this step. */
  readonly committed: number[];
  /** Positions in [0, G) whose rows the accelerator recomputed this step (null for dense steps). */
  readonly recomputed: number[] | null;
  /** Per position: the token's text, or null while masked (streamSteps only). */
  readonly pieces: (string | null)[] | null;
  /** Per position: whether the token is a special token (end of text/turn, padding, …) (streamSteps only). */
  readonly special: boolean[] | null;
  /** Per position: whether the token ends the answer (end of text / end of turn) (streamSteps only). */
  readonly end: boolean[] | null;
  /** Per position: token id (mask id while masked) (streamSteps only). */
  readonly tokens: number[] | null;
  /** Logprobs of the answer tokens that entered `prefixText` this step (null when not asked for). */
  readonly logprobs: LogprobMsg[] | null;
}

export interface StepMsg {
  readonly type: 'step';
  readonly id: number;
  readonly step: number;
  readonly maxSteps: number;
  readonly forwardMs: number;
  /** FFN rows recomputed ÷ dense this step (1 for dense steps). */
  readonly ffnFraction: number;
  /** The choices still denoising (a choice that is done or stopped sends no more steps). */
  readonly choices: StepChoiceMsg[];
}

export interface DoneChoiceMsg {
  readonly index: number;
  /** The answer: cut at the first end token and at the first stop string, special tokens dropped. */
  readonly text: string;
  readonly tokens: number[];
  /** Infilling: each hole's text, in template order (null otherwise). */
  readonly fills: string[] | null;
  readonly finishReason: 'stop' | 'length' | 'cancelled';
  /** Logprobs of every answer token (those whose text is in `text`); null when not asked for. */
  readonly logprobs: LogprobMsg[] | null;
}

export interface DoneMsg {
  readonly type: 'done';
  readonly id: number;
  readonly choices: DoneChoiceMsg[];
  readonly promptTokens: number;
  /** Positions generated over all choices (G each, or up to the end token with stop_at_eos). */
  readonly completionTokens: number;
  readonly steps: number;
  readonly nfe: number;
  /** Admission to the last step. */
  readonly elapsedMs: number;
  readonly queueMs: number;
  readonly salientFraction: number;
}

export interface ErrorMsg {
  readonly type: 'error';
  readonly id: number;
  /** 'invalid' = the request's fault (400); 'internal' = ours (500); 'worker' = the worker running it died (503). */
  readonly kind: 'invalid' | 'internal' | 'worker';
  readonly message: string;
  readonly param: string | null;
}

/** One scheduler tick: one merged dense forward (and the accelerated forwards) over the live requests. */
export interface TickMsg {
  readonly type: 'tick';
  readonly ms: number;
  readonly live: number;
  readonly waiting: number;
  /** Requests in the merged dense forward. */
  readonly merged: number;
  readonly generatedTokens: number;
}

export type FromWorker = ReadyMsg | FatalMsg | AcceptedMsg | StepMsg | DoneMsg | ErrorMsg | TickMsg;

export interface TokenizerConfig {
  readonly modelDir: string;
  readonly testFaults: boolean;
}

export interface EncodeMsg {
  readonly type: 'encode';
  readonly id: number;
  readonly prompt: PromptSpec;
  readonly testFault: TestFault | null;
}

export interface TokenizerReadyMsg {
  readonly type: 'ready';
  readonly hasChatTemplate: boolean;
}

export interface EncodedMsg {
  readonly type: 'encoded';
  readonly id: number;
  /** The prompt's ids (an infill's: the chat prompt if any, then its text before the first hole). */
  readonly tokens: number[];
  /** An infill's region and holes (null for other prompts). */
  readonly infill: EncodedInfill | null;
}

export interface EncodeErrorMsg {
  readonly type: 'encode-error';
  readonly id: number;
  /** 'invalid' = the prompt's fault (a chat template that refuses these messages, no template): 400. */
  readonly kind: 'invalid' | 'internal';
  readonly message: string;
}

export type FromTokenizer = TokenizerReadyMsg | FatalMsg | EncodedMsg | EncodeErrorMsg;
