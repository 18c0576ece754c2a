/** Test helper: write small safetensors files (optionally corrupted) from typed arrays. */
import { writeFileSync } from 'node:fs';

export interface StTensor {
  dtype: 'BF16' | 'F16' | 'F32' | 'I8' | 'U8';
  shape: number[];
  data: Uint8Array;
}

/** Serialise tensors; `patch` may edit the header object before it is written (to make it lie). */
export function encodeSafetensors(tensors: Record<string, StTensor>, patch?: (h: Record<string, any>) => void): Buffer {
  const header: Record<string, any> = { __metadata__: { format: 'pt' } };
  let off = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    parts.push(t.data);
    off += t.data.byteLength;
  }
  patch?.(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))]);
}

export function writeSafetensors(path: string, tensors: Record<string, StTensor>, patch?: (h: Record<string, any>) => void): void {
  writeFileSync(path, encodeSafetensors(tensors, patch));
}

export function f32Tensor(shape: number[], fill: (i: number) => number = (i) => i): StTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = fill(i);
  return { dtype: 'F32', shape, data: new Uint8Array(a.buffer) };
}
