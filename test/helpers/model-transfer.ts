/**
 * A loaded model's config and host weights as plain JSON (base64 arrays), for a browser page that builds the same
 * Transformer without the Node loaders (test/webgpu/forward-page.ts). Browser-safe: no Node imports.
 */
import type { HostWeight, PreparedWeight } from '../../src/kernels/backend.js';
import type { HostWeightsBackend } from '../../src/kernels/webgpu/host-weights.js';
import type { ModelConfig } from '../../src/load/config.js';
import { Transformer } from '../../src/models/transformer.js';
import { dreamPadding } from '../../src/models/dream.js';
import { lladaPadding } from '../../src/models/llada.js';
import type { LayerWeights, TransformerWeights } from '../../src/models/forward/core.js';

interface HostJson { dtype: 'bf16' | 'f32'; outFeatures: number; inFeatures: number; data: string }
type VecJson = string | null;
interface LayerJson {
  attnNorm: VecJson; wq: HostJson; wk: HostJson; wv: HostJson; bq: VecJson; bk: VecJson; bv: VecJson;
  wo: HostJson; ffnNorm: VecJson; gate: HostJson; up: HostJson; down: HostJson;
}
export interface ModelJson { config: ModelConfig; embed: HostJson; head: HostJson; finalNorm: VecJson; layers: LayerJson[] }

function b64(a: ArrayBufferView): string {
  const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}

function unb64(s: string): ArrayBuffer {
  const bin = atob(s);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8.buffer;
}

/** The JSON of a model loaded through `be` (a HostWeightsBackend). */
export function modelToJson(model: Transformer, be: HostWeightsBackend): ModelJson {
  const host = (h: HostWeight): HostJson => {
    if (h.dtype !== 'bf16' && h.dtype !== 'f32') throw new Error(`modelToJson: ${h.dtype} weights are not transferred`);
    return { dtype: h.dtype, outFeatures: h.outFeatures, inFeatures: h.inFeatures, data: b64(h.data) };
  };
  const mat = (p: PreparedWeight) => host(be.hostOf(p));
  const vec = (v: Float32Array | null): VecJson => (v ? b64(v) : null);
  const w = model.weights;
  return {
    config: model.config,
    embed: host(w.embed),
    head: mat(w.head),
    finalNorm: vec(w.finalNorm),
    layers: w.layers.map((l) => ({
      attnNorm: vec(l.attnNorm), wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), bq: vec(l.bq), bk: vec(l.bk), bv: vec(l.bv),
      wo: mat(l.wo), ffnNorm: vec(l.ffnNorm), gate: mat(l.gate), up: mat(l.up), down: mat(l.down),
    })),
  };
}

/** The Transformer of `json` on `be` (its prepared weights remember their host weights). */
export function modelFromJson(json: ModelJson, be: HostWeightsBackend): Transformer {
  const host = (h: HostJson): HostWeight => {
    const buf = unb64(h.data);
    return { dtype: h.dtype, outFeatures: h.outFeatures, inFeatures: h.inFeatures, data: h.dtype === 'bf16' ? new Uint16Array(buf) : new Float32Array(buf) };
  };
  const mat = (h: HostJson) => be.prepareWeight(host(h));
  const vec = (v: VecJson) => (v === null ? null : new Float32Array(unb64(v)));
  const layers: LayerWeights[] = json.layers.map((l) => ({
    attnNorm: vec(l.attnNorm)!, wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), bq: vec(l.bq), bk: vec(l.bk), bv: vec(l.bv),
    wo: mat(l.wo), ffnNorm: vec(l.ffnNorm)!, gate: mat(l.gate), up: mat(l.up), down: mat(l.down),
  }));
  const weights: TransformerWeights = { embed: host(json.embed), head: mat(json.head), finalNorm: vec(json.finalNorm)!, layers };
  return new Transformer(json.config, be, weights, json.config.arch === 'dream' ? dreamPadding : lladaPadding);
}
