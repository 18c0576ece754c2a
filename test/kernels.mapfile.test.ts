/**
 * The addon's release(mapping, offset, length) drops pages with MADV_DONTNEED: harmless on a private file mapping
 * (the bytes fault back in from the file), but it zeroes the pages of any other memory. It must accept only the
 * ArrayBuffers mapFile() returned, and refuse every other one (a plain buffer, a Node Buffer's pool, a copy of a
 * mapping) with one TypeError line, leaving that buffer's bytes as they were.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeAddon } from '../src/kernels/native.js';
import { needsNative } from './helpers/native.js';

const REFUSED = 'release: mapping must be an ArrayBuffer from mapFile(), found an ArrayBuffer it did not map (dropping its pages would zero them)';
const PAGES = 4;
const BYTES = PAGES * 65536; // whole pages for any page size up to 64 KiB

/** BYTES bytes, none zero, so a page dropped to zero shows. */
function pattern(): Uint8Array {
  const b = new Uint8Array(BYTES);
  for (let i = 0; i < b.length; i++) b[i] = 1 + (i % 251);
  return b;
}

test('release: a mapping from mapFile() is released and reads back the same bytes; any other ArrayBuffer is refused untouched', needsNative(), () => {
  const addon = loadNativeAddon();
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-mapfile-'));
  try {
    const file = join(dir, 'data.bin');
    const want = pattern();
    writeFileSync(file, want);
    const fd = openSync(file, 'r');
    let mapping: ArrayBuffer;
    try {
      mapping = addon.mapFile(fd, BYTES);
    } finally {
      closeSync(fd);
    }
    assert.deepEqual(new Uint8Array(mapping), want);
    addon.release(mapping, 0, BYTES);
    addon.release(mapping, 100, BYTES - 200);
    assert.deepEqual(new Uint8Array(mapping), want, 'released pages fault back in with the file\'s bytes');
    // Still range-checked.
    assert.throws(() => addon.release(mapping, 0, BYTES + 1), { name: 'RangeError', message: `release: range [0, ${BYTES + 1}) is outside the ${BYTES}-byte mapping` });

    const others: Array<[string, ArrayBuffer]> = [
      ['a plain ArrayBuffer', new ArrayBuffer(BYTES)],
      ['a copy of a mapping', mapping.slice(0)],
      ['a Node Buffer\'s memory', Buffer.alloc(BYTES).buffer as ArrayBuffer],
      ['a WebAssembly memory', new WebAssembly.Memory({ initial: PAGES }).buffer],
    ];
    for (const [what, ab] of others) {
      const view = new Uint8Array(ab);
      view.set(want.subarray(0, Math.min(view.length, want.length)));
      const before = view.slice();
      assert.throws(() => addon.release(ab, 0, ab.byteLength), { name: 'TypeError', message: REFUSED }, what);
      // Refused before the range is looked at: an out-of-range call on a foreign buffer is the same refusal.
      assert.throws(() => addon.release(ab, 0, ab.byteLength + 1), { name: 'TypeError', message: REFUSED }, what);
      assert.deepEqual(view, before, `${what}: its bytes are unchanged`);
    }
    // Not an ArrayBuffer at all: the existing message.
    assert.throws(() => addon.release(new Uint8Array(8) as never, 0, 8), { name: 'TypeError', message: 'release: mapping must be an ArrayBuffer from mapFile(), found a Uint8Array' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
