/**
 * The server's scheduler with an asynchronous model (server/async-steps.ts; WebGPU in `dyllm serve --backend
 * webgpu`). The stand-in models compute on the host (the WebGPU forward itself runs in Chromium:
 * test/webgpu.forward.test.ts), so the answers must equal the synchronous server path's exactly: for logits, for row
 * statistics only, for DyLLM's planned steps. Also: one step on the "device" at a time, concurrent requests all finish,
 * a rejected step fails its request alone, and a lost device fails the requests that stepped on it while the next
 * request runs on a new device (or is told in one line that the GPU is gone).
 *
 * Seeded: DYLLM_TEST_SEED (printed) picks the prompts' lengths and contents and the sampling seeds.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { resolveAccel, type AccelOptionsInput } from '../../src/engine/accel.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { WebGpuError } from '../../src/kernels/webgpu/device.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from '../../src/models/types.js';
import type { RecomputePlan, StepCounts } from '../../src/cache/plan.js';
import { RenewableGpuModel, type DeviceModel } from '../../src/server/gpu-device.js';
import type { DoneMsg, FromWorker, SubmitMsg } from '../../src/server/protocol.js';
import { Scheduler } from '../../src/server/scheduler.js';
import { parseGenerationRequest, refuseOnGpu, type ParsedRequest } from '../../src/server/request.js';
import { RequestError } from '../../src/server/errors.js';
import { Rng } from '../../src/sampler/rng.js';
import { repoRoot } from '../helpers/paths.js';

const SEED = Number(process.env.DYLLM_TEST_SEED ?? 20_260_318);
console.log(`scheduler-async: DYLLM_TEST_SEED=${SEED}`);

const DEMO = join(repoRoot, 'models', 'dyllm-demo');

interface Stub extends DeviceModel {
  /** What each step returned ('logits' or 'stats'), in order. */
  readonly log: string[];
}

/**
 * The host model behind asynchronous steps, refusing a second step while one is awaited (as GpuForward does).
 * `stats`: return the rows' statistics whenever the loop allows them. `reject(batch, call)`: an error to reject with.
 */
function stub(p: Pipeline, opts: { stats?: boolean; reject?: (batch: ForwardBatch, call: number) => Error | null } = {}): Stub {
  const m = p.model;
  const log: string[] = [];
  let busy = false;
  let calls = 0;
  const step = async (batch: ForwardBatch, stats: StatsRequest | null, run: () => Float32Array): Promise<Float32Array | LogitRowStats> => {
    if (busy) throw new Error('two steps on the device at once');
    busy = true;
    try {
      await new Promise((r) => setTimeout(r, 1));
      const e = opts.reject?.(batch, calls++);
      if (e) throw e;
      const logits = run();
      if (!stats || !opts.stats) {
        log.push('logits');
        return logits;
      }
      log.push('stats');
      const V = m.config.vocabSize;
      const M = logits.length / V;
      const s = { argmax: new Int32Array(M), p1: new Float64Array(M), p2: new Float64Array(M), negEntropy: stats.entropy ? new Float64Array(M) : null };
      m.backend.logitStats(logits, M, V, s.argmax, s.p1, s.p2, s.negEntropy);
      return s;
    } finally {
      busy = false;
    }
  };
  return {
    log,
    config: m.config,
    backend: m.backend,
    weightBytes: m.weightBytes,
    forward: () => {
      throw new Error('the synchronous forward must not run when forwardAsync exists');
    },
    forwardPlanned: () => {
      throw new Error('the synchronous planned forward must not run when forwardPlannedAsync exists');
    },
    forwardAsync: (batch, stats) => step(batch, stats, () => m.forward(batch)),
    forwardPlannedAsync: (batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null) => step(batch, stats, () => m.forwardPlanned(batch, plan, counts)),
    releaseCaches: () => {},
    destroy: () => {},
  };
}

interface Req {
  readonly tokens: number[];
  readonly gen: GenerateOptionsInput;
  readonly accel?: AccelOptionsInput;
  readonly logprobs?: number | null;
}

/**
 * Submits every request to one Scheduler over `model` (in one tick, or with `stagger` one every 2 ms, so that they
 * arrive while a step is awaited; `later` after the first reply) and collects the replies.
 */
async function serve(p: Pipeline, model: DiffusionModel, reqs: readonly Req[], later: readonly Req[] = [], stagger = false): Promise<Map<number, DoneMsg | string>> {
  const out = new Map<number, DoneMsg | string>();
  const all = reqs.length + later.length;
  let finished!: () => void;
  const over = new Promise<void>((r) => (finished = r));
  const msg = (r: Req, id: number): SubmitMsg => {
    const options = resolveOptions(p.config, r.gen, p.generation);
    return {
      type: 'submit', id, tokens: r.tokens, promptParam: 'prompt', options, accel: resolveAccel(p.config, r.accel ?? {}, options),
      stream: true, streamSteps: false, n: 1, stop: [], logprobs: r.logprobs ?? null, testFault: null,
    };
  };
  let laterSent = false;
  const sched = new Scheduler({ ...p, model }, { maxBatch: 8, maxPromptTokens: 4096 }, (m: FromWorker) => {
    if (m.type === 'done' || m.type === 'error') {
      out.set(m.id, m.type === 'done' ? m : m.message);
      if (!laterSent) {
        laterSent = true;
        later.forEach((r, i) => sched.submit(msg(r, reqs.length + i + 1)));
      }
      if (out.size === all) finished();
    }
  });
  reqs.forEach((r, i) => (stagger && i > 0 ? setTimeout(() => sched.submit(msg(r, i + 1)), 2 * i) : sched.submit(msg(r, i + 1))));
  await over;
  return out;
}

const tokensOf = (d: DoneMsg | string | undefined): number[] => {
  assert.ok(d !== undefined && typeof d !== 'string', `expected an answer, found ${String(d)}`);
  return d.choices[0].tokens;
};

describe('the scheduler with an asynchronous model (dyllm serve --backend webgpu)', () => {
  let p: Pipeline;
  let reqs: Req[];
  before(async () => {
    p = await loadPipeline(DEMO, { backend: 'auto' });
    const rng = new Rng(SEED);
    const V = p.config.vocabSize;
    // Distinct prompt lengths (the failing-step test tells requests apart by their canvas length).
    reqs = [3, 5, 8, 11].map((n, i) => ({
      tokens: Array.from({ length: n + Math.floor(rng.nextFloat64() * 3) * 16 }, () => 1 + Math.floor(rng.nextFloat64() * (V - 1))).map((t) => (t === p.ids.mask ? 1 : t)),
      gen: { genLength: 16, steps: 8, seed: Math.floor(rng.nextFloat64() * 1000), ...(i === 1 ? { temperature: 0.7 } : {}) },
      ...(i === 2 ? { accel: { method: 'dyllm', threshold: 0.99 } } : {}),
      ...(i === 3 ? { logprobs: 2 } : {}),
    }));
  });

  for (const stats of [false, true]) {
    test(`concurrent requests (dense, sampled, DyLLM, logprobs) give the synchronous server's tokens: steps returning ${stats ? 'statistics when allowed' : 'logits'}`, { timeout: 300_000 }, async () => {
      const sync = await serve(p, p.model, reqs);
      const model = stub(p, { stats });
      // Statistics: the requests arrive while steps are awaited (the stub refuses a second step meanwhile).
      const got = await serve(p, model, reqs, [], stats);
      for (let id = 1; id <= reqs.length; id++) assert.deepEqual(tokensOf(got.get(id)), tokensOf(sync.get(id)), `request ${id}`);
      const done = got.get(4) as DoneMsg;
      assert.deepEqual(done.choices[0].logprobs, (sync.get(4) as DoneMsg).choices[0].logprobs, 'logprobs come from the logits the step returned');
      assert.ok(model.log.length > 0);
      if (stats) assert.ok(model.log.includes('stats') && model.log.includes('logits'), model.log.join(','));
      else assert.ok(model.log.every((w) => w === 'logits'));
    });
  }

  test('a step that rejects fails only its request, in one line', { timeout: 300_000 }, async () => {
    const sync = await serve(p, p.model, reqs);
    const failLen = reqs[1].tokens.length + 16;
    let failed = 0;
    const model = stub(p, { reject: (b) => (b.seqStart[1] - b.seqStart[0] === failLen && failed++ === 2 ? new WebGpuError('webgpu: validation: test fault\nsecond line') : null) });
    const got = await serve(p, model, reqs);
    assert.equal(got.get(2), 'generation failed at step 2: webgpu: validation: test fault');
    for (const id of [1, 3, 4]) assert.deepEqual(tokensOf(got.get(id)), tokensOf(sync.get(id)), `request ${id}`);
  });

  test('a lost device fails the requests that stepped on it; a request after it runs on a new device', { timeout: 300_000 }, async () => {
    const sync = await serve(p, p.model, [...reqs, reqs[0]]);
    let devices = 0;
    const lostAt = 4;
    const first = stub(p, { reject: (_b, call) => (call === lostAt ? new WebGpuError('webgpu: device lost (unknown): test fault') : null) });
    const model = new RenewableGpuModel(first, async () => {
      devices++;
      return stub(p);
    });
    // The 5th step (round robin over 4: request 1's second) finds the device lost: all four have stepped and fail; the fifth runs on device 2.
    const got = await serve(p, model, reqs, [reqs[0]]);
    for (let id = 1; id <= 4; id++) assert.match(got.get(id) as string, /^generation failed at step 1: webgpu: device lost \(unknown\): test fault$/, `request ${id}`);
    assert.deepEqual(tokensOf(got.get(5)), tokensOf(sync.get(5)));
    assert.equal(devices, 1);
  });

  test('no new device after a loss: the next request is told in one line that the GPU is gone', { timeout: 300_000 }, async () => {
    const first = stub(p, { reject: () => new WebGpuError('webgpu: device lost (destroyed): test fault') });
    const model = new RenewableGpuModel(first, () => Promise.reject(new Error('no WebGPU adapter')));
    const got = await serve(p, model, [reqs[0]], [reqs[2]]);
    assert.equal(got.get(1), 'generation failed at step 0: webgpu: device lost (destroyed): test fault');
    assert.equal(got.get(2), 'generation failed at step 0: webgpu: the GPU is gone: device lost (destroyed): test fault, and no new device could be had (no WebGPU adapter); restart the server, or serve with --backend auto');
  });
});

test('on a WebGPU server, a request whose acceleration the GPU does not run is refused (400) with generate\'s line, naming its field', async () => {
  const p = await loadPipeline(DEMO, { backend: 'reference' });
  const info = { arch: p.config.arch, generation: p.generation, vocabSize: p.config.vocabSize, maxSequenceLength: p.config.maxSequenceLength };
  const parse = (dyllm: object): ParsedRequest => parseGenerationRequest({ prompt: 'hi', max_tokens: 16, dyllm }, false, info, 64) as ParsedRequest;
  refuseOnGpu(parse({}));
  refuseOnGpu(parse({ accel: 'dyllm' }));
  for (const [dyllm, message, param] of [
    [{ accel: 'prefix' }, '--accel prefix: only dense steps and DyLLM run on WebGPU yet; use --accel none or dyllm, or another backend', 'dyllm.accel'],
    [{ accel: 'dyllm', attn_update: 'rescale' }, '--attn-update rescale: DyLLM on WebGPU runs the delta update only; drop --attn-update', 'dyllm.attn_update'],
    [{ accel: 'dyllm', qkv_tol: 0.01 }, '--qkv-tol: the Q/K/V tolerance does not run on WebGPU yet; drop it', 'dyllm.qkv_tol'],
  ] as const) {
    assert.throws(() => refuseOnGpu(parse(dyllm)), (e: unknown) => {
      assert.ok(e instanceof RequestError);
      assert.deepEqual([e.status, e.message, e.param, e.code], [400, message, param, 'unsupported_on_webgpu']);
      return true;
    });
  }
});
