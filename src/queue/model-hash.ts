/**
 * A model folder's content hash, so that a queued job only runs on a worker whose model computes what the
 * coordinator's does (workers listen on the queue of their own hash, and check every job's).
 *
 * What is hashed (sha256): every file that decides what a job computes besides the weights — config.json,
 * generation_config.json (option defaults), the tokenizer and chat-template files, the shard index — in full;
 * and for every .safetensors file its name, its size, its whole header (tensor names, dtypes, shapes, offsets)
 * and SAMPLES of its tensor data: 16 evenly spaced 64 KiB windows (1 MiB per file).
 *
 * Why not every weight byte: an 8B checkpoint is ~16 GB; reading and hashing it costs tens of seconds to minutes
 * per worker start and per coordinator run on a shared disk, while header + size + samples cost a few MB of reads.
 * Headers and sizes tell different architectures, shardings and dtypes apart but not two fine-tunes of one base
 * (LLaDA-8B-Base and -Instruct have the same shapes); the samples do, because a fine-tune changes essentially every
 * tensor. Two folders that differ only in bytes outside the samples would share a hash — that takes deliberate
 * editing, not a different download.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { LoadError } from '../load/errors.js';

/** Files hashed in full when present (config, option defaults, tokenizer, chat template, shard index). */
const TEXT_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'chat_template.jinja', 'chat_template.json', 'vocab.json', 'merges.txt', 'added_tokens.json', 'model.safetensors.index.json',
];
const SAMPLES = 16;
const SAMPLE_BYTES = 64 * 1024;
/** safetensors' own bound on a header (load/safetensors.ts). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const CHUNK = 1 << 20;

function hashRange(h: Hash, fd: number, start: number, length: number, buf: Buffer, file: string): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, length - done), start + done);
    if (n <= 0) throw new LoadError(file, `${length} bytes from offset ${start}`, `end of file after ${done}`, 'the file is truncated');
    h.update(buf.subarray(0, n));
    done += n;
  }
}

function hashFile(h: Hash, dir: string, name: string, buf: Buffer): void {
  const path = join(dir, name);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    h.update(`file ${name} ${size}\n`);
    hashRange(h, fd, 0, size, buf, path);
  } finally {
    closeSync(fd);
  }
}

function hashSafetensors(h: Hash, dir: string, name: string, buf: Buffer): void {
  const path = join(dir, name);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    h.update(`safetensors ${name} ${size}\n`);
    if (size < 8) throw new LoadError(path, 'at least 8 bytes (header length)', `${size} bytes`, 'the file is truncated');
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const headerLen = Number(len.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
      throw new LoadError(path, `a header length ≤ file size (${size - 8} B)`, `${headerLen} B`, 'the header length is corrupt or the file is truncated');
    }
    hashRange(h, fd, 0, 8 + headerLen, buf, path);
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    if (dataSize <= SAMPLES * SAMPLE_BYTES) {
      hashRange(h, fd, dataStart, dataSize, buf, path);
      return;
    }
    for (let i = 0; i < SAMPLES; i++) {
      const off = dataStart + Math.floor(((dataSize - SAMPLE_BYTES) * i) / (SAMPLES - 1));
      hashRange(h, fd, off, SAMPLE_BYTES, buf, path);
    }
  } finally {
    closeSync(fd);
  }
}

/** The content hash of a model folder (64 hex digits); see the file comment for what it covers. */
export function modelHash(dir: string): string {
  if (!existsSync(join(dir, 'config.json'))) throw new LoadError(dir, 'a model folder with config.json', 'no config.json', 'point --model at a Hugging Face model folder');
  const h = createHash('sha256');
  h.update('dyllm model hash v1\n');
  const buf = Buffer.alloc(CHUNK);
  for (const f of TEXT_FILES) if (existsSync(join(dir, f))) hashFile(h, dir, f, buf);
  const shards = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (shards.length === 0) throw new LoadError(dir, 'model.safetensors or safetensors shards', 'none', 'point --model at a Hugging Face model folder');
  for (const f of shards) hashSafetensors(h, dir, f, buf);
  return h.digest('hex');
}
