/**
 * safetensors writer for `dyllm quantize`: the header (8-byte little-endian length + JSON, padded with spaces to a
 * multiple of 8 bytes) is written first from the tensors' dtypes and shapes, then each tensor's bytes in header
 * order, one tensor in memory at a time, so a multi-GB checkpoint is written in bounded memory.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { DTYPE_BYTES, type DType } from '../tensor/dtype.js';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** Bytes of a tensor's data. */
export function tensorBytes(t: TensorSpec): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
}

/**
 * Writes `path` holding `tensors` in this order; `data(t)` returns each tensor's bytes when its turn comes (a typed
 * array of exactly tensorBytes(t) bytes, else an Error naming the tensor).
 */
export function writeSafetensors(
  path: string, tensors: readonly TensorSpec[], metadata: Readonly<Record<string, string>>, data: (t: TensorSpec) => ArrayBufferView,
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((Buffer.byteLength(json) + 8) % 8)) % 8;
  json += ' '.repeat(pad);
  const hbuf = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hbuf.length));
  const fd = openSync(path, 'wx');
  try {
    writeAll(fd, len);
    writeAll(fd, hbuf);
    for (const t of tensors) {
      const v = data(t);
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      if (bytes.length !== tensorBytes(t)) throw new Error(`internal: tensor ${t.name} has ${bytes.length} bytes, its header says ${tensorBytes(t)}`);
      writeAll(fd, bytes);
    }
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, b: Uint8Array): void {
  const CHUNK = 1 << 30;
  for (let done = 0; done < b.length;) done += writeSync(fd, b, done, Math.min(CHUNK, b.length - done));
}
