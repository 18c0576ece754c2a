/** Row bookkeeping of the cached passes: ascending position lists, their runs, and copies along them. */

/** Whether ascending positions form one run (so their cache rows are one contiguous view). */
export function contiguous(rows: Int32Array): boolean {
  return rows.length > 0 && rows[rows.length - 1] - rows[0] === rows.length - 1;
}

/** dst[i] = src[rows[i]] for rows of `width` values; runs of consecutive rows are copied in one call. */
export function gatherRows(dst: Float32Array, src: Float32Array, rows: Int32Array, width: number): void {
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    dst.set(src.subarray(rows[i] * width, (rows[j - 1] + 1) * width), i * width);
    i = j;
  }
}

/** dst[rows[i]] = src[i] (inverse of gatherRows). */
export function scatterRows(dst: Float32Array, src: Float32Array, rows: Int32Array, width: number): void {
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    dst.set(src.subarray(i * width, j * width), rows[i] * width);
    i = j;
  }
}

/** 0, 1, …, n − 1. */
export function iota(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}

/** Index of v in ascending a, or −1. */
export function binarySearch(a: Int32Array, v: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] === v) return mid;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The sequence owning row r of rows split at offsets off[0..B] (off[0] = 0), searching on from sequence b. */
export function sequenceOf(off: Int32Array, r: number, b = 0): number {
  while (r >= off[b + 1]) b++;
  return b;
}

/**
 * How many of the ascending query-row indices `idx` fall in each sequence (sequence b owns rows rowOff[b] ..
 * rowOff[b+1]): f(b, count) for every sequence.
 */
export function forEachSequence(rowOff: Int32Array, idx: Int32Array, f: (b: number, n: number) => void): void {
  let j = 0;
  for (let b = 0; b + 1 < rowOff.length; b++) {
    const j0 = j;
    while (j < idx.length && idx[j] < rowOff[b + 1]) j++;
    f(b, j - j0);
  }
}

/** Query-row indices -> each sequence's positions (sequences[b].rows lists sequence b's query positions). */
export function bySequence(rowOff: Int32Array, sequences: readonly { readonly rows: Int32Array }[], idx: Int32Array): Int32Array[] {
  return sequences.map((sp, b) => {
    const out: number[] = [];
    for (const r of idx) if (r >= rowOff[b] && r < rowOff[b + 1]) out.push(sp.rows[r - rowOff[b]]);
    return Int32Array.from(out);
  });
}

/**
 * Indices into a plan's query rows (concatenated per sequence at rowOff) of the rows whose logits a batch wants
 * (`logitRows`, batch row numbers; null = every query row, R of them). Throws when a wanted row is not a query row.
 */
export function wantedQueryRows(seqStart: Int32Array, want: Int32Array | null, sequences: readonly { readonly rows: Int32Array }[], rowOff: Int32Array, R: number, sel: Int32Array): number {
  const nL = want ? want.length : R;
  if (want) {
    for (let j = 0; j < nL; j++) {
      const b = sequenceOf(seqStart, want[j]);
      const p = want[j] - seqStart[b];
      const idx = binarySearch(sequences[b].rows, p);
      if (idx < 0) throw new RangeError(`forwardPlanned: logits wanted for position ${p} of sequence ${b}, which is not a query row`);
      sel[j] = rowOff[b] + idx;
    }
  } else {
    for (let j = 0; j < nL; j++) sel[j] = j;
  }
  return nL;
}
