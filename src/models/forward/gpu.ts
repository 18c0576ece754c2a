/**
 * The dense forward pass on WebGPU tensors (docs/webgpu.md "Stage B"): dense.ts's arithmetic, op for op, recorded
 * into one batch of the WebGPU kernels (kernels/webgpu/kernels.ts) per step, with only what the sampler needs read
 * back — the logits of batch.logitRows, or just their row statistics (argmax, p1, p2, Σ p·log p: 16 bytes a row)
 * when the sampler reads only those.
 *
 * What lives on the device: the weights, uploaded once from the host weights the model was loaded from (bf16 stays
 * bf16: prepareWeight; the embedding table too, looked up by gatherWeightRows; a tied head shares it), and per batch
 * shape the RoPE tables, the
 * positions, the key masks and the work tensors (reused while the shape stays). What goes up per step: the token ids
 * (T int32). The host keeps the model's padding rules (core.ts PaddingRules, RopeTable): positions and masks are
 * computed as the host forward computes them and uploaded when they change.
 *
 * One step at a time per GpuForward (its work tensors are shared); a second concurrent call is refused.
 *
 * May import: kernels/ (backend types, webgpu), models/types, models/forward/core.
 */
import type { HostWeight, PreparedWeight } from '../../kernels/backend.js';
import type { GpuTensor, GpuWeight, WebGpuKernels } from '../../kernels/webgpu/kernels.js';
import type { ForwardBatch, LogitRowStats, StatsRequest } from '../types.js';
import { dims, geometry, type Dims, type TransformerCore } from './core.js';

/** One layer's weights on the device. */
export interface GpuLayer {
  readonly attnNorm: GpuTensor;
  readonly wq: GpuWeight;
  readonly wk: GpuWeight;
  readonly wv: GpuWeight;
  readonly bq: GpuTensor | null;
  readonly bk: GpuTensor | null;
  readonly bv: GpuTensor | null;
  readonly wo: GpuWeight;
  readonly ffnNorm: GpuTensor;
  readonly gate: GpuWeight;
  readonly up: GpuWeight;
  readonly down: GpuWeight;
}

/** Per batch shape: positions, key masks and the padded query rows Dream's attention output zeroes. */
interface Geometry {
  readonly key: string;
  readonly positions: GpuTensor; // i32 [T]
  readonly masks: GpuTensor | null; // u32 [T]: every sequence's key mask (1 where it has none)
  readonly hasMask: readonly boolean[]; // [B]
  readonly padRows: GpuTensor | null; // i32 [nPad]: rows whose attention output is zeroed
  readonly zeros: GpuTensor | null; // f32 [nPad·qDim]
}

/** Work tensors for T rows and R logits rows. */
interface Work {
  readonly T: number;
  readonly R: number;
  readonly x: GpuTensor;
  readonly h: GpuTensor;
  readonly q: GpuTensor;
  readonly k: GpuTensor;
  readonly v: GpuTensor;
  readonly ctx: GpuTensor;
  readonly o: GpuTensor;
  readonly g: GpuTensor;
  readonly u: GpuTensor;
  readonly hn: GpuTensor; // [R, D]
  readonly logits: GpuTensor; // [R, V]
  readonly stats: GpuTensor; // u32 [R·4]
}

export class GpuForward {
  readonly d: Dims;
  /** The weights on the device (read by the planned pass, ./gpu-planned.ts). */
  readonly layers: readonly GpuLayer[];
  readonly embed: GpuWeight; // [V, D] as stored (the head's weight when tied)
  readonly finalNorm: GpuTensor;
  readonly head: GpuWeight;
  private readonly owned: GpuTensor[] = [];
  private readonly weights: GpuWeight[] = [];
  private rope: { src: Float32Array; cos: GpuTensor; sin: GpuTensor } | null = null;
  private geo: Geometry | null = null;
  private work: Work | null = null;
  private busy = false;
  private destroyed = false;

  /**
   * Uploads the model's weights: `hostOf` gives the host weight each of core's prepared weights was prepared from
   * (kernels/webgpu/host-weights.ts keeps them while the model loads).
   */
  constructor(readonly kernels: WebGpuKernels, readonly core: TransformerCore, hostOf: (w: PreparedWeight) => HostWeight) {
    this.d = dims(core.config);
    const cw = core.weights;
    const vec = (a: Float32Array | null): GpuTensor | null => (a ? this.own(kernels.upload(a)) : null);
    const mat = (p: PreparedWeight): GpuWeight => {
      const w = kernels.prepareWeight(hostOf(p));
      this.weights.push(w);
      return w;
    };
    this.layers = cw.layers.map((l) => ({
      attnNorm: vec(l.attnNorm)!, wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), bq: vec(l.bq), bk: vec(l.bk), bv: vec(l.bv),
      wo: mat(l.wo), ffnNorm: vec(l.ffnNorm)!, gate: mat(l.gate), up: mat(l.up), down: mat(l.down),
    }));
    this.finalNorm = vec(cw.finalNorm)!;
    this.head = mat(cw.head);
    // A tied head was prepared from the embedding itself: one device copy serves both.
    this.embed = hostOf(cw.head) === cw.embed ? this.head : this.weights[this.weights.push(kernels.prepareWeight(cw.embed)) - 1];
  }

  /** Bytes of weights on the device (the embedding included). */
  get weightBytes(): number {
    return this.weights.reduce((n, w) => n + w.nbytes, 0);
  }

  /**
   * One dense step: logits [R, V] of batch.logitRows (every row when null), or, with `stats`, only their row
   * statistics. Throws RangeError for a bad batch (before anything is recorded) and WebGpuError for a GPU failure.
   */
  async forward(batch: ForwardBatch, stats: StatsRequest | null = null): Promise<Float32Array | LogitRowStats> {
    return this.exclusive(async () => {
      const R = this.record(batch, stats);
      const w = this.work!;
      return this.readHead(w.logits.view(0, R * this.core.config.vocabSize), w.stats, R, stats);
    });
  }

  /**
   * Runs one step's work alone: the kernels record into one batch, and a step may wait on a read half-way
   * (./gpu-planned.ts reads each layer's cosines), so a second step while one runs is refused.
   */
  async exclusive<T>(f: () => Promise<T>): Promise<T> {
    if (this.destroyed) throw new RangeError('GpuForward: used after destroy()');
    if (this.busy) throw new RangeError('GpuForward: one step at a time (the previous step has not finished)');
    this.busy = true;
    try {
      return await f();
    } finally {
      this.busy = false;
    }
  }

  /**
   * Records the final norm and LM head of rows `sel` (indices into x[·, D]) into logits [R, V] (and their
   * statistics into `stats` when asked), and reads back what the step returns.
   */
  recordHead(x: GpuTensor, sel: GpuTensor, R: number, hn: GpuTensor, logits: GpuTensor, statsT: GpuTensor, stats: StatsRequest | null): void {
    const k = this.kernels;
    const D = this.d.D;
    const V = this.core.config.vocabSize;
    k.gatherRows(hn.view(0, R * D), x, sel, D);
    k.rmsnorm(hn, R, D, this.finalNorm, this.core.config.rmsNormEps, hn);
    k.matmul(hn, R, this.head, logits);
    if (stats) k.logitStats(logits, R, V, statsT.view(0, R * 4), stats.entropy);
  }

  /** Reads back a recorded head: logits [R, V], or their row statistics. */
  async readHead(logits: GpuTensor, statsT: GpuTensor, R: number, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    if (!stats) return (await this.kernels.read(logits))[0] as Float32Array;
    const s = await this.kernels.readLogitStats(statsT, R);
    return { argmax: s.argmax, p1: Float64Array.from(s.p1), p2: Float64Array.from(s.p2), negEntropy: stats.entropy ? Float64Array.from(s.negEntropy) : null };
  }

  /** Frees every tensor and weight this forward uploaded (the kernels' device stays open). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const t of this.owned) t.destroy();
    for (const w of this.weights) this.kernels.destroyWeight(w);
    this.dropWork();
    this.dropGeometry();
    this.rope?.cos.destroy();
    this.rope?.sin.destroy();
  }

  /** Records the whole step into the kernels' batch; returns the number of logits rows. */
  private record(batch: ForwardBatch, stats: StatsRequest | null): number {
    const { core, kernels: k } = this;
    const cfg = core.config;
    const { D, H, Hkv, Dh, qDim, kvDim } = this.d;
    const V = cfg.vocabSize;
    const T = batch.tokens.length;
    for (let t = 0; t < T; t++) {
      const id = batch.tokens[t];
      if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} at row ${t} is outside the vocabulary [0, ${V})`);
    }
    const rows = batch.logitRows ?? null;
    if (rows) for (const r of rows) if (!(r >= 0 && r < T)) throw new RangeError(`forward: logit row ${r} is outside the batch's ${T} rows`);
    const R = rows ? rows.length : T;
    const { positions, keyMasks } = geometry(core, batch);
    const { cos, sin } = this.ropeTables();
    const geo = this.geometry(batch, positions, keyMasks);
    const w = this.workFor(T, R);
    const eps = cfg.rmsNormEps;

    const ids = k.upload(batch.tokens);
    k.gatherWeightRows(w.x, this.embed, ids);
    const { seqStart } = batch;
    for (const l of this.layers) {
      k.rmsnorm(w.x, T, D, l.attnNorm, eps, w.h);
      k.matmul(w.h, T, l.wq, w.q, l.bq);
      k.matmul(w.h, T, l.wk, w.k, l.bk);
      k.matmul(w.h, T, l.wv, w.v, l.bv);
      k.rope(w.q, T, H, Dh, geo.positions, cos, sin);
      k.rope(w.k, T, Hkv, Dh, geo.positions, cos, sin);
      for (let b = 0; b + 1 < seqStart.length; b++) {
        const s = seqStart[b];
        const L = seqStart[b + 1] - s;
        if (L === 0) continue;
        const km = geo.hasMask[b] ? geo.masks!.view(s, L) : null;
        k.attention(w.q.view(s * qDim, L * qDim), L, w.k.view(s * kvDim, L * kvDim), w.v.view(s * kvDim, L * kvDim), L, H, Hkv, Dh, km, w.ctx.view(s * qDim, L * qDim));
      }
      if (geo.padRows) k.scatterRows(w.ctx, geo.zeros!, geo.padRows, qDim);
      k.matmul(w.ctx, T, l.wo, w.o);
      k.add(w.x, w.o, T * D);
      k.rmsnorm(w.x, T, D, l.ffnNorm, eps, w.h);
      k.matmul(w.h, T, l.gate, w.g);
      k.matmul(w.h, T, l.up, w.u);
      k.siluMul(w.g, w.u, T * cfg.intermediateSize, w.g);
      k.matmul(w.g, T, l.down, w.o);
      k.add(w.x, w.o, T * D);
    }
    // Final norm and LM head of just the rows the step needs (as headLogits / dense.ts's xRows).
    const sel = rows ? k.upload(rows) : this.iota(T);
    this.recordHead(w.x, sel, R, w.hn.view(0, R * D), w.logits.view(0, R * V), w.stats, stats);
    if (rows) sel.destroy();
    ids.destroy();
    return R;
  }

  private own(t: GpuTensor): GpuTensor {
    this.owned.push(t);
    return t;
  }

  private iotaT: GpuTensor | null = null;
  /** 0, 1, …, n − 1 on the device (kept for the largest n asked). */
  iota(n: number): GpuTensor {
    if (!this.iotaT || this.iotaT.length < n) {
      this.iotaT?.destroy();
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) a[i] = i;
      this.iotaT = this.own(this.kernels.upload(a));
    }
    return this.iotaT.view(0, n);
  }

  /** The RoPE tables on the device, uploaded again only when the host table grew (RopeTable.ensure). */
  ropeTables(): { cos: GpuTensor; sin: GpuTensor } {
    const r = this.core.rope;
    if (!this.rope || this.rope.src !== r.cos) {
      this.rope?.cos.destroy();
      this.rope?.sin.destroy();
      this.rope = { src: r.cos, cos: this.kernels.upload(r.cos), sin: this.kernels.upload(r.sin) };
    }
    return this.rope;
  }

  /** Positions, key masks and padded rows on the device; uploaded again only when they change. */
  private geometry(batch: ForwardBatch, positions: Int32Array, keyMasks: readonly (Uint8Array | null)[]): Geometry {
    const T = positions.length;
    const { seqStart } = batch;
    const mask = new Uint8Array(T).fill(1);
    const hasMask = keyMasks.map((km, b) => {
      if (km) mask.set(km, seqStart[b]);
      return km !== null;
    });
    const pad: number[] = [];
    if (this.core.padding.zeroPadQueries) {
      keyMasks.forEach((km, b) => {
        if (km) for (let i = 0; i < km.length; i++) if (!km[i]) pad.push(seqStart[b] + i);
      });
    }
    const key = `${Array.from(seqStart).join(',')}|${positions.join(',')}|${hasMask.map(Number).join('')}|${hasMask.some((x) => x) ? mask.join('') : ''}`;
    if (this.geo?.key === key) return this.geo;
    this.dropGeometry();
    const k = this.kernels;
    this.geo = {
      key,
      positions: k.upload(positions),
      masks: hasMask.some((x) => x) ? k.upload(mask) : null,
      hasMask,
      padRows: pad.length ? k.upload(Int32Array.from(pad)) : null,
      zeros: pad.length ? k.tensor('f32', pad.length * this.d.qDim) : null,
    };
    return this.geo;
  }

  private dropGeometry(): void {
    const g = this.geo;
    if (!g) return;
    for (const t of [g.positions, g.masks, g.padRows, g.zeros]) t?.destroy();
    this.geo = null;
  }

  /** Work tensors for at least T rows and R logits rows (grown, never shrunk, while the forward lives). */
  private workFor(T: number, R: number): Work {
    const w = this.work;
    if (w && w.T >= T && w.R >= R) return w;
    this.dropWork();
    const t = Math.max(T, w?.T ?? 0);
    const r = Math.max(R, w?.R ?? 0, 1);
    const { D, qDim, kvDim, F } = this.d;
    const V = this.core.config.vocabSize;
    const f = (n: number) => this.kernels.tensor('f32', Math.max(n, 1));
    this.work = {
      T: t, R: r, x: f(t * D), h: f(t * D), q: f(t * qDim), k: f(t * kvDim), v: f(t * kvDim), ctx: f(t * qDim), o: f(t * D),
      g: f(t * F), u: f(t * F), hn: f(r * D), logits: f(r * V), stats: this.kernels.tensor('u32', r * 4),
    };
    return this.work;
  }

  private dropWork(): void {
    const w = this.work;
    if (!w) return;
    for (const t of [w.x, w.h, w.q, w.k, w.v, w.ctx, w.o, w.g, w.u, w.hn, w.logits, w.stats]) t.destroy();
    this.work = null;
  }
}
