/** Messages between the /local page (src/server/static/local.html) and its engine worker (src/web/worker.ts). */

/** The page's request: generation options as the CLI and the HTTP API name them. */
export interface LocalGenerate {
  readonly type: 'generate';
  readonly prompt: string;
  readonly chat: boolean;
  readonly genLength: number;
  readonly steps: number;
  readonly blockLength: number;
  readonly temperature: number;
  /** 'dense' or 'dyllm' (with `threshold`, τ). */
  readonly accel: 'dense' | 'dyllm';
  readonly threshold?: number;
}

export type ToWorker =
  /** The model's files (name → bytes), fetched or out of Cache Storage; `name` names the folder in messages. */
  | { readonly type: 'load'; readonly name: string; readonly files: Readonly<Record<string, ArrayBuffer>> }
  | LocalGenerate
  | { readonly type: 'stop' };

/** One step as the page draws it: per canvas position the token text (null while masked), as the web view does. */
export interface LocalStep {
  readonly type: 'step';
  readonly step: number;
  readonly maxSteps: number;
  readonly tokens: readonly (string | null)[];
  readonly end: readonly boolean[];
  readonly special: readonly boolean[];
  readonly committed: readonly number[];
  /** Canvas offsets DyLLM recomputed this step (last layer); null when dense. */
  readonly recomputed: readonly number[] | null;
  readonly ffnFraction: number;
}

export type FromWorker =
  /**
   * The model is loaded. `backend`: 'webgpu' (the steps run on the GPU; `adapter` names it; `checkError` is the
   * check step's max|Δ|/max|ref| against the reference backend) or 'reference' (`notice` says why not WebGPU).
   */
  | { readonly type: 'ready'; readonly arch: string; readonly chatTemplate: boolean; readonly backend: 'webgpu' | 'reference'; readonly adapter?: string; readonly checkError?: number; readonly notice?: string; readonly loadMs: number }
  | LocalStep
  | { readonly type: 'done'; readonly answer: string; readonly tokenIds: readonly number[]; readonly steps: number; readonly elapsedMs: number; readonly tokensPerS: number; readonly salientFraction: number; readonly backend: 'webgpu' | 'reference'; readonly stopped: boolean }
  | { readonly type: 'error'; readonly message: string };
