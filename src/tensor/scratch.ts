/**
 * Named work buffers reused across forward calls, so the per-step hot loop allocates nothing once warm. A buffer
 * grows when asked for more than it holds and is handed out as a view of exactly the requested length; contents
 * are NOT cleared (every user writes before reading). Views are valid until the next request of the same name.
 */
export class Scratch {
  private readonly f32s = new Map<string, Float32Array>();
  private readonly i32s = new Map<string, Int32Array>();

  f32(name: string, n: number): Float32Array {
    let b = this.f32s.get(name);
    if (!b || b.length < n) {
      b = new Float32Array(Math.max(n, Math.ceil((b?.length ?? 0) * 1.5)));
      this.f32s.set(name, b);
    }
    return b.subarray(0, n);
  }

  i32(name: string, n: number): Int32Array {
    let b = this.i32s.get(name);
    if (!b || b.length < n) {
      b = new Int32Array(Math.max(n, Math.ceil((b?.length ?? 0) * 1.5)));
      this.i32s.set(name, b);
    }
    return b.subarray(0, n);
  }

  /** Bytes held. */
  nbytes(): number {
    let n = 0;
    for (const b of this.f32s.values()) n += b.byteLength;
    for (const b of this.i32s.values()) n += b.byteLength;
    return n;
  }
}
