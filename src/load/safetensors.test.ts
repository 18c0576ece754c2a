import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpoint, SafetensorsFile } from './safetensors.js';
import { LoadError } from './errors.js';
import { encodeSafetensors, f32Tensor, writeSafetensors } from '../../test/helpers/st-writer.js';
import { f32ToBf16 } from '../tensor/dtype.js';
import { nativeIsaTiers } from '../kernels/native.js';

const mapping = nativeIsaTiers().length > 0 && process.env.DYLLM_MMAP !== 'off';
const noMapping = mapping ? false : 'the native addon (which maps files) is not available here';

const tmp = () => mkdtempSync(join(tmpdir(), 'dyllm-st-'));

function expectLoadError(fn: () => unknown, ...parts: (string | RegExp)[]) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LoadError, `expected LoadError, got ${e}`);
    for (const p of parts) assert.match(e.message, typeof p === 'string' ? new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : p);
    return true;
  });
}

test('reads F32, BF16 and F16 tensors as typed arrays', () => {
  const d = tmp();
  const bf = new Uint16Array([f32ToBf16(1.5), f32ToBf16(-2), f32ToBf16(3.25)]);
  const f16 = new Uint16Array([0x3c00, 0xc000]); // 1, -2
  writeSafetensors(join(d, 'model.safetensors'), {
    a: f32Tensor([2, 3]),
    b: { dtype: 'BF16', shape: [3], data: new Uint8Array(bf.buffer) },
    c: { dtype: 'F16', shape: [2], data: new Uint8Array(f16.buffer) },
  });
  const ck = new Checkpoint(d);
  assert.deepEqual([...(ck.read('a') as Float32Array)], [0, 1, 2, 3, 4, 5]);
  const b = ck.read('b');
  assert.ok(b instanceof Uint16Array);
  assert.deepEqual([...b], [...bf]);
  assert.deepEqual(ck.info('c')?.shape, [2]);
  assert.equal(ck.nbytes(), 24 + 6 + 4);
});

test('sharded checkpoints resolve every tensor through the index', () => {
  const d = tmp();
  writeSafetensors(join(d, 's1.safetensors'), { x: f32Tensor([2], () => 7) });
  writeSafetensors(join(d, 's2.safetensors'), { y: f32Tensor([3], () => 9) });
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 20 }, weight_map: { x: 's1.safetensors', y: 's2.safetensors' } }));
  const ck = new Checkpoint(d);
  assert.deepEqual(ck.names().sort(), ['x', 'y']);
  assert.deepEqual([...(ck.read('y') as Float32Array)], [9, 9, 9]);
});

test('missing checkpoint files are named', () => {
  const d = tmp();
  expectLoadError(() => new Checkpoint(d), d, 'model.safetensors or model.safetensors.index.json');
  expectLoadError(() => new SafetensorsFile(join(d, 'nope.safetensors')), 'nope.safetensors', 'no such file');
});

test('a shard named by the index but missing on disk is an error naming it', () => {
  const d = tmp();
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'gone.safetensors' } }));
  expectLoadError(() => new Checkpoint(d), 'gone.safetensors', 'no such file');
});

test('an index entry whose tensor is not in its shard is an error', () => {
  const d = tmp();
  writeSafetensors(join(d, 's1.safetensors'), { x: f32Tensor([2]) });
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 's1.safetensors', z: 's1.safetensors' } }));
  expectLoadError(() => new Checkpoint(d), 's1.safetensors', 'tensor z');
});

test('truncated data is detected at open', () => {
  const d = tmp();
  const buf = encodeSafetensors({ a: f32Tensor([4, 4]) });
  writeFileSync(join(d, 'model.safetensors'), buf.subarray(0, buf.length - 5));
  expectLoadError(() => new Checkpoint(d), 'model.safetensors', 'truncated');
});

test('a header length beyond the file is detected', () => {
  const d = tmp();
  const buf = encodeSafetensors({ a: f32Tensor([2]) });
  buf.writeBigUInt64LE(10_000n, 0);
  writeFileSync(join(d, 'model.safetensors'), buf);
  expectLoadError(() => new Checkpoint(d), 'header length');
});

test('a header whose byte range disagrees with dtype × shape is detected', () => {
  const d = tmp();
  writeSafetensors(join(d, 'model.safetensors'), { a: f32Tensor([2, 2]) }, (h) => { h.a.shape = [2, 3]; });
  expectLoadError(() => new Checkpoint(d), 'tensor a', '24 bytes', '16 bytes', 'header lies');
});

test('overlapping tensor data is detected', () => {
  const d = tmp();
  writeSafetensors(join(d, 'model.safetensors'), { a: f32Tensor([2]), b: f32Tensor([2]) }, (h) => { h.b.data_offsets = [4, 12]; });
  expectLoadError(() => new Checkpoint(d), 'overlap');
});

test('an unsupported dtype is refused with the supported list', () => {
  const d = tmp();
  writeSafetensors(join(d, 'model.safetensors'), { a: { dtype: 'F32', shape: [2], data: new Uint8Array(8) } }, (h) => { h.a.dtype = 'I64'; h.a.shape = [1]; });
  expectLoadError(() => new Checkpoint(d), 'BF16, F16, F32, I8 or U8', 'I64');
});

test('a non-JSON header is refused', () => {
  const d = tmp();
  const buf = encodeSafetensors({ a: f32Tensor([2]) });
  buf.write('{{{{', 8);
  writeFileSync(join(d, 'model.safetensors'), buf);
  expectLoadError(() => new Checkpoint(d), 'JSON');
});

test('large reads are chunked correctly (content round-trips)', () => {
  const d = tmp();
  writeSafetensors(join(d, 'model.safetensors'), { big: f32Tensor([1000, 257], (i) => (i * 7919) % 1013) });
  const a = new Checkpoint(d).read('big') as Float32Array;
  assert.equal(a.length, 257000);
  assert.equal(a[123456], (123456 * 7919) % 1013);
  assert.ok(readFileSync(join(d, 'model.safetensors')).length > 1_000_000);
});

/** A checkpoint of every dtype, with an odd-length tensor first so that later data starts misaligned. */
function mixedCheckpoint(d: string, misalign: boolean): void {
  const bf = new Uint16Array(4097);
  for (let i = 0; i < bf.length; i++) bf[i] = (i * 40503) & 0xffff;
  writeSafetensors(join(d, 'model.safetensors'), {
    ...(misalign ? { odd: { dtype: 'BF16', shape: [1], data: new Uint8Array(2) } } : {}),
    w: { dtype: 'BF16', shape: [17, 241], data: new Uint8Array(bf.buffer, 0, 17 * 241 * 2) },
    f: f32Tensor([33, 65], (i) => Math.sin(i) * 1e3),
    h: { dtype: 'F16', shape: [5], data: new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000]).buffer) },
  });
}

test('mapped tensors are bit-identical to tensors read from disk, aligned or not (misaligned ones are copied)', { skip: noMapping }, () => {
  for (const misalign of [false, true]) {
    const d = tmp();
    mixedCheckpoint(d, misalign);
    const mapped = new Checkpoint(d);
    const read = new Checkpoint(d, { map: false });
    for (const name of read.names()) {
      const a = mapped.read(name);
      const b = read.read(name);
      assert.equal(a.constructor, b.constructor, name);
      assert.deepEqual(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength), name);
      // a view into the mapping (the whole file) where the data is aligned to its element size; else a copy
      const info = mapped.info(name)!;
      const aligned = info.begin % (b instanceof Float32Array ? 4 : 2) === 0;
      assert.equal(a.buffer.byteLength > a.byteLength, aligned, `${name} (misalign ${misalign}): a view iff aligned`);
    }
    // released pages come back with the same bytes
    const before = Buffer.from(mapped.read('f').buffer, mapped.read('f').byteOffset, mapped.read('f').byteLength);
    const view = mapped.read('f');
    mapped.release('f');
    mapped.release();
    assert.deepEqual(Buffer.from(view.buffer, view.byteOffset, view.byteLength), before);
  }
});

test('a mapped file truncated after it was opened is refused with the same message as a read one', () => {
  for (const map of [true, false]) {
    const d = tmp();
    mixedCheckpoint(d, false);
    const ck = new Checkpoint(d, { map });
    ck.read('w');
    truncateSync(join(d, 'model.safetensors'), ck.info('f')!.end - 4);
    expectLoadError(() => ck.read('f'), 'model.safetensors', `at least ${ck.info('f')!.end} bytes (for f)`, 'the file changed or was truncated after it was opened');
    assert.equal(ck.read('w').length, 17 * 241); // earlier tensors still within the file are fine
  }
});

test('no file descriptor stays open: not after a checkpoint is opened, read or refused, mapped or not', { skip: process.platform !== 'linux' && 'counts /proc/self/fd' }, () => {
  const d = tmp();
  mixedCheckpoint(d, true);
  const bad = tmp();
  const buf = encodeSafetensors({ a: f32Tensor([4, 4]) });
  writeFileSync(join(bad, 'model.safetensors'), buf.subarray(0, buf.length - 5));
  const fds = () => readdirSync('/proc/self/fd').length;
  const n0 = fds();
  for (let i = 0; i < 50; i++) {
    for (const map of [true, false]) {
      const ck = new Checkpoint(d, { map });
      for (const name of ck.names()) ck.read(name);
      ck.release();
      assert.throws(() => new Checkpoint(bad, { map }), LoadError);
    }
  }
  assert.equal(fds(), n0);
});
