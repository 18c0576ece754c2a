/**
 * Loader for the native N-API kernel addon. It is found the way node-gyp-build finds it: an addon compiled on this
 * machine (build/Release/*.node: `npm rebuild dyllm`, `npx node-gyp rebuild`) first, else the prebuilt binary
 * shipped in the package for this platform (prebuilds/<platform>-<arch>/*.node, made by `npm run prebuild`; one
 * Node-API binary serves every Node ≥ 20). scripts/install.mjs makes the same choice at install.
 *
 * The addon carries three ISA tiers, each compiled with its own flags and chosen at runtime by CPUID:
 *   avx512bf16 — AVX-512 + vdpbf16ps (bf16 GEMM/GEMV at the bf16 dot-product rate) + VNNI vpdpbusd (int8, q4);
 *   avx2       — AVX2 + FMA (bf16 widened to f32 in registers with a 16-bit shift; int8 / q4 by vpmaddubsw);
 *   portable   — plain C++.
 * The best supported tier is used unless `DYLLM_ISA` (read at load) or `loadNativeBackend({ isa })` forces one.
 * `DYLLM_THREADS` (read when the addon is first loaded) sets the thread count (default: the CPUs this process may
 * run on, as os.availableParallelism() counts them).
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostWeight, KernelBackend, PreparedWeight, WeightDtype } from './backend.js';
import { groups, QK, type QuantFormat } from './quant.js';
import {
  checkAdd, checkAttention, checkAttentionDelta, checkAttentionRescale, checkCosineRows, checkGemm, checkLogitStats,
  checkMatmul, checkMatmulCols, checkPrepareWeight, checkRmsnorm, checkRope, checkSiluMul, describe,
} from './args.js';

/**
 * The addon's functions bound to one ISA tier. Each checks its arguments in C++ (src/kernels/native/napi_args.h)
 * and throws a TypeError or RangeError naming the argument instead of touching memory it was not given; the
 * NativeBackend runs the same checks in TypeScript first (./args.ts).
 */
export interface NativeTier {
  readonly isa: string;
  /** split: bf16 weights × activations split into hi + lo bf16 parts (fp32-accurate, half the speed). */
  /** Quantised dtypes ('int8', 'q4'): activations quantised per row in groups of 32 (src/kernels/quant.ts); split ignored. */
  matmul(x: Float32Array, M: number, packed: ArrayBuffer, N: number, K: number, dtype: WeightDtype, out: Float32Array,
    bias: Float32Array | null | undefined, xRows: Int32Array | null | undefined, split?: boolean): void;
  matmulCols(x: Float32Array, M: number, packed: ArrayBuffer, N: number, K: number, dtype: WeightDtype, k0: number, kLen: number,
    out: Float32Array, split?: boolean): void;
  /**
   * Activation quantisation of rows x[M, K] by this tier's kernel: q [M·ceil(K/32)·32] int8 (zero padded),
   * d [M·ceil(K/32)] f32 scales — bit for bit quantizeActivations of src/kernels/quant.ts.
   */
  quantizeRows(x: Float32Array, M: number, K: number, q: Int8Array, d: Float32Array): void;
  gemm(a: Float32Array, M: number, K: number, b: Float32Array, N: number, out: Float32Array): void;
  attention(q: Float32Array, Mq: number, k: Float32Array, v: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null | undefined, out: Float32Array, lse: Float32Array | null | undefined): void;
  attentionDelta(q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null | undefined, cols: Int32Array, dv: Float32Array, ctx: Float32Array, probs: Float32Array | null | undefined): void;
  cosineRows(a: Float32Array, b: Float32Array, M: number, D: number, out: Float32Array): void;
  attentionRescale(q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null | undefined, cols: Int32Array, kOld: Float32Array, vOld: Float32Array, vNew: Float32Array,
    lse: Float32Array, ctx: Float32Array, incremental: boolean): void;
  logitStats(logits: Float32Array, M: number, V: number, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy: Float64Array | null | undefined): void;
  rmsnorm(x: Float32Array, M: number, D: number, weight: Float32Array, eps: number, out: Float32Array): void;
  rope(x: Float32Array, M: number, nHeads: number, Dh: number, positions: Int32Array, cos: Float32Array, sin: Float32Array): void;
  siluMul(gate: Float32Array, up: Float32Array, n: number, out: Float32Array): void;
  add(dst: Float32Array, src: Float32Array, n: number): void;
  /**
   * Peak microbenchmark: GFLOP/s of `iters` (≤ 2^30) iterations of independent vdpbf16ps ('bf16', 24 chains) or FMA
   * ('fma', 12 chains) zmm chains per thread, on 1..256 threads.
   */
  peak(kind: 'bf16' | 'fma', threads: number, iters: number): number;
  /** Stream-read bandwidth over a `bytes` buffer (4 KiB..1 GiB): GB/s for each of `reps` (≤ 1000) passes on 1..256 threads. */
  streamRead(bytes: number, threads: number, reps: number): number[];
}

export interface NativeAddon {
  tiers(): string[];
  bind(isa: string): NativeTier;
  threads(): number;
  /** Packs a weight into panels; quantised dtypes take their scales (the host arrays of src/kernels/quant.ts). */
  prepare(dtype: WeightDtype, data: Uint16Array | Float32Array | Int8Array | Uint8Array, N: number, K: number,
    scales?: Float32Array | Uint16Array): ArrayBuffer;
  /**
   * Quantises a dense weight into the host arrays of `format` (int8: q Int8Array [N·K], scales Float32Array [N];
   * q4: q Uint8Array [N·ceil(K/32)·16], scales Uint16Array [N·ceil(K/32)]) — bit for bit quantizeInt8 / quantizeQ4
   * of src/kernels/quant.ts, on every thread.
   */
  quantize(format: QuantFormat, dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array, N: number, K: number,
    q: Int8Array | Uint8Array, scales: Float32Array | Uint16Array): void;
  /**
   * A private mapping of the first `size` bytes of an open file as an ArrayBuffer (unmapped when collected; the fd
   * may be closed right after). Never written back; reading past the file's end after it shrank raises SIGBUS, so
   * callers check the file's size before they touch a range (src/load/safetensors.ts).
   */
  mapFile(fd: number, size: number): ArrayBuffer;
  /** Faults a byte range of a mapping in ahead of use (one system call); false where the kernel could not. */
  populate(mapping: ArrayBuffer, offset: number, length: number): boolean;
  /** Drops the pages wholly inside a byte range of a mapping from this process; later reads fault them back in. */
  release(mapping: ArrayBuffer, offset: number, length: number): void;
  /**
   * A read-only shared mapping of `length` bytes of an open file from `offset` (a multiple of the page size) as an
   * ArrayBuffer (unmapped when collected; the fd may be closed right after). Never write into it: the pages are
   * read-only and writing faults the process. The packed-weight cache maps its regions this way
   * (src/load/pack-cache.ts).
   */
  mapRegion(fd: number, offset: number, length: number): ArrayBuffer;
  /** A 64-bit hash of a byte range as 16 hex digits (the same on any thread count; src/kernels/native/mapfile.cc). */
  checksum(buffer: ArrayBuffer, offset: number, length: number): string;
  /** The byteLength of the ArrayBuffer prepare() returns for an N x K weight of `dtype` (its packed bytes + 64). */
  preparedBytes(dtype: WeightDtype, N: number, K: number): number;
  /** The version of the packed layouts prepare() writes (kPackLayoutVersion in src/kernels/native/glue.h). */
  packLayout(): number;
}

/**
 * A backend's prepared weights as bytes: what a packed-weight cache file (src/load/pack-cache.ts) stores, and how
 * a region of such a file, mapped, becomes a prepared weight again without packing anything.
 */
export interface PackedWeightLayout {
  /** Names the layout: two backends with the same id prepare the same bytes for the same weight. */
  readonly id: string;
  readonly addon: NativeAddon;
  /** The exact byte length of a prepared weight's buffer (throws a RangeError when it cannot be packed at all). */
  preparedBytes(dtype: WeightDtype, N: number, K: number): number;
  /** The buffer of a weight this backend prepared (never written through), or null for a weight it did not. */
  bytesOf(w: PreparedWeight): ArrayBuffer | null;
  /** A prepared weight over `buffer` (preparedBytes long, e.g. a mapped region of a cache file): used as it is. */
  adopt(dtype: WeightDtype, N: number, K: number, buffer: ArrayBuffer): PreparedWeight;
}

/** A dense weight quantised by the addon into fresh host arrays (see NativeAddon.quantize). */
export function nativeQuantize(addon: NativeAddon, format: QuantFormat, dtype: 'bf16' | 'f32', data: Uint16Array | Float32Array,
  N: number, K: number): { q: Int8Array | Uint8Array; scales: Float32Array | Uint16Array } {
  const q = format === 'int8' ? new Int8Array(N * K) : new Uint8Array(N * groups(K) * (QK / 2));
  const scales = format === 'int8' ? new Float32Array(N) : new Uint16Array(N * groups(K));
  addon.quantize(format, dtype, data, N, K, q, scales);
  return { q, scales };
}

/** A weight packed by the addon: 32-column panels, bf16 as k-pairs, int8 / q4 by groups (src/kernels/native/kernels.h). */
export interface NativePreparedWeight extends PreparedWeight {
  readonly packed: ArrayBuffer;
}

/**
 * How fp32 activations meet bf16 weights: 'round' rounds them to bf16 once (as PyTorch runs the released bf16
 * checkpoints; products exact, fp32 accumulation; full vdpbf16ps rate); 'split' carries the rounding residual as a
 * second bf16 part (fp32-level accuracy for twice the dot products).
 */
export type Bf16Activations = 'round' | 'split';

export interface NativeBackendOptions {
  /** Force an ISA tier ('avx512bf16' | 'avx2' | 'portable'); default: env DYLLM_ISA, else the best this CPU runs. */
  isa?: string;
  /** Default: env DYLLM_BF16_ACTIVATIONS, else 'round'. */
  bf16Activations?: Bf16Activations;
}

/** The activation mode from the options or DYLLM_BF16_ACTIVATIONS; throws on an unknown value. */
export function bf16ActivationMode(opt?: string): Bf16Activations {
  const v = opt ?? (process.env.DYLLM_BF16_ACTIVATIONS || 'round');
  if (v !== 'round' && v !== 'split') throw new Error(`DYLLM_BF16_ACTIVATIONS must be 'round' or 'split', found '${v}'`);
  return v;
}

const here = dirname(fileURLToPath(import.meta.url));
/** Package root from dist/src/kernels/ (compiled) — three levels up. */
const packageRoot = resolve(here, '..', '..', '..');
const require = createRequire(import.meta.url);
/** node-gyp-build's lookup (a CommonJS module): build/Release, then the matching prebuilds/<platform>-<arch>/ file. */
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

/** Where node-gyp puts an addon compiled on this machine. */
export const nativeBuildPath = resolve(packageRoot, 'build', 'Release', 'dyllm_kernels.node');
/** Where the package's prebuilt addons are (prebuilds/<platform>-<arch>/). */
export const nativePrebuildsDir = resolve(packageRoot, 'prebuilds');

/** The addon file the loader would use (compiled first, else the prebuilt one for this platform), or null. */
export function findNativeAddon(): string | null {
  try {
    return nodeGypBuild.path(packageRoot);
  } catch {
    return null;
  }
}

/** The addon the loader uses: the file found now, else the place node-gyp would compile it to. */
export const nativeAddonPath = findNativeAddon() ?? nativeBuildPath;

/** How to get the native kernels where neither a prebuilt nor a compiled addon loads (also in scripts/install.mjs). */
export const NATIVE_FIX = 'install a C++ compiler, make and python3 and run `npm rebuild dyllm` (in a dyllm checkout: `npm rebuild`), or use a platform with prebuilt binaries (linux-x64 glibc)';

let cached: NativeAddon | null = null;

/** Loads the raw addon (cached). Throws an Error with the reason, and how to fix it, when it is missing or cannot be loaded. */
export function loadNativeAddon(): NativeAddon {
  if (cached) return cached;
  if (process.env.DYLLM_NATIVE === 'off') throw new Error('disabled by DYLLM_NATIVE=off');
  const file = findNativeAddon();
  if (file === null) {
    throw new Error(`no native addon for ${process.platform}-${process.arch}: none compiled in ${dirname(nativeBuildPath)}, no prebuilt binary for this platform in ${nativePrebuildsDir}; ${NATIVE_FIX}`);
  }
  try {
    cached = require(file) as NativeAddon;
  } catch (e) {
    throw new Error(`native addon ${file} failed to load: ${(e as Error).message.replace(/\s*\n\s*/g, ' ')}; ${NATIVE_FIX}`);
  }
  return cached;
}

/** ISA tiers this CPU can run, best first (e.g. ['avx512bf16', 'avx2', 'portable']); [] when the addon is unavailable. */
export function nativeIsaTiers(): string[] {
  try {
    return loadNativeAddon().tiers();
  } catch {
    return [];
  }
}


class NativeBackend implements KernelBackend {
  readonly name: string;
  private readonly split: boolean;
  constructor(private readonly addon: NativeAddon, readonly tier: NativeTier, readonly bf16Activations: Bf16Activations) {
    this.name = `native-${tier.isa}`;
    this.split = bf16Activations === 'split';
  }

  /**
   * The packed layout of this backend's weights. The packed-weight cache (src/load/pack-cache.ts) finds it here by
   * name and imports nothing of this file at run time (the browser bundle has no addon); null when the addon
   * predates it.
   */
  packedLayout(): PackedWeightLayout | null {
    const addon = this.addon;
    if (typeof addon.mapRegion !== 'function' || typeof addon.packLayout !== 'function') return null;
    return {
      // NAPI_VERSION 8 (binding.gyp); the layout is the same on every ISA tier (prepare runs in baseline code)
      id: `native-panels-v${addon.packLayout()} napi8 ${process.platform}-${process.arch}`,
      addon,
      preparedBytes: (dtype, N, K) => addon.preparedBytes(dtype, N, K),
      bytesOf: (w) => {
        const packed = (w as NativePreparedWeight | null)?.packed;
        return packed instanceof ArrayBuffer ? packed : null;
      },
      adopt: (dtype, N, K, buffer) => {
        const want = addon.preparedBytes(dtype, N, K);
        if (buffer.byteLength !== want) throw new RangeError(`adopt: a prepared ${N}x${K} ${dtype} weight is ${want} bytes, found ${buffer.byteLength}`);
        const p: NativePreparedWeight = { dtype, outFeatures: N, inFeatures: K, nbytes: buffer.byteLength, packed: buffer };
        return p;
      },
    };
  }

  prepareWeight(w: HostWeight): PreparedWeight {
    checkPrepareWeight(w);
    const { outFeatures: N, inFeatures: K } = w;
    let { dtype, data, scales } = w;
    if ((dtype === 'bf16' || dtype === 'f32') && w.quant) {
      ({ q: data, scales } = nativeQuantize(this.addon, w.quant, dtype, data as Uint16Array | Float32Array, N, K));
      dtype = w.quant;
    }
    const packed = this.addon.prepare(dtype, data, N, K, scales);
    const p: NativePreparedWeight = { dtype, outFeatures: N, inFeatures: K, nbytes: packed.byteLength, packed };
    return p;
  }

  /** The packed panels of a weight this backend prepared. */
  private packed(fn: string, w: PreparedWeight): ArrayBuffer {
    const packed = (w as NativePreparedWeight | null)?.packed;
    if (!(packed instanceof ArrayBuffer)) throw new TypeError(`${fn}: weight must be a weight prepared by the native backend, found ${describe(w)}`);
    return packed;
  }

  matmul(x: Float32Array, M: number, w: PreparedWeight, out: Float32Array, bias?: Float32Array | null, xRows?: Int32Array | null): void {
    checkMatmul(x, M, w, out, bias, xRows);
    this.tier.matmul(x, M, this.packed('matmul', w), w.outFeatures, w.inFeatures, w.dtype, out, bias, xRows, this.split);
  }

  matmulCols(x: Float32Array, M: number, w: PreparedWeight, k0: number, kLen: number, out: Float32Array): void {
    checkMatmulCols(x, M, w, k0, kLen, out);
    this.tier.matmulCols(x, M, this.packed('matmulCols', w), w.outFeatures, w.inFeatures, w.dtype, k0, kLen, out, this.split);
  }

  gemm(a: Float32Array, M: number, K: number, b: Float32Array, N: number, out: Float32Array): void {
    checkGemm(a, M, K, b, N, out);
    this.tier.gemm(a, M, K, b, N, out);
  }

  rmsnorm(x: Float32Array, M: number, D: number, weight: Float32Array, eps: number, out: Float32Array): void {
    checkRmsnorm(x, M, D, weight, eps, out);
    this.tier.rmsnorm(x, M, D, weight, eps, out);
  }

  rope(x: Float32Array, M: number, nHeads: number, Dh: number, positions: Int32Array, cos: Float32Array, sin: Float32Array): void {
    checkRope(x, M, nHeads, Dh, positions, cos, sin);
    this.tier.rope(x, M, nHeads, Dh, positions, cos, sin);
  }

  attention(
    q: Float32Array, Mq: number, k: Float32Array, v: Float32Array, Mk: number,
    H: number, Hkv: number, Dh: number, keyMask: Uint8Array | null, out: Float32Array, lse?: Float32Array | null,
  ): void {
    checkAttention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask, out, lse);
    this.tier.attention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask, out, lse);
  }

  attentionDelta(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, dv: Float32Array, ctx: Float32Array, probs?: Float32Array | null,
  ): void {
    checkAttentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, dv, ctx, probs);
    this.tier.attentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, dv, ctx, probs);
  }

  cosineRows(a: Float32Array, b: Float32Array, M: number, D: number, out: Float32Array): void {
    checkCosineRows(a, b, M, D, out);
    this.tier.cosineRows(a, b, M, D, out);
  }

  attentionRescale(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, kOld: Float32Array, vOld: Float32Array, vNew: Float32Array,
    lse: Float32Array, ctx: Float32Array, incremental: boolean,
  ): void {
    checkAttentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, incremental);
    this.tier.attentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, incremental);
  }

  logitStats(logits: Float32Array, M: number, V: number, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy: Float64Array | null): void {
    checkLogitStats(logits, M, V, argmax, p1, p2, negEntropy);
    this.tier.logitStats(logits, M, V, argmax, p1, p2, negEntropy);
  }

  siluMul(gate: Float32Array, up: Float32Array, n: number, out: Float32Array): void {
    checkSiluMul(gate, up, n, out);
    this.tier.siluMul(gate, up, n, out);
  }

  add(dst: Float32Array, src: Float32Array, n: number): void {
    checkAdd(dst, src, n);
    this.tier.add(dst, src, n);
  }
}

/**
 * The native kernel backend at the best ISA tier this CPU supports (or the forced one). Throws when the addon is
 * missing/unloadable or the forced tier is unknown or unsupported here.
 */
export function loadNativeBackend(opts: NativeBackendOptions = {}): KernelBackend {
  const addon = loadNativeAddon();
  const tiers = addon.tiers();
  const want = opts.isa ?? (process.env.DYLLM_ISA || undefined);
  const isa = want ?? tiers[0];
  if (!tiers.includes(isa)) {
    throw new Error(`native ISA tier '${isa}' is not available on this CPU (available: ${tiers.join(', ')})`);
  }
  return new NativeBackend(addon, addon.bind(isa), bf16ActivationMode(opts.bf16Activations));
}

/** The raw tier bindings (benchmarks use `peak` and `streamRead`). */
export function loadNativeTier(isa?: string): NativeTier {
  const addon = loadNativeAddon();
  return addon.bind(isa ?? addon.tiers()[0]);
}
