/**
 * The acceleration methods by name. Each method is one file in this folder implementing AccelMethod (types.ts); the
 * built-in ones are registered by the line at the bottom, and `registerAccel` adds more at run time (a test's toy
 * method, a plug-in). The `accel` option's values, its help line and ACCEL_OPTIONS (every method's knobs, which the
 * CLI flags, HTTP fields and help derive from) follow the registry.
 */
import { declareOptions, OptionError, type OptionSpec } from '../schema.js';
import { dense } from './dense.js';
import { dllmCache } from './dllm-cache.js';
import { dyllm } from './dyllm.js';
import { dual, prefix } from './fast-dllm.js';
import type { AccelMethod, AccelOptions } from './types.js';

const methods = new Map<string, AccelMethod>();
const names: string[] = [];
const specs: OptionSpec[] = [];

/** Every method once, those sharing a source together: "none, dyllm (DyLLM), prefix | dual (Fast-dLLM), …". */
function methodHelp(): string {
  const groups: { source: string; names: string[] }[] = [];
  for (const m of methods.values()) {
    if (!m.source) {
      groups.push({ source: '', names: [m.name] });
      continue;
    }
    const g = groups[groups.length - 1];
    if (g && g.source === m.source) g.names.push(m.name);
    else groups.push({ source: m.source, names: [m.name] });
  }
  return groups.map((g) => `${g.names.join(' | ')}${g.source ? ` (${g.source})` : ''}`).join(' | ');
}

const METHOD: OptionSpec = {
  key: 'method', flag: 'accel', field: 'dyllm.accel', type: 'enum', values: names, metavar: 'M', defaultHelp: 'none', helpListsValues: true,
  get help() {
    return methodHelp();
  },
};

/** The `accel` option and every registered method's knobs, in registration order (grows with registerAccel). */
export const ACCEL_OPTIONS: readonly OptionSpec[] = specs;
specs.push(...declareOptions([METHOD]));

/** Add a method; its knobs join the option schema (a key, flag or field may be declared once). */
export function registerAccel<O extends AccelOptions>(m: AccelMethod<O>): void {
  if (!/^[a-z][a-z0-9-]*$/.test(m.name)) throw new Error(`acceleration method "${m.name}": expected a lowercase name (letters, digits, dashes)`);
  if (methods.has(m.name)) throw new Error(`acceleration method "${m.name}" is registered twice`);
  for (const s of declareOptions(m.options)) if (!specs.includes(s)) specs.push(s);
  methods.set(m.name, m as AccelMethod);
  names.push(m.name);
}

/** The method called `name`; an OptionError naming the `accel` option when there is none. */
export function accelMethod(name: string): AccelMethod {
  const m = methods.get(name);
  if (!m) throw new OptionError('method', `expected one of ${names.join(', ')}, found ${JSON.stringify(name)}`);
  return m;
}

/** Every registered method, in registration order. */
export function accelMethods(): readonly AccelMethod[] {
  return [...methods.values()];
}

// The built-in methods: a new one is a file in this folder and an entry here.
for (const m of [dense, dyllm, prefix, dual, dllmCache]) registerAccel(m);
