/** The diffusion families by config.json model family: a new family is a file in this folder and an entry here. */
import type { Architecture } from '../load/config.js';
import { dream } from './dream.js';
import { llada } from './llada.js';
import type { DiffusionFamily } from './types.js';

const FAMILIES: Readonly<Record<Architecture, DiffusionFamily>> = { llada, dream };

export function familyOf(arch: Architecture): DiffusionFamily {
  const f = FAMILIES[arch];
  if (!f) throw new Error(`no diffusion family for model family "${arch}"`);
  return f;
}

/** Every family, in declaration order. */
export function allFamilies(): readonly DiffusionFamily[] {
  return Object.values(FAMILIES);
}
