/**
 * Acceleration options as every surface sees them: ACCEL_OPTIONS (the `accel` method and each registered method's
 * knobs, from accel/registry.ts) and `resolveAccel`, the one path from user input — CLI flags, HTTP fields, library
 * objects — to a method's resolved options. The methods themselves are one file each in accel/.
 */
import { familyOf } from '../families/registry.js';
import { ConfigError } from '../load/errors.js';
import { accelMethod, accelMethods, ACCEL_OPTIONS } from './accel/registry.js';
import type { AccelOptions, AccelOptionsInput } from './accel/types.js';
import { optionContext, type GenerateOptions, type OptionModel } from './options.js';
import { checkOption, didYouMean, type OptionContext } from './schema.js';

export { ACCEL_OPTIONS };
export type { AccelOptions, AccelOptionsInput };

/**
 * A method's options over its defaults, every given value checked against its declaration. `gen` (the request's
 * resolved generation options) bounds the knobs that depend on it (the cache block). Unset knobs take the model
 * family's defaults (DiffusionFamily.accelDefaults), then the method's. Knobs of other methods are checked and left out.
 */
export function resolveAccel(model: OptionModel, input: AccelOptionsInput, gen?: GenerateOptions): AccelOptions {
  const hooks = accelMethods().flatMap((m) => m.hooks ?? []);
  const known = [...ACCEL_OPTIONS.map((s) => s.key), ...hooks];
  for (const k of Object.keys(input)) {
    if (input[k] !== undefined && !known.includes(k)) throw new ConfigError(`unknown acceleration option "${k}"${didYouMean(k, known)}`);
  }
  const ctx: OptionContext = { ...optionContext(model), genLength: gen?.genLength };
  const checked: Record<string, unknown> = {};
  for (const s of ACCEL_OPTIONS) if (input[s.key] !== undefined) checked[s.key] = checkOption(s, input[s.key], ctx);
  for (const h of hooks) if (input[h] !== undefined) checked[h] = input[h];
  const method = accelMethod((checked.method as string | undefined) ?? 'none');
  const defaults = familyOf(ctx.arch).accelDefaults[method.name] ?? {};
  return Object.freeze({ ...method.resolve({ ...defaults, ...checked }, ctx), method: method.name });
}
