/**
 * `dyllm info MODEL`: what a model folder holds and how dyllm would run it, without loading the weights (only the
 * safetensors headers are read): architecture, parameters, dtypes, bytes, shape, context length, vocabulary,
 * tokenizer, chat template, special tokens, generation_config.json defaults, and the backend / ISA tier / threads.
 * `--json` prints one object.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadChatTemplate } from '../load/chat-template.js';
import { loadConfig } from '../load/config.js';
import { formatBytes, pathExists } from '../load/files.js';
import { resolveModelDir } from '../load/hub.js';
import { Checkpoint } from '../load/safetensors.js';
import { loadTokenizer } from '../load/tokenizer.js';
import { loadNativeAddon, loadNativeBackend } from '../kernels/native.js';
import { familyOf } from '../families/registry.js';
import { parse, UsageError } from './args.js';

export const INFO_HELP = `Usage: dyllm info MODEL [--json]

MODEL is a model folder, a bundled model's name (dyllm-demo) or a Hugging Face id org/name[@rev] in the
Hugging Face cache. Prints the architecture, parameters, dtypes, bytes on disk, layers / heads / dimensions,
context length, vocabulary, tokenizer, chat template, special tokens, generation_config.json defaults and the
kernel backend, ISA tier and threads that would run it. The weights are not loaded (only their headers are read).

  --json    print exactly one JSON object on stdout`;

/** Bytes of the regular files in a folder (symbolic links followed, as the Hugging Face cache's snapshots use them). */
function folderBytes(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const name of readdirSync(dir)) {
    try {
      const st = statSync(join(dir, name));
      if (!st.isFile()) continue;
      bytes += st.size;
      files++;
    } catch {
      // a dangling link: not on disk
    }
  }
  return { bytes, files };
}

/** The backend `--backend auto` would pick here, with its thread count (or why the native one is unavailable). */
function backendInfo(): { name: string; threads: number; reason: string | null } {
  try {
    const b = loadNativeBackend();
    return { name: b.name, threads: loadNativeAddon().threads(), reason: null };
  } catch (e) {
    return { name: 'reference', threads: 1, reason: (e as Error).message };
  }
}

function millions(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n);
}

export async function cmdInfo(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(INFO_HELP + '\n');
    return;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`expected one MODEL (a folder, a bundled model name such as dyllm-demo, or org/name[@rev]), found ${positionals.length}`);
  }
  const spec = positionals[0];
  const dir = resolveModelDir(spec);
  const { config, generation } = loadConfig(dir);
  const ckpt = new Checkpoint(dir);
  let parameters = 0;
  const dtypes: Record<string, number> = {};
  const shards = new Set<string>();
  for (const name of ckpt.names()) {
    const t = ckpt.info(name)!;
    parameters += t.shape.reduce((a, b) => a * b, 1);
    const d = t.dtype.toLowerCase();
    dtypes[d] = (dtypes[d] ?? 0) + 1;
    shards.add(t.file);
  }
  const disk = folderBytes(dir);
  const tokenizer = await loadTokenizer(dir);
  const template = await loadChatTemplate(dir);
  const tokenizerKind = pathExists(join(dir, 'tokenizer.json')) ? 'tokenizer.json' : 'vocab.json + merges.txt (Qwen2 byte-level BPE)';
  const eot = tokenizer.tokenToId(familyOf(config.arch).turnEndToken) ?? null;
  const special: Record<string, { id: number; token: string | null } | null> = {};
  for (const [k, id] of [['mask', config.maskTokenId], ['eos', config.eosTokenId], ['eot', eot], ['bos', config.bosTokenId], ['pad', config.padTokenId]] as const) {
    special[k] = id === null ? null : { id, token: tokenizer.idToToken(id) ?? null };
  }
  const backend = backendInfo();
  const info = {
    model: spec,
    dir,
    arch: config.arch,
    parameters,
    dtypes,
    weight_bytes: ckpt.nbytes(),
    weight_files: shards.size,
    disk_bytes: disk.bytes,
    files: disk.files,
    layers: config.numLayers,
    hidden_size: config.hiddenSize,
    heads: config.numHeads,
    kv_heads: config.numKvHeads,
    head_dim: config.headDim,
    intermediate_size: config.intermediateSize,
    context_length: config.maxSequenceLength,
    vocab_size: config.vocabSize,
    tokenizer: { kind: tokenizerKind, size: tokenizer.vocabSize },
    chat_template: template !== null,
    special_tokens: special,
    generation_config: generation,
    backend: { name: backend.name, threads: backend.threads, ...(backend.reason ? { reason: backend.reason } : {}) },
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(info) + '\n');
    return;
  }
  const gen = Object.entries(generation).filter(([k]) => !k.startsWith('_') && k !== 'transformers_version');
  const rows: [string, string][] = [
    ['model', spec === dir ? dir : `${spec} (${dir})`],
    ['architecture', config.arch === 'llada' ? 'LLaDA' : 'Dream'],
    ['parameters', `${millions(parameters)} (${parameters.toLocaleString('en-US')})`],
    ['dtype', Object.entries(dtypes).map(([d, n]) => `${d} (${n} tensor${n === 1 ? '' : 's'})`).join(', ')],
    ['weights', `${formatBytes(info.weight_bytes)} in ${shards.size} file${shards.size === 1 ? '' : 's'}; ${formatBytes(disk.bytes)} on disk (${disk.files} files)`],
    ['layers', `${config.numLayers} × (hidden ${config.hiddenSize}, ${config.numHeads} heads, ${config.numKvHeads} KV heads, head dim ${config.headDim}, FFN ${config.intermediateSize})`],
    ['context', `${config.maxSequenceLength} tokens (prompt + generated)`],
    ['vocabulary', `${config.vocabSize} rows (the tokenizer names ${tokenizer.vocabSize})`],
    ['tokenizer', tokenizerKind],
    ['chat template', template ? `yes (${template.source ?? 'tokenizer_config.json'})` : 'none (prompts are sent as raw text)'],
    ['special tokens', Object.entries(special).map(([k, v]) => `${k} ${v === null ? '–' : `${v.id} ${v.token ?? '?'}`}`).join(', ')],
    ['generation', gen.length > 0 ? gen.map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ') : 'none (generation_config.json sets nothing)'],
    ['backend', `${backend.name}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'}${backend.reason ? ` (native kernels unavailable: ${backend.reason})` : ''}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n');
}
