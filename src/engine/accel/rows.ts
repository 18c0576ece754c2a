/** Query-row lists the cached methods build each step: ascending positions inside one sequence. */
import type { ForwardBatch } from '../../models/types.js';

/** Positions [from, to). */
export function iota(from: number, to: number): Int32Array {
  const a = new Int32Array(to - from);
  for (let i = 0; i < a.length; i++) a[i] = from + i;
  return a;
}

/** Add the positions of sequence `ai` of `batch` whose logits the sampler reads (they must be query rows). */
export function addLogitPositions(batch: ForwardBatch, ai: number, into: Set<number>): void {
  const s = batch.seqStart[ai];
  const e = batch.seqStart[ai + 1];
  if (batch.logitRows) for (const r of batch.logitRows) if (r >= s && r < e) into.add(r - s);
}

/** A set of positions as an ascending row list. */
export function sortedRows(set: ReadonlySet<number>): Int32Array {
  return Int32Array.from([...set].sort((x, y) => x - y));
}
