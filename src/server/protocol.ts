/**
 * Messages between the HTTP thread (app.ts) and the engine worker (worker.ts). The main thread validates
 * requests and speaks HTTP; the worker owns the pipeline, tokenises, schedules and decodes. Plain data only
 * (structured clone); typed arrays are copied.
 */
import type { AccelOptions } from '../engine/accel.js';
import type { GenerateOptions } from '../engine/options.js';
import type { BackendName } from '../kernels/select.js';
import type { Architecture, GenerationDefaults } from '../load/config.js';

export interface WorkerConfig {
  readonly modelDir: string;
  readonly backend: BackendName;
  /** Requests stepped together (the rest wait in the worker's queue). */
  readonly maxBatch: number;
  readonly maxPromptTokens: number;
}

/** A chat message as the chat template sees it. */
export interface PromptMessage {
  readonly role: string;
  readonly content: string;
}

export interface SubmitMsg {
  readonly type: 'submit';
  readonly id: number;
  /** Chat (template applied) or raw text. */
  readonly prompt: { readonly kind: 'chat'; readonly messages: readonly PromptMessage[] } | { readonly kind: 'text'; readonly text: string };
  readonly options: GenerateOptions;
  readonly accel: AccelOptions;
  /** Send a StepMsg per step (ordinary streaming needs the committed-prefix text). */
  readonly stream: boolean;
  /** Add the canvas pieces (denoise streaming extension). */
  readonly streamSteps: boolean;
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

export interface StepMsg {
  readonly type: 'step';
  readonly id: number;
  readonly step: number;
  readonly maxSteps: number;
  /** The answer decoded from the longest committed prefix of the canvas, cut at the first end token. */
  readonly prefixText: string;
  /** Canvas positions in [0, G) committed this step. */
  readonly committed: number[];
  /** Positions in [0, G) whose rows the accelerator recomputed this step (null for dense steps). */
  readonly recomputed: number[] | null;
  /** Per position: the token's text, or null while masked (streamSteps only). */
  readonly pieces: (string | null)[] | null;
  /** Per position: token id (mask id while masked) (streamSteps only). */
  readonly tokens: number[] | null;
  readonly forwardMs: number;
  /** FFN rows recomputed ÷ dense this step (1 for dense steps). */
  readonly ffnFraction: number;
}

export interface DoneMsg {
  readonly type: 'done';
  readonly id: number;
  readonly text: string;
  readonly tokens: number[];
  readonly finishReason: 'stop' | 'length' | 'cancelled';
  readonly promptTokens: number;
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
  /** 'invalid' = the request's fault (400); 'internal' = ours (500). */
  readonly kind: 'invalid' | 'internal';
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
