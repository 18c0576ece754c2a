/**
 * The dense forward pass: every row of every sequence through every layer — the official models' arithmetic and the
 * reference the cached passes are tested against. Named intermediates go to `trace` for the parity tests.
 */
import type { ForwardBatch, Trace } from '../types.js';
import { dims, embedTokens, ffn, geometry, zeroPaddedRows, type TransformerCore } from './core.js';

export function denseForward(core: TransformerCore, batch: ForwardBatch, trace?: Trace): Float32Array {
  const cfg = core.config;
  const be = core.backend;
  const { seqStart } = batch;
  const B = seqStart.length - 1;
  const T = batch.tokens.length;
  const { D, H, Hkv, Dh, qDim, kvDim } = dims(cfg);
  const { positions, keyMasks } = geometry(core, batch);
  const { cos, sin } = core.rope;

  const sc = core.scratch;
  const x = sc.f32('x', T * D); // [T, D] residual stream
  const h = sc.f32('h', T * D); // [T, D] normed
  const q = sc.f32('q', T * qDim); // [T, H·Dh]
  const k = sc.f32('k', T * kvDim); // [T, Hkv·Dh]
  const v = sc.f32('v', T * kvDim); // [T, Hkv·Dh]
  const ctx = sc.f32('ctx', T * qDim); // [T, H·Dh]
  const o = sc.f32('o', T * D); // [T, D]

  embedTokens(core.weights.embed, batch.tokens, x);
  trace?.('embed', -1, x, T, D);
  for (let li = 0; li < core.weights.layers.length; li++) {
    const w = core.weights.layers[li];
    be.rmsnorm(x, T, D, w.attnNorm, cfg.rmsNormEps, h);
    trace?.('attn_norm', li, h, T, D);
    be.matmul(h, T, w.wq, q, w.bq);
    be.matmul(h, T, w.wk, k, w.bk);
    be.matmul(h, T, w.wv, v, w.bv);
    be.rope(q, T, H, Dh, positions, cos, sin);
    be.rope(k, T, Hkv, Dh, positions, cos, sin);
    trace?.('q', li, q, T, qDim);
    trace?.('k', li, k, T, kvDim);
    for (let b = 0; b < B; b++) {
      const s = seqStart[b];
      const L = seqStart[b + 1] - s;
      const km = keyMasks[b];
      const cb = ctx.subarray(s * qDim, (s + L) * qDim);
      be.attention(q.subarray(s * qDim, (s + L) * qDim), L, k.subarray(s * kvDim, (s + L) * kvDim), v.subarray(s * kvDim, (s + L) * kvDim), L, H, Hkv, Dh, km, cb);
      if (core.padding.zeroPadQueries && km) zeroPaddedRows(cb, L, qDim, km, (i) => i);
    }
    trace?.('attn_ctx', li, ctx, T, qDim);
    be.matmul(ctx, T, w.wo, o);
    trace?.('attn_out', li, o, T, D);
    be.add(x, o, T * D);
    be.rmsnorm(x, T, D, w.ffnNorm, cfg.rmsNormEps, h);
    ffn(core, w, h, T, o);
    trace?.('ffn_out', li, o, T, D);
    be.add(x, o, T * D);
  }
  be.rmsnorm(x, T, D, core.weights.finalNorm, cfg.rmsNormEps, h);
  trace?.('final_norm', -1, h, T, D);
  const rows = batch.logitRows ?? null;
  const R = rows ? rows.length : T;
  const logits = new Float32Array(R * cfg.vocabSize);
  be.matmul(h, R, core.weights.head, logits, null, rows);
  return logits;
}
