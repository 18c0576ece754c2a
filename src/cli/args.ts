/**
 * Command-line flags shared by the subcommands, derived from the option schema (engine/schema.ts): the flag
 * tables, parsing with node:util, conversion to option inputs, help text, and the usage error type. Wrong flags
 * or values are UsageErrors (exit code 2, one line).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GENERATION_OPTIONS, type GenerateOptionsInput } from '../engine/options.js';
import { ACCEL_OPTIONS, type AccelOptionsInput } from '../engine/accel.js';
import { didYouMean, optionHelp, type OptionSpec } from '../engine/schema.js';
import { resolveModelDir } from '../load/hub.js';
import { QUANT_OPTIONS, type QuantOption } from '../models/load-model.js';
import { webGpuBackendMessage, type BackendName } from '../kernels/select.js';
import { probeNodeWebGpu, type ProbeResult } from '../kernels/webgpu/node.js';

/** --model: a folder, a bundled model's name or a Hugging Face id in the cache (default: the bundled demo model). */
export function modelDir(v: unknown): string {
  return resolveModelDir(typeof v === 'string' ? v : 'dyllm-demo');
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The --backend help line. */
export const BACKEND_HELP = 'auto | native | reference (default auto); webgpu: generate and serve run dense and DyLLM steps on a WebGPU adapter (the webgpu package), other commands say whether there is one';

/**
 * --backend of `dyllm generate` and `dyllm serve`: a host backend, or WebGPU with the adapter the `webgpu` package
 * found (no adapter, or no package: the one-line refusal of src/kernels/select.ts).
 */
export function generateBackend(v: unknown, probe: () => ProbeResult = () => probeNodeWebGpu()): BackendName | { readonly webgpu: string } {
  if (v !== 'webgpu') return backendName(v);
  const r = probe();
  if (!r.ok) throw new UsageError(webGpuBackendMessage(() => r));
  return { webgpu: r.adapter };
}

/** --quant with --backend webgpu: refused in one line (the WebGPU kernels take the weights as stored). */
export function refuseQuantOnGpu(quant: string): void {
  if (quant !== 'none') throw new UsageError(`--quant ${quant}: the WebGPU kernels take bf16 or f32 weights; drop --quant with --backend webgpu`);
}

/**
 * --backend: a model backend (default auto). 'webgpu' is refused with one line saying whether the `webgpu` package
 * finds an adapter here (src/kernels/select.ts): only `dyllm generate` and `dyllm serve` run on WebGPU (generateBackend).
 */
export function backendName(v: unknown): BackendName {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'native' || v === 'reference') return v;
  if (v === 'webgpu') throw new UsageError(webGpuBackendMessage());
  throw new UsageError(`--backend: expected auto, native, reference or webgpu, found "${String(v)}"`);
}

/** A CLI flag table (node:util parseArgs) for declared options: booleans are switches, the rest take a value. */
export function flagConfig(specs: readonly OptionSpec[]): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(specs.map((s) => [s.flag, { type: s.type === 'boolean' ? 'boolean' as const : 'string' as const }]));
}

export const generationFlagConfig: NonNullable<ParseArgsConfig['options']> = flagConfig(GENERATION_OPTIONS);
export const accelFlagConfig: NonNullable<ParseArgsConfig['options']> = flagConfig(ACCEL_OPTIONS);

/**
 * parseArgs with the conventions users expect: a negative number is a value (`--threshold -0.5`), an unknown flag
 * gets a "did you mean", and the error is one line.
 */
export function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, allowPositionals: boolean) {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith('--') ? a.slice(2) : null;
    // "--flag -1": parseArgs takes "-1" for a short option; join it as "--flag=-1" when the flag takes a value.
    if (name !== null && !name.includes('=') && options[name]?.type === 'string' && i + 1 < argv.length && /^-\d|^-\.\d|^-(Infinity|NaN)$/.test(argv[i + 1])) {
      args.push(`${a}=${argv[++i]}`);
    } else {
      args.push(a);
    }
  }
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(msg);
    if (unknown) {
      const flags = Object.keys(options);
      throw new UsageError(`unknown option ${unknown[1]}${unknown[2]}${didYouMean(unknown[2], flags).replace(/"([^"]+)"/, '"--$1"')}`);
    }
    throw new UsageError(msg);
  }
}

function toNumber(flag: string, v: string, kind: 'int' | 'number'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isSafeInteger(n))) {
    throw new UsageError(`--${flag}: expected ${kind === 'int' ? 'an integer' : 'a number'}, found "${v}"`);
  }
  return n;
}

/** Options set on the command line for these declarations (unset flags are left to the defaults). */
export function optionsFromFlags(values: Record<string, unknown>, specs: readonly OptionSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const v = values[s.flag];
    if (v === undefined) continue;
    if (s.type === 'boolean') {
      if (v === true) out[s.key] = true;
    } else if (typeof v === 'string') {
      out[s.key] = s.type === 'enum' ? v : toNumber(s.flag, v, s.type);
    }
  }
  return out;
}

/** Generation options set on the command line. */
export function generationOptions(values: Record<string, unknown>): GenerateOptionsInput {
  return optionsFromFlags(values, GENERATION_OPTIONS) as GenerateOptionsInput;
}

/** Acceleration options set on the command line. */
export function accelOptions(values: Record<string, unknown>): AccelOptionsInput {
  return optionsFromFlags(values, ACCEL_OPTIONS) as AccelOptionsInput;
}

/** "1,2,3" -> [1, 2, 3]. */
export function parseIdList(flag: string, v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--${flag}: expected comma-separated token ids, found "${v}"`);
  return parts.map((p) => {
    const n = Number(p);
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${flag}: "${p}" is not a token id (a non-negative integer)`);
    return n;
  });
}

/**
 * Load options: how the model's weights are held (shared by generate, serve, eval and bench). Not generation
 * options: they are fixed for the life of a loaded model, so a request cannot set them.
 */
export const LOAD_FLAGS = { quant: { type: 'string' }, 'pack-cache': { type: 'boolean' } } as const;

/** The --pack-cache help line (generate, serve, eval, bench). */
export const PACK_CACHE_HELP = `  --pack-cache       map the packed weights from a cache file, writing it on first use (+ the weights' size
                     on disk; same as DYLLM_PACK_CACHE=1; dir: DYLLM_CACHE_DIR). See docs/loading.md`;

export const LOAD_HELP = `Loading:
  --quant Q          none | int8 | q4: quantise the linear layers while loading (default none; a folder written
                     by dyllm quantize loads quantised as it is). See docs/quantization.md
${PACK_CACHE_HELP}`;

/**
 * --pack-cache: sets DYLLM_PACK_CACHE=1, which every load in this process reads (loadModel; the server's engine
 * thread included). Refused with --queue: the workers load the model (run them with DYLLM_PACK_CACHE=1).
 */
export function applyPackCacheFlag(values: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): void {
  if (values['pack-cache'] !== true) return;
  if (values.queue !== undefined) throw new UsageError('--pack-cache: with --queue the workers load the model; start them with DYLLM_PACK_CACHE=1 instead');
  env.DYLLM_PACK_CACHE = '1';
}

/** --quant's value (default 'none'). */
export function quantOption(v: unknown): QuantOption {
  if (v === undefined) return 'none';
  if (typeof v === 'string' && (QUANT_OPTIONS as readonly string[]).includes(v)) return v as QuantOption;
  throw new UsageError(`--quant: expected none, int8 or q4, found "${String(v)}"`);
}

export const GENERATION_HELP = `Generation options:\n${optionHelp(GENERATION_OPTIONS)}`;

export const ACCEL_HELP = `Acceleration:\n${optionHelp(ACCEL_OPTIONS)}`;

/** Most kernel threads --threads / DYLLM_THREADS may ask for (the native addon's own cap). */
export const MAX_THREADS = 256;

/** The --threads help line of the commands that run the kernels (applyThreadsFlag reads the flag). */
export const THREADS_HELP = `  --threads N             kernel threads, 1-${MAX_THREADS} (default: env DYLLM_THREADS, else every CPU)`;

/**
 * `--threads N` (or `--threads=N`) anywhere in a command's arguments: checked, removed, and set as DYLLM_THREADS,
 * which the native addon reads when it is first loaded (src/kernels/native.ts) — so this runs before anything
 * loads it. Without the flag, a DYLLM_THREADS already set is checked the same way. Returns the other arguments.
 */
export function applyThreadsFlag(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '--threads') {
      if (i + 1 >= argv.length) throw new UsageError('--threads: expected a thread count, found nothing');
      value = argv[++i];
    } else if (a.startsWith('--threads=')) {
      value = a.slice('--threads='.length);
    } else {
      rest.push(a);
    }
  }
  const check = (what: string, v: string): string => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isSafeInteger(n) || n < 1 || n > MAX_THREADS) throw new UsageError(`${what}: expected an integer in [1, ${MAX_THREADS}], found "${v}"`);
    return String(n);
  };
  if (value !== undefined) env.DYLLM_THREADS = check('--threads', value);
  else if (env.DYLLM_THREADS !== undefined && env.DYLLM_THREADS !== '') check('DYLLM_THREADS', env.DYLLM_THREADS);
  return rest;
}
