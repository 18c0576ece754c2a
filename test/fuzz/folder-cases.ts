/**
 * Hostile model folders for the loader fuzz (folders.test.ts): case `i` of seed `s` is always the same folder, built
 * from a small test fixture (test/fixtures/llada-tiny, dream-tiny and their sharded f32 copies) with one to three
 * mutations: FIFOs, /dev/zero and other non-files in place of any file, oversized (sparse) files, truncated or
 * garbled bytes, wrong types or deleted keys in every JSON file, hostile chat templates, special ids out of range,
 * tokenizers bigger than the model, lying safetensors headers and shard indexes, absurd config sizes.
 *
 * The case folder holds symlinks to the fixture's files; a mutated file replaces its link (unlink, then an
 * exclusive create), so a fixture is never written through.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILE_LIMITS } from '../../src/load/files.js';
import { MAX_TEMPLATE_SOURCE_CHARS } from '../../src/load/chat-template.js';
import { Rng } from '../../src/sampler/rng.js';
import { fixturePath } from '../helpers/fixtures.js';

export const BASE_FIXTURES = ['llada-tiny', 'dream-tiny', 'llada-tiny-f32-sharded', 'dream-tiny-f32-sharded'] as const;
/** Test goldens in the fixture folders: not part of a model folder. */
const NOT_MODEL_FILES = new Set(['reference.json', 'dyllm.json', 'generate.json', 'bf16-reference.json']);

type Json = Record<string, unknown>;

export interface FolderCase {
  readonly index: number;
  readonly fixture: string;
  /** What was done to the folder, one entry per mutation. */
  readonly mutations: string[];
}

class Pick {
  constructor(readonly rng: Rng) {}
  float(): number {
    return this.rng.nextFloat64();
  }
  int(n: number): number {
    return Math.floor(this.rng.nextFloat64() * n);
  }
  one<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.rng.nextFloat64() < p;
  }
}

/** The model files of a case folder (what a loader may open). */
function modelFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => !NOT_MODEL_FILES.has(f)).sort();
}

/** Replace `name` in the case folder (a link to the fixture, or an earlier mutation's file) by new bytes. */
function put(dir: string, name: string, data: string | Buffer): void {
  const p = join(dir, name);
  remove(p);
  writeFileSync(p, data, { flag: 'wx' });
}

function remove(p: string): void {
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return;
  }
  if (st.isDirectory()) rmSync(p, { recursive: true, force: true });
  else unlinkSync(p);
}

/**
 * Current bytes of a case file (following its link to the fixture), or null if it is not a readable regular file
 * now, or one an earlier mutation made huge (sparse): those are left as they are.
 */
function bytes(dir: string, name: string): Buffer | null {
  try {
    const st = statSync(join(dir, name));
    if (!st.isFile() || st.size > 16 * 1024 * 1024) return null;
    return readFileSync(join(dir, name));
  } catch {
    return null;
  }
}

function json(dir: string, name: string): Json | null {
  const b = bytes(dir, name);
  if (!b) return null;
  try {
    const v = JSON.parse(b.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null;
  } catch {
    return null;
  }
}

const LIMIT_OF: Record<string, number> = {
  'config.json': FILE_LIMITS['json-config'],
  'generation_config.json': FILE_LIMITS['json-config'],
  'special_tokens_map.json': FILE_LIMITS['json-config'],
  'added_tokens.json': FILE_LIMITS['json-config'],
  'chat_template.json': FILE_LIMITS['json-config'],
  'tokenizer_config.json': FILE_LIMITS['tokenizer-config'],
  'tokenizer.json': FILE_LIMITS.tokenizer,
  'vocab.json': FILE_LIMITS.tokenizer,
  'merges.txt': FILE_LIMITS.tokenizer,
  'model.safetensors.index.json': FILE_LIMITS.index,
  'chat_template.jinja': FILE_LIMITS.template,
};

/** Values that are wrong for most keys, in most ways. */
const HOSTILE_VALUES: readonly unknown[] = [
  null, true, false, 0, -1, 1, 2.5, -0.5, 1e9, 1e308, 2 ** 53, -(2 ** 53), '', 'x', '\n', '12', 'NaN', [], [1, 2], [[1]], {}, { a: 1 },
  { content: 5 }, 'x'.repeat(100_000),
];

function hostileValue(p: Pick): unknown {
  return p.one(HOSTILE_VALUES);
}

/** A random path into a JSON value (objects and arrays), at most `depth` steps. */
function randomPath(p: Pick, v: unknown, depth: number): (string | number)[] {
  const path: (string | number)[] = [];
  let cur = v;
  for (let d = 0; d < depth; d++) {
    if (Array.isArray(cur) && cur.length > 0) {
      const i = p.int(cur.length);
      path.push(i);
      cur = cur[i];
    } else if (cur && typeof cur === 'object' && Object.keys(cur).length > 0) {
      const k = p.one(Object.keys(cur));
      path.push(k);
      cur = (cur as Json)[k];
    } else break;
    if (p.chance(0.35)) break;
  }
  return path;
}

function setAt(root: Json, path: (string | number)[], value: unknown, del: boolean): void {
  let cur: any = root;
  for (let i = 0; i < path.length - 1; i++) cur = cur[path[i]];
  const last = path[path.length - 1];
  if (del) {
    if (Array.isArray(cur)) cur.splice(last as number, 1);
    else delete cur[last];
  } else cur[last] = value;
}

// ---- the mutations ----------------------------------------------------------------------------------------------

type Mutation = (p: Pick, dir: string) => string;

const special: Mutation = (p, dir) => {
  const name = p.one([...modelFiles(dir), 'chat_template.jinja', 'tokenizer.json', 'generation_config.json']);
  const path = join(dir, name);
  const kind = p.one(['fifo', 'dev-zero', 'dev-null', 'directory', 'dangling-link', 'link-loop', 'link-to-dir']);
  remove(path);
  switch (kind) {
    case 'fifo':
      if (spawnSync('mkfifo', [path]).status !== 0) throw new Error('mkfifo failed');
      break;
    case 'dev-zero':
      symlinkSync('/dev/zero', path);
      break;
    case 'dev-null':
      symlinkSync('/dev/null', path);
      break;
    case 'directory':
      mkdirSync(path);
      break;
    case 'dangling-link':
      symlinkSync(join(dir, 'no-such-file'), path);
      break;
    case 'link-loop':
      symlinkSync(path, path);
      break;
    case 'link-to-dir':
      symlinkSync(dir, path);
      break;
  }
  return `${name} -> ${kind}`;
};

const oversize: Mutation = (p, dir) => {
  const names = modelFiles(dir).filter((n) => LIMIT_OF[n] !== undefined || n.endsWith('.safetensors'));
  const name = p.one(names);
  const b = bytes(dir, name) ?? Buffer.alloc(0);
  if (name.endsWith('.safetensors')) {
    // A sparse 8 GiB file with the real header at its start: the header is valid, the data section huge.
    put(dir, name, b);
    truncateSync(join(dir, name), 8 * 1024 ** 3);
    return `${name}: sparse 8 GiB`;
  }
  // Sparse, one byte over its kind's limit, starting with the real content.
  put(dir, name, b);
  truncateSync(join(dir, name), LIMIT_OF[name] + 1 + (p.chance(0.3) ? 1024 ** 3 : 0));
  // (a later mutation leaves such a file alone: bytes() skips it)
  return `${name}: ${LIMIT_OF[name] + 1}+ bytes`;
};

const truncate: Mutation = (p, dir) => {
  const name = p.one(modelFiles(dir));
  const b = bytes(dir, name);
  if (!b) return `${name}: (not a file, left)`;
  const at = p.chance(0.2) ? 0 : p.int(b.length);
  put(dir, name, b.subarray(0, at));
  return `${name}: truncated at ${at}/${b.length}`;
};

const garble: Mutation = (p, dir) => {
  const name = p.one(modelFiles(dir));
  const b = bytes(dir, name);
  if (!b || b.length === 0) return `${name}: (empty, left)`;
  const out = Buffer.from(b);
  const how = p.one(['flip', 'span', 'insert', 'bom', 'nul']);
  let desc = '';
  // For safetensors, garble the header region mostly (the data is just numbers).
  const region = name.endsWith('.safetensors') ? Math.min(b.length, 8 + Number(b.readBigUInt64LE(0) & 0xffffffn)) : b.length;
  switch (how) {
    case 'flip': {
      const n = 1 + p.int(8);
      for (let k = 0; k < n; k++) out[p.int(region)] ^= 1 << p.int(8);
      desc = `${n} bit flips`;
      break;
    }
    case 'span': {
      const at = p.int(region);
      const len = Math.min(1 + p.int(64), out.length - at);
      for (let k = 0; k < len; k++) out[at + k] = p.int(256);
      desc = `${len} random bytes at ${at}`;
      break;
    }
    case 'insert': {
      const at = p.int(region);
      const junk = p.one(['{', '}', '"', ']', ',', '\\', '\u0000', '\ud800', 'null', '{"a":', '\n']);
      put(dir, name, Buffer.concat([b.subarray(0, at), Buffer.from(junk), b.subarray(at)]));
      return `${name}: inserted ${JSON.stringify(junk)} at ${at}`;
    }
    case 'bom':
      put(dir, name, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]));
      return `${name}: UTF-8 BOM prepended`;
    case 'nul':
      put(dir, name, Buffer.alloc(b.length));
      return `${name}: all NUL bytes`;
  }
  put(dir, name, out);
  return `${name}: ${desc}`;
};

const jsonFiles = (dir: string) => modelFiles(dir).filter((n) => n.endsWith('.json') && json(dir, n) !== null);

const wrongType: Mutation = (p, dir) => {
  const names = jsonFiles(dir);
  if (names.length === 0) return '(no JSON file left)';
  // config.json and generation_config.json hold the sizes and ids: mutate them more often.
  const main = names.filter((n) => n === 'config.json' || n === 'generation_config.json');
  const name = main.length > 0 && p.chance(0.5) ? p.one(main) : p.one(names);
  const j = json(dir, name)!;
  const path = randomPath(p, j, name === 'tokenizer.json' ? 4 : 3);
  if (path.length === 0) {
    const top = p.one(['[]', '42', 'null', '"text"', 'true']);
    put(dir, name, top);
    return `${name}: top level ${top}`;
  }
  const del = p.chance(0.25);
  const v = hostileValue(p);
  setAt(j, path, v, del);
  put(dir, name, JSON.stringify(j));
  return `${name}: ${JSON.stringify(path)} ${del ? 'deleted' : `= ${JSON.stringify(v)?.slice(0, 40)}`}`;
};

export const HOSTILE_TEMPLATES: Readonly<Record<string, string | (() => string)>> = {
  'huge range': '{% for i in range(100000000) %}x{% endfor %}',
  'nested loops': '{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}',
  'string doubling': "{% set ns = namespace(s='abcdefgh') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
  'list growth': '{% set ns = namespace(l=[]) %}{% for i in range(100000000) %}{% set ns.l = ns.l + [i, i] %}{% endfor %}',
  'output bomb': '{% for i in range(10000000) %}0123456789{% endfor %}',
  'macro recursion': '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  'macro calls macro': '{% macro a(n) %}{% for i in range(n) %}{{ b(n) }}{% endfor %}{% endmacro %}{% macro b(n) %}{% for i in range(n) %}x{% endfor %}{% endmacro %}{{ a(100000) }}',
  raise: "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
  'raise on user': "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('no users') }}{% endif %}{% endfor %}",
  'parse error': '{% for m in messages %}{{ m.content }',
  'undefined call': '{{ no_such_function(messages) }}',
  'deep nesting': () => `{{ ${'('.repeat(20_000)}1${')'.repeat(20_000)} }}`,
  'huge source': () => '{{ "x" }}'.repeat(Math.ceil((MAX_TEMPLATE_SOURCE_CHARS + 10) / 9)),
  'long literal': () => `{{ "${'y'.repeat(200_000)}" }}`,
  'loop over content': "{% for m in messages %}{% for c in m.content * 1 %}{% endfor %}{% endfor %}",
  'loop depends on content': "{% for m in messages %}{% if m.content | length < 5 %}{% for i in range(100000000) %}{% endfor %}{% endif %}{{ m.content }}{% endfor %}",
  'control chars': '{{ "\\u0000\\n\\r" }}{% for m in messages %}{{ m.content }}{% endfor %}',
};

const template: Mutation = (p, dir) => {
  const kind = p.one(Object.keys(HOSTILE_TEMPLATES));
  const t = HOSTILE_TEMPLATES[kind];
  const src = typeof t === 'function' ? t() : t;
  const where = p.one(['tokenizer_config.json', 'tokenizer_config.json list', 'chat_template.jinja', 'non-string']);
  if (where === 'chat_template.jinja') {
    // Only used when tokenizer_config.json has no chat_template.
    const c = json(dir, 'tokenizer_config.json');
    if (c) {
      delete c.chat_template;
      put(dir, 'tokenizer_config.json', JSON.stringify(c));
    }
    put(dir, 'chat_template.jinja', src);
    return `chat_template.jinja: ${kind}`;
  }
  const c = json(dir, 'tokenizer_config.json') ?? {};
  if (where === 'non-string') c.chat_template = p.one([42, [{ name: 'default' }], [], { template: src }, [{ name: 'x', template: 5 }]]);
  else c.chat_template = where === 'tokenizer_config.json' ? src : [{ name: 'tool_use', template: 'x' }, { name: 'default', template: src }];
  put(dir, 'tokenizer_config.json', JSON.stringify(c));
  return `tokenizer_config.json chat_template (${where}): ${kind}`;
};

const specialId: Mutation = (p, dir) => {
  const file = p.one(['config.json', 'generation_config.json']);
  const key = p.one(['mask_token_id', 'eos_token_id', 'pad_token_id', 'bos_token_id']);
  const cfg = json(dir, 'config.json') ?? {};
  const vocab = Number(cfg.embedding_size ?? cfg.vocab_size ?? 300);
  const v = p.one([vocab, vocab - 1, vocab + 1, -1, 1e12, 2.5, '5', [1, 2], null, 2 ** 53, Number.isFinite(vocab) ? Math.floor(vocab * 0.9) : 7]);
  const j = json(dir, file) ?? {};
  j[key] = v;
  put(dir, file, JSON.stringify(j));
  return `${file}: ${key} = ${JSON.stringify(v)}`;
};

const bigTokenizer: Mutation = (p, dir) => {
  const how = p.one(['added past vocab', 'one huge added id', 'vocab huge id', 'vocab negative id', 'vocab string id', 'added_tokens.json huge id', 'decoder huge id']);
  const t = json(dir, 'tokenizer.json');
  if (how.startsWith('added_tokens.json') || how.startsWith('decoder') || !t) {
    if (how.startsWith('decoder') || !existsSync(join(dir, 'added_tokens.json'))) {
      const c = json(dir, 'tokenizer_config.json') ?? {};
      const dec = (c.added_tokens_decoder ?? {}) as Json;
      dec[String(p.one([1e9, 4096, 100000]))] = { content: '<|huge|>', special: true };
      c.added_tokens_decoder = dec;
      put(dir, 'tokenizer_config.json', JSON.stringify(c));
      return 'tokenizer_config.json: added_tokens_decoder entry with a huge id';
    }
    const a = json(dir, 'added_tokens.json') ?? {};
    a['<|huge|>'] = p.one([1e9, 4096, -4, 'x']);
    put(dir, 'added_tokens.json', JSON.stringify(a));
    return `added_tokens.json: ${JSON.stringify(a['<|huge|>'])}`;
  }
  const model = t.model as Json;
  const vocab = (model && typeof model === 'object' ? model.vocab : null) as Json;
  // An earlier mutation may have broken these already.
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab) || !Array.isArray(t.added_tokens)) return 'tokenizer.json: (already broken, left)';
  switch (how) {
    case 'added past vocab': {
      const added = t.added_tokens as Json[];
      const n = 1 + p.int(200);
      const start = 1 + Math.max(...added.map((a) => Number(a.id)), ...Object.values(vocab).map(Number));
      for (let i = 0; i < n; i++) added.push({ id: start + i, content: `<|x${i}|>`, special: true, normalized: false });
      break;
    }
    case 'one huge added id':
      (t.added_tokens as Json[]).push({ id: p.one([1e9, 2 ** 31, 2 ** 53 - 1]), content: '<|huge|>', special: true });
      break;
    case 'vocab huge id':
      vocab['zzhuge'] = p.one([1e9, 2 ** 31]);
      break;
    case 'vocab negative id':
      vocab['zzneg'] = -7;
      break;
    case 'vocab string id':
      vocab['zzstr'] = '12';
      break;
  }
  put(dir, 'tokenizer.json', JSON.stringify(t));
  return `tokenizer.json: ${how}`;
};

/** Read a safetensors file's header object and its data bytes. */
function splitSafetensors(b: Buffer): { header: Json; data: Buffer } | null {
  if (b.length < 8) return null;
  const n = Number(b.readBigUInt64LE(0));
  if (8 + n > b.length) return null;
  try {
    return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Json, data: b.subarray(8 + n) };
  } catch {
    return null;
  }
}

function joinSafetensors(header: unknown, data: Buffer, lenOverride?: bigint): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

const safetensorsLie: Mutation = (p, dir) => {
  const shards = modelFiles(dir).filter((n) => n.endsWith('.safetensors'));
  if (shards.length === 0) return '(no shard)';
  const name = p.one(shards);
  const b = bytes(dir, name);
  const st = b && splitSafetensors(b);
  if (!st || !st.header || typeof st.header !== 'object' || Array.isArray(st.header)) return `${name}: (unreadable, left)`;
  const names = Object.keys(st.header).filter((k) => k !== '__metadata__');
  if (names.length === 0) return `${name}: (no tensors, left)`;
  const t = p.one(names);
  const entry = st.header[t];
  // An earlier mutation may have broken the entry itself; lie about a fresh one then.
  const e = (entry && typeof entry === 'object' ? entry : (st.header[t] = {})) as { dtype: unknown; shape: unknown; data_offsets: unknown };
  const how = p.one([
    'length 2^63', 'length past file', 'length 0', 'header array', 'offsets overlap', 'offsets past data', 'offsets reversed',
    'shape lies', 'shape huge', 'shape negative', 'dtype I64', 'dtype number', 'entry missing', 'entry extra', 'name with newline',
    'metadata wrong', 'data truncated', 'tensor wrong shape',
  ]);
  let out: Buffer;
  switch (how) {
    case 'length 2^63':
      out = joinSafetensors(st.header, st.data, 1n << 63n);
      break;
    case 'length past file':
      out = joinSafetensors(st.header, st.data, BigInt(b.length));
      break;
    case 'length 0':
      out = joinSafetensors(st.header, st.data, 0n);
      break;
    case 'header array':
      out = joinSafetensors([1, 2, 3], st.data);
      break;
    case 'offsets overlap': {
      const other = st.header[p.one(names)] as { data_offsets?: unknown } | null;
      e.data_offsets = Array.isArray(other?.data_offsets) ? [...other.data_offsets] : [0, 4];
      out = joinSafetensors(st.header, st.data);
      break;
    }
    case 'offsets past data': {
      const [a, z] = Array.isArray(e.data_offsets) ? (e.data_offsets as number[]) : [0, 4];
      e.data_offsets = [a + st.data.length, z + st.data.length];
      out = joinSafetensors(st.header, st.data);
      break;
    }
    case 'offsets reversed':
      e.data_offsets = Array.isArray(e.data_offsets) ? [...e.data_offsets].reverse() : [4, 0];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'shape lies':
      e.shape = [...(Array.isArray(e.shape) ? e.shape : []), 2];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'shape huge':
      e.shape = [2 ** 40, 2 ** 40];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'shape negative':
      e.shape = [-1, 4];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'dtype I64':
      e.dtype = 'I64';
      out = joinSafetensors(st.header, st.data);
      break;
    case 'dtype number':
      e.dtype = 5;
      out = joinSafetensors(st.header, st.data);
      break;
    case 'entry missing':
      delete st.header[t];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'entry extra':
      st.header['extra.weight'] = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
      out = joinSafetensors(st.header, st.data);
      break;
    case 'name with newline':
      st.header[`${t}\nsecond line`] = st.header[t];
      delete st.header[t];
      out = joinSafetensors(st.header, st.data);
      break;
    case 'metadata wrong':
      st.header.__metadata__ = p.one([5, 'x', [1], { format: { nested: true } }]);
      out = joinSafetensors(st.header, st.data);
      break;
    case 'data truncated':
      out = joinSafetensors(st.header, st.data.subarray(0, p.int(st.data.length)));
      break;
    default: {
      // A consistent header whose tensor has a different shape than config.json implies.
      const shape = Array.isArray(e.shape) ? (e.shape as number[]) : [4];
      const [a, z] = Array.isArray(e.data_offsets) ? (e.data_offsets as number[]) : [0, 4];
      if (shape.length === 2 && shape[0] % 2 === 0) {
        e.shape = [shape[0] / 2, shape[1] * 2];
      } else {
        e.shape = [shape.reduce((x, y) => x * y, 1)];
      }
      e.data_offsets = [a, z];
      out = joinSafetensors(st.header, st.data);
    }
  }
  put(dir, name, out);
  return `${name}: ${how} (${t})`;
};

const indexLie: Mutation = (p, dir) => {
  const idx = json(dir, 'model.safetensors.index.json');
  if (!idx) return '(no index)';
  const wm = idx.weight_map as Json;
  // An earlier mutation may have replaced the map already.
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) return '(weight_map already broken, left)';
  const names = Object.keys(wm);
  const how = p.one(['missing shard', 'path escape', 'absolute path', 'wrong shard', 'weight_map array', 'weight_map missing', 'value number', 'tensor dropped', 'shard is the index']);
  const t = p.one(names);
  switch (how) {
    case 'missing shard':
      wm[t] = 'model-99999-of-99999.safetensors';
      break;
    case 'path escape':
      wm[t] = '../llada-tiny/model.safetensors';
      break;
    case 'absolute path':
      wm[t] = '/dev/zero';
      break;
    case 'wrong shard': {
      const shards = [...new Set(Object.values(wm))];
      wm[t] = p.one(shards);
      break;
    }
    case 'weight_map array':
      idx.weight_map = Object.entries(wm);
      break;
    case 'weight_map missing':
      delete idx.weight_map;
      break;
    case 'value number':
      wm[t] = 7;
      break;
    case 'tensor dropped':
      delete wm[t];
      break;
    case 'shard is the index':
      wm[t] = 'model.safetensors.index.json';
      break;
  }
  put(dir, 'model.safetensors.index.json', JSON.stringify(idx));
  return `model.safetensors.index.json: ${how}`;
};

const configSizes: Mutation = (p, dir) => {
  const c = json(dir, 'config.json');
  if (!c) return '(no config)';
  const keys = [
    'd_model', 'n_heads', 'n_kv_heads', 'n_layers', 'mlp_hidden_size', 'mlp_ratio', 'vocab_size', 'embedding_size', 'max_sequence_length',
    'hidden_size', 'num_attention_heads', 'num_key_value_heads', 'num_hidden_layers', 'intermediate_size', 'max_position_embeddings',
    'rope_theta', 'rms_norm_eps',
  ].filter((k) => k in c);
  const k = p.one(keys);
  const v = p.one([0, 1, 3, 1e9, 2 ** 31, 2 ** 53, 1e308, -1, 0.5, Number(c[k]) * 2, Number(c[k]) + 1, Number(c[k]) - 1]);
  c[k] = v;
  put(dir, 'config.json', JSON.stringify(c));
  return `config.json: ${k} = ${v}`;
};

const generationValues: Mutation = (p, dir) => {
  const g = json(dir, 'generation_config.json') ?? {};
  const k = p.one(['max_new_tokens', 'steps', 'block_length', 'temperature', 'top_p', 'top_k', 'eps', 'alg', 'alg_temp']);
  const v = p.one([1e9, 0, -1, 1, 7, 64, 0.5, 1.5, 'entropy', 'x', null, true, [], 2 ** 53, 4096, 4097, 131073]);
  g[k] = v;
  put(dir, 'generation_config.json', JSON.stringify(g));
  return `generation_config.json: ${k} = ${JSON.stringify(v)}`;
};

const MUTATIONS: readonly [Mutation, number][] = [
  [special, 3],
  [oversize, 1],
  [truncate, 2],
  [garble, 2],
  [wrongType, 4],
  [template, 3],
  [specialId, 2],
  [bigTokenizer, 2],
  [safetensorsLie, 3],
  [indexLie, 1],
  [configSizes, 2],
  [generationValues, 2],
];
const TOTAL = MUTATIONS.reduce((a, [, w]) => a + w, 0);

function pickMutation(p: Pick, sharded: boolean): Mutation {
  for (;;) {
    let x = p.float() * TOTAL;
    for (const [m, w] of MUTATIONS) {
      x -= w;
      if (x < 0) {
        if (m === indexLie && !sharded) break;
        return m;
      }
    }
  }
}

/** Build case `index` of `seed` in `dir` (which must not exist yet). Deterministic in (seed, index). */
export function buildCase(seed: number, index: number, dir: string): FolderCase {
  const p = new Pick(new Rng((seed * 1_000_003 + index) % Number.MAX_SAFE_INTEGER));
  const fixture = p.one(BASE_FIXTURES);
  mkdirSync(dir);
  const src = fixturePath(fixture);
  for (const f of readdirSync(src)) if (!NOT_MODEL_FILES.has(f)) symlinkSync(join(src, f), join(dir, f));
  const n = 1 + (p.chance(0.3) ? 1 + p.int(2) : 0);
  const mutations: string[] = [];
  for (let k = 0; k < n; k++) mutations.push(pickMutation(p, fixture.endsWith('sharded'))(p, dir));
  return { index, fixture, mutations };
}
