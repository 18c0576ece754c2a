/**
 * Messages between the HTTP thread (app.ts), the engine worker (worker.ts) and the tokenizer worker
 * (tokenizer-worker.ts). The main thread validates requests and speaks HTTP; the tokenizer worker renders the chat
 * template and encodes prompts (so a long prompt never stalls the stepping loop); the engine worker owns the model,
 * schedules and decodes. Plain data only (structured clone); typed arrays are copied.
 */
import type { AccelOptions } from '../engine/accel.js';
import type { GenerateOptions } from '../engine/options.js';
import type { BackendName } from '../kernels/select.js';
import type { Architecture, GenerationDefaults } from '../load/config.js';
import type { QuantOption } from '../models/load-model.js';

export interface WorkerConfig {
  readonly modelDir: string;
  readonly backend: BackendName;
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
  readonly promptParam: 'messages' | 'prompt';
  readonly options: GenerateOptions;
  readonly accel: AccelOptions;
  /** Send a StepMsg per step (ordinary streaming needs the committed-prefix text). */
  readonly stream: boolean;
  /** Add the canvas pieces (denoise streaming extension). */
  readonly streamSteps: boolean;
  readonly testFault: TestFault | null;
}

/** A prompt as the request gave it: chat messages (the template is applied) or raw text. */
export type PromptSpec = { readonly kind: 'chat'; readonly messages: readonly PromptMessage[] } | { readonly kind: 'text'; readonly text: string };

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
  readonly tokens: number[];
}

export interface EncodeErrorMsg {
  readonly type: 'encode-error';
  readonly id: number;
  /** 'invalid' = the prompt's fault (a chat template that refuses these messages, no template): 400. */
  readonly kind: 'invalid' | 'internal';
  readonly message: string;
}

export type FromTokenizer = TokenizerReadyMsg | FatalMsg | EncodedMsg | EncodeErrorMsg;
