/** Readers for the golden fixtures written by tools/make_fixtures.py (see tools/README.md). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixturesDir } from './paths.js';

export interface ForwardCase {
  name: string;
  input_ids: number[][];
  attention_mask: number[][] | null;
  logits: number[][][];
}

export interface ForwardFixture {
  magic: string;
  version: number;
  seed: number;
  cases: ForwardCase[];
  hidden?: Record<string, number[][]>;
}

export const MODEL_FIXTURES = ['llada-tiny', 'llada-tiny-f32-sharded', 'dream-tiny', 'dream-tiny-f32-sharded'] as const;

export function fixturePath(name: string): string {
  return join(fixturesDir, name);
}

export function readJsonFixture<T>(name: string, file: string): T {
  const p = join(fixturesDir, name, file);
  if (!existsSync(p)) throw new Error(`missing fixture ${p} ---> HINT: regenerate with /usr/bin/python3 tools/make_fixtures.py`);
  const v = JSON.parse(readFileSync(p, 'utf8')) as T & { magic?: string; version?: number };
  if (v.magic !== 'dyllm-fixture' || v.version !== 1) throw new Error(`${p}: not a version-1 dyllm fixture ---> HINT: regenerate with tools/make_fixtures.py`);
  return v;
}

/** max|a−b| / max|b| over two flat arrays. */
export function relMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / (den || 1);
}
