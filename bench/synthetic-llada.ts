/**
 * The synthetic LLaDA-8B-shaped checkpoint of `npm run bench:step -- --synthetic-8b` (and `npm run bench:peers`):
 * random bf16 weights with LLaDA-8B's real layer shapes and full vocabulary but `layers` blocks, no tokenizer.
 * Deterministic (one LCG over all tensors in file order), written once under /tmp and reused.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export function syntheticLladaDir(layers: number): string {
  return `/tmp/dyllm-synthetic-llada8b-${layers}l`;
}

export function syntheticLladaReady(dir: string): boolean {
  return existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'config.json'));
}

/** Bytes the checkpoint's tensors take for this config (bf16). */
export function syntheticLladaBytes(cfg: { d_model: number; mlp_hidden_size: number; embedding_size: number }, layers: number): number {
  const D = cfg.d_model;
  const F = cfg.mlp_hidden_size;
  const V = cfg.embedding_size;
  return 2 * (2 * V * D + D + layers * (4 * D * D + 3 * F * D + 2 * D));
}

/**
 * Writes the checkpoint into `dir` (model.safetensors goes through a temporary name, so an interrupted run never
 * leaves a file that looks finished). `upstreamConfig` is LLaDA-8B's config.json (n_layers is replaced).
 */
export function writeSyntheticLlada(dir: string, upstreamConfig: Record<string, unknown>, generationConfig: string | Uint8Array, layers: number): string {
  mkdirSync(dir, { recursive: true });
  const cfg = { ...upstreamConfig, n_layers: layers } as unknown as Record<string, unknown> & { d_model: number; mlp_hidden_size: number; embedding_size: number };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), generationConfig);
  const D = cfg.d_model;
  const F = cfg.mlp_hidden_size;
  const V = cfg.embedding_size;
  const tensors: [string, number[]][] = [['model.transformer.wte.weight', [V, D]]];
  for (let i = 0; i < layers; i++) {
    const p = `model.transformer.blocks.${i}.`;
    tensors.push([p + 'attn_norm.weight', [D]], [p + 'q_proj.weight', [D, D]], [p + 'k_proj.weight', [D, D]], [p + 'v_proj.weight', [D, D]],
      [p + 'attn_out.weight', [D, D]], [p + 'ff_norm.weight', [D]], [p + 'ff_proj.weight', [F, D]], [p + 'up_proj.weight', [F, D]], [p + 'ff_out.weight', [D, F]]);
  }
  tensors.push(['model.transformer.ln_f.weight', [D]], ['model.transformer.ff_out.weight', [V, D]]);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const tmp = join(dir, 'model.safetensors.tmp');
  const fd = openSync(tmp, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, json);
  let s = 12345;
  for (const [, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    const chunk = new Uint16Array(Math.min(n, 1 << 24));
    for (let done = 0; done < n; done += chunk.length) {
      const m = Math.min(chunk.length, n - done);
      for (let i = 0; i < m; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        // norms ~1, matrices ~N(0, 0.02)-ish: bf16 of ±[0, 0.04)
        chunk[i] = shape.length === 1 ? 0x3f80 : (s & 0x8000) | (0x3c00 + ((s >>> 16) % 0x0a0));
      }
      writeSync(fd, new Uint8Array(chunk.buffer, 0, m * 2));
    }
  }
  closeSync(fd);
  renameSync(tmp, join(dir, 'model.safetensors'));
  return dir;
}
