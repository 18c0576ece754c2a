import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoadError } from './errors.js';
import { FILE_LIMITS, readJsonObject, readLimitedBytes, readOptionalJsonObject, readOptionalTextFile, readTextFile } from './files.js';

const root = mkdtempSync(join(tmpdir(), 'dyllm-files-'));
after(() => rmSync(root, { recursive: true, force: true }));

function expectRefused(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof LoadError, String(e));
    assert.ok(!e.message.includes('\n'), e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  });
}

/** mkfifo(1): Node has no API for it. Null where the system has none. */
function fifo(path: string): string | null {
  const r = spawnSync('mkfifo', [path]);
  return r.status === 0 ? path : null;
}

test('a regular file is read whole; a symlink to one is followed', () => {
  const f = join(root, 'config.json');
  writeFileSync(f, '{"a": 1}');
  assert.deepEqual(readJsonObject(f, 'json-config'), { a: 1 });
  const link = join(root, 'link.json');
  symlinkSync(f, link);
  assert.deepEqual(readJsonObject(link, 'json-config'), { a: 1 });
  // Invalid UTF-8 reads as U+FFFD, as readFileSync(…, 'utf8') does.
  const bad = join(root, 'bad.txt');
  writeFileSync(bad, Buffer.from([0x61, 0xff, 0x62]));
  assert.equal(readTextFile(bad, 'tokenizer'), 'a\ufffdb');
  const empty = join(root, 'empty.txt');
  writeFileSync(empty, '');
  assert.equal(readTextFile(empty, 'tokenizer'), '');
});

test('a file over its kind’s limit is refused before it is read, naming the limit', () => {
  const f = join(root, 'big.json');
  writeFileSync(f, Buffer.alloc(FILE_LIMITS['json-config'] + 1, 0x20));
  expectRefused(() => readJsonObject(f, 'json-config'), f, 'a JSON config file of at most 1 MiB (1048576 bytes), found 1048577 bytes');
  // Exactly at the limit is fine (here: whitespace around an object).
  writeFileSync(f, Buffer.concat([Buffer.from('{}'), Buffer.alloc(FILE_LIMITS['json-config'] - 2, 0x20)]));
  assert.deepEqual(readJsonObject(f, 'json-config'), {});
  expectRefused(() => readLimitedBytes(f, 100, 'a test file'), 'a test file of at most 100 B (100 bytes)');
});

test('FIFOs, devices, directories, sockets, dangling links and loops are refused at once', async (t) => {
  const p = fifo(join(root, 'fifo.json'));
  if (p) {
    // Without O_NONBLOCK and the fstat check, this open would wait for a writer forever.
    expectRefused(() => readJsonObject(p, 'json-config'), p, 'expected a JSON config file (a regular file), found a FIFO (named pipe)');
    expectRefused(() => readOptionalJsonObject(p, 'json-config'), 'a FIFO');
    expectRefused(() => readOptionalTextFile(p, 'tokenizer'), 'a FIFO');
  } else {
    t.diagnostic('mkfifo is not available: FIFO case skipped');
  }
  const zero = join(root, 'zero.json');
  symlinkSync('/dev/zero', zero);
  expectRefused(() => readJsonObject(zero, 'json-config'), zero, 'found a character device');
  const dir = join(root, 'adir.json');
  mkdirSync(dir);
  expectRefused(() => readTextFile(dir, 'tokenizer'), dir, 'found a directory');
  const dangling = join(root, 'dangling.json');
  symlinkSync(join(root, 'nothing-here'), dangling);
  expectRefused(() => readTextFile(dangling, 'json-config'), 'found a symbolic link to nothing');
  // A dangling link is "there": an optional file that is a broken link is an error, not silently absent.
  expectRefused(() => readOptionalTextFile(dangling, 'json-config'), 'a symbolic link to nothing');
  const loop = join(root, 'loop.json');
  symlinkSync(loop, loop);
  expectRefused(() => readTextFile(loop, 'json-config'), 'found a symbolic link loop');
  const sock = join(root, 's.sock');
  const server = createServer();
  await new Promise<void>((res) => server.listen(sock, res));
  try {
    expectRefused(() => readTextFile(sock, 'json-config'), 'found a socket');
  } finally {
    await new Promise((res) => server.close(res));
  }
  expectRefused(() => readTextFile(join(root, 'missing.json'), 'json-config'), 'found no such file');
  assert.equal(readOptionalTextFile(join(root, 'missing.json'), 'json-config'), null);
  assert.equal(readOptionalJsonObject(join(root, 'missing.json'), 'json-config'), null);
});

test('JSON that is not an object is named', () => {
  const f = join(root, 'arr.json');
  writeFileSync(f, '[1, 2]');
  expectRefused(() => readJsonObject(f, 'json-config'), 'expected a JSON object, found an array');
  writeFileSync(f, 'null');
  expectRefused(() => readJsonObject(f, 'json-config'), 'found null');
  writeFileSync(f, '{"a": ');
  expectRefused(() => readJsonObject(f, 'json-config'), 'expected valid JSON, found unparseable JSON');
});

test('LoadError messages stay on one line whatever the file holds', () => {
  const e = new LoadError('/m/model.safetensors', 'tensor "a\nb"', 'x'.repeat(10_000) + '\r\n\u2028');
  assert.ok(!/[\n\r\u2028]/.test(e.message), e.message);
  assert.ok(e.message.includes('tensor "a\\nb"'));
  assert.ok(e.message.length < 700, `${e.message.length}`);
  assert.equal(new LoadError('/m/g.json', 'an integer', '3', undefined, { key: 'steps' }).message, '/m/g.json: "steps": expected an integer, found 3');
});
