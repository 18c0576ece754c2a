/**
 * A reference backend that remembers the host weight behind each weight it prepares, so that a model loaded through
 * it can later be uploaded to WebGPU as it was stored (bf16 stays bf16: kernels.ts prepareWeight) instead of from
 * the reference backend's f32 copies. The host arrays are the loader's (views of the checkpoint's bytes), so keeping
 * them costs no copy.
 *
 * `compute: false` skips the reference copies altogether: the model's weights are then only host handles, for a
 * model whose forward runs on the GPU alone (the CLI's --backend webgpu); a reference op on them throws.
 */
import type { HostWeight, PreparedWeight } from '../backend.js';
import { ReferenceBackend } from '../reference.js';

interface HostOnly extends PreparedWeight {
  readonly host: HostWeight;
}

export class HostWeightsBackend extends ReferenceBackend {
  private readonly hosts = new WeakMap<PreparedWeight, HostWeight>();

  constructor(private readonly compute = true) {
    super();
  }

  override prepareWeight(w: HostWeight): PreparedWeight {
    const handle: HostOnly = { dtype: w.dtype, outFeatures: w.outFeatures, inFeatures: w.inFeatures, nbytes: w.data.byteLength, host: w };
    const p: PreparedWeight = this.compute ? super.prepareWeight(w) : handle;
    this.hosts.set(p, w);
    return p;
  }

  /** The host weight `p` was prepared from (a weight this backend did not prepare is refused with one line). */
  hostOf(p: PreparedWeight): HostWeight {
    const h = this.hosts.get(p);
    if (!h) throw new TypeError('hostOf: the weight was not prepared by this HostWeightsBackend (load the model through it)');
    return h;
  }
}
