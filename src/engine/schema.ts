/**
 * The option schema: every generation and acceleration option is declared once — library key, CLI flag, HTTP
 * field, type, range, default and help — and everything that reads options derives from the declarations: the
 * CLI's flag table, parsing and `--help` (cli/args.ts), the server's request fields and error `param` names
 * (server/request.ts, server/errors.ts) and the library's validation (resolveOptions, resolveAccel).
 *
 * Ranges may depend on the model and on options resolved before them (steps ≤ gen length), so every value is
 * checked against an OptionContext before anything is allocated. A failed check is an OptionError: a ConfigError
 * that knows its option, so each surface names it the way its user typed it (`--gen-length`, `max_tokens`,
 * `genLength`).
 *
 * May import: load/ (types, errors), families/ (help marks). Imported by: engine/options.ts, engine/accel/, cli/,
 * server/.
 */
import { allFamilies } from '../families/registry.js';
import type { Architecture } from '../load/config.js';
import { ConfigError } from '../load/errors.js';

export type OptionType = 'int' | 'number' | 'boolean' | 'enum';

export interface Range {
  readonly min: number;
  readonly max: number;
  /** The lower bound itself is not allowed. */
  readonly minExclusive?: boolean;
  /** Why the upper bound is what it is, for the error ("the gen length", "the model's max_sequence_length"). */
  readonly maxWhy?: string;
}

/** What a range may depend on: the model, and options resolved before this one. */
export interface OptionContext {
  readonly arch: Architecture;
  readonly vocabSize: number;
  /** Longest prompt + canvas allowed: the model's maximum sequence length, or a configured cap below it. */
  readonly maxCanvas: number;
  readonly maxCanvasWhy: string;
  /** Resolved generation length (set once genLength is resolved). */
  readonly genLength?: number;
  readonly steps?: number;
}

export interface OptionSpec {
  /** Library name (GenerateOptions / AccelOptions key). */
  readonly key: string;
  /** CLI flag without the dashes. */
  readonly flag: string;
  /** HTTP request field: an OpenAI top-level field ("temperature") or a field of the `dyllm` object ("dyllm.steps"). */
  readonly field: string;
  /** Further HTTP fields that mean the same option ("max_completion_tokens"). */
  readonly aliases?: readonly string[];
  readonly type: OptionType;
  readonly values?: readonly string[];
  /** The help text already names every value (help then does not list them again). */
  readonly helpListsValues?: boolean;
  /** Values accepted by the library only (testing hooks), not listed in help. */
  readonly hiddenValues?: readonly string[];
  /** null (or absent) turns the option off. */
  readonly nullable?: boolean;
  readonly range?: Range | ((ctx: OptionContext) => Range);
  /** Placeholder in help ("N", "T"). */
  readonly metavar?: string;
  readonly help: string;
  /** The default, as help text ("the gen length", "0.99 LLaDA, 0.995 Dream"). */
  readonly defaultHelp?: string;
}

/** Integers this large are the same as unbounded for every count an option holds (steps, periods, seeds are separate). */
export const MAX_COUNT = 1_000_000;
/** Default cap on prompt + canvas when a model allows more (Dream: 131k positions): memory grows with it. */
export const DEFAULT_MAX_CANVAS = 8192;

/** A ConfigError about one option; `detail` is the message without the option's name. */
export class OptionError extends ConfigError {
  constructor(readonly option: string, readonly detail: string) {
    super(`${option}: ${detail}`);
    this.name = 'OptionError';
  }
}

const fmt = (v: unknown): string => {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

export function rangeOf(spec: OptionSpec, ctx: OptionContext): Range | null {
  if (!spec.range) return null;
  return typeof spec.range === 'function' ? spec.range(ctx) : spec.range;
}

function rangeText(r: Range): string {
  return `${r.minExclusive ? '(' : '['}${r.min}, ${r.max}]${r.maxWhy ? ` (at most ${r.maxWhy})` : ''}`;
}

/** Check one value against its declaration; returns it typed, or throws an OptionError naming the option. */
export function checkOption(spec: OptionSpec, v: unknown, ctx: OptionContext): unknown {
  if (v === null || v === undefined) {
    if (spec.nullable) return null;
    throw new OptionError(spec.key, `expected a value, found ${fmt(v)}`);
  }
  switch (spec.type) {
    case 'boolean':
      if (typeof v !== 'boolean') throw new OptionError(spec.key, `expected true or false, found ${fmt(v)}`);
      return v;
    case 'enum': {
      const ok = [...(spec.values ?? []), ...(spec.hiddenValues ?? [])];
      if (typeof v !== 'string' || !ok.includes(v)) throw new OptionError(spec.key, `expected one of ${(spec.values ?? []).join(', ')}, found ${fmt(v)}`);
      return v;
    }
    case 'int':
    case 'number': {
      const r = rangeOf(spec, ctx);
      const what = spec.type === 'int' ? 'an integer' : 'a number';
      const bad = typeof v !== 'number' || !Number.isFinite(v) || (spec.type === 'int' && !Number.isSafeInteger(v))
        || (r !== null && ((r.minExclusive ? v <= r.min : v < r.min) || v > r.max));
      if (bad) throw new OptionError(spec.key, `expected ${what}${r ? ` in ${rangeText(r)}` : ''}, found ${fmt(v)}`);
      return v;
    }
  }
}

/** Refuse keys no declaration knows (a typo would otherwise be silently ignored). */
export function refuseUnknown(input: object, specs: readonly OptionSpec[], what: string): void {
  for (const k of Object.keys(input)) {
    if ((input as Record<string, unknown>)[k] === undefined) continue;
    if (!specs.some((s) => s.key === k)) throw new ConfigError(`unknown ${what} option "${k}"${didYouMean(k, specs.map((s) => s.key))}`);
  }
}

/** ", did you mean "x"?" for the closest candidate within a small edit distance, else "". */
export function didYouMean(word: string, candidates: readonly string[]): string {
  let best = '';
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best && bestD <= Math.max(2, Math.floor(word.length / 3)) ? `; did you mean "${best}"?` : '';
}

function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

// ---- the registry of declared options (generation options and every acceleration method's) ----------------------

const registry = new Map<string, OptionSpec>();

/** Declare options (each module declares its own at import time). A key, flag or field may be declared once. */
export function declareOptions(specs: readonly OptionSpec[]): readonly OptionSpec[] {
  for (const s of specs) {
    for (const other of registry.values()) {
      if (other === s) continue;
      if (other.key === s.key || other.flag === s.flag || other.field === s.field) {
        throw new Error(`option schema: "${s.key}" (--${s.flag}, ${s.field}) collides with "${other.key}" (--${other.flag}, ${other.field})`);
      }
    }
    registry.set(s.key, s);
  }
  return specs;
}

/** Every declared option, in declaration order. */
export function allOptions(): readonly OptionSpec[] {
  return [...registry.values()];
}

/** The option an error is about (OptionError, or a ConfigError whose message starts with a declared key). */
export function optionOf(e: unknown): OptionSpec | undefined {
  if (e instanceof OptionError) return registry.get(e.option);
  if (e instanceof ConfigError) {
    const m = /^(\w+):/.exec(e.message);
    return m ? registry.get(m[1]) : undefined;
  }
  return undefined;
}

/** The error's message with the option named as the CLI user typed it (`--gen-length: …`). */
export function cliMessage(e: ConfigError): string {
  const spec = optionOf(e);
  if (!spec) return e.message;
  const detail = e instanceof OptionError ? e.detail : e.message.replace(/^\w+:\s*/, '');
  return `--${spec.flag}: ${detail}`;
}

/** The error's message with the option named as its HTTP field (`dyllm.steps: …`), and that field. */
export function httpMessage(e: ConfigError): { message: string; param: string | null } {
  const spec = optionOf(e);
  if (!spec) return { message: e.message, param: null };
  const detail = e instanceof OptionError ? e.detail : e.message.replace(/^\w+:\s*/, '');
  return { message: `${spec.field}: ${detail}`, param: spec.field };
}

/** Help lines for a group of options: `  --flag METAVAR   help: values (default …)`, wrapped at `columns`. */
export function optionHelp(specs: readonly OptionSpec[], width = 28, columns = 112): string {
  return specs.map((s) => {
    const head = `  --${s.flag}${s.type === 'boolean' ? '' : ` ${s.metavar ?? (s.type === 'enum' ? 'X' : 'N')}`}`;
    const values = s.type === 'enum' && !s.helpListsValues ? `: ${(s.values ?? []).join(' | ')}` : '';
    // An option only one family's sampler reads is marked with that family ("LLaDA: …"); the others ignore it.
    const readers = allFamilies().filter((f) => (f.options as readonly string[]).includes(s.key));
    const fam = readers.length === 1 ? `${readers[0].label}: ` : '';
    const def = s.defaultHelp ? ` (default ${s.defaultHelp})` : '';
    return wrap(`${head.padEnd(width - 1)} ${fam}${s.help}${values}${def}`, width, columns);
  }).join('\n');
}

function wrap(line: string, indent: number, columns: number): string {
  const out: string[] = [];
  let rest = line;
  while (rest.length > columns) {
    let cut = rest.lastIndexOf(' ', columns);
    if (cut <= indent) cut = rest.indexOf(' ', columns);
    if (cut < 0) break;
    out.push(rest.slice(0, cut));
    rest = ' '.repeat(indent) + rest.slice(cut + 1);
  }
  out.push(rest);
  return out.join('\n');
}
