/** Building the per-step AccelTelemetry every cached StepForward reports (DyLLM and the comparison methods alike). */
import type { AccelTelemetry, CanvasLayout } from './types.js';

export interface RecomputeCounts {
  readonly salientPerLayer: readonly number[];
  readonly ffnRows: number;
  readonly kvRows: number;
  readonly oProjReused?: number;
  readonly qReused?: number;
  readonly kvReused?: number;
  readonly headReused?: number;
  readonly headRows?: number;
  /** Per active sequence, absolute positions recomputed in the last layer. */
  readonly recomputed: readonly Int32Array[];
}

/** `denseRows` = Σ sequence lengths of the step's active sequences (what a dense step computes per layer). */
export function accelTelemetry(
  method: string, counts: RecomputeCounts, denseRows: number, numLayers: number, active: readonly number[], layout: CanvasLayout,
): AccelTelemetry {
  const denseTotal = denseRows * numLayers;
  return {
    method,
    salientPerLayer: counts.salientPerLayer,
    ffnFraction: counts.ffnRows / denseTotal,
    kvFraction: counts.kvRows / denseTotal,
    ffnRows: counts.ffnRows,
    kvRows: counts.kvRows,
    denseFfnRows: denseTotal,
    ...(counts.oProjReused ? { oProjReused: counts.oProjReused } : {}),
    ...(counts.qReused !== undefined ? { qReused: counts.qReused } : {}),
    ...(counts.kvReused !== undefined ? { kvReused: counts.kvReused } : {}),
    ...(counts.headRows !== undefined ? { headReused: counts.headReused ?? 0, headRows: counts.headRows } : {}),
    // Offsets inside each sequence's generated region, for display.
    recomputed: counts.recomputed.map((r, ai) => {
      const g0 = layout.genStart[active[ai]];
      return Int32Array.from([...r].filter((x) => x >= g0).map((x) => x - g0));
    }),
  };
}
