/**
 * The engine thread: loads the pipeline once, then runs the Scheduler on messages from the HTTP thread. All
 * model compute happens here, so the main thread's event loop never blocks. If this thread dies anyway, the HTTP
 * thread restarts it (supervisor.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadGpuPipeline } from '../engine/gpu-pipeline.js';
import { loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { loadNativeAddon } from '../kernels/native.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';
import { RenewableGpuModel } from './gpu-device.js';
import { Scheduler } from './scheduler.js';

const port = parentPort;
if (!port) throw new Error('src/server/worker.ts must run as a worker thread');
const cfg = workerData as WorkerConfig;
const send = (m: FromWorker): void => port.postMessage(m);

try {
  let p: Pipeline;
  if (cfg.backend === 'webgpu') {
    // As `dyllm generate --backend webgpu` builds it; a lost device is replaced at the next step (gpu-device.ts).
    const g = await loadGpuPipeline(cfg.modelDir);
    p = { ...g.pipeline, model: new RenewableGpuModel(g.pipeline.model, g.newModel) };
  } else {
    p = await loadPipeline(cfg.modelDir, { backend: cfg.backend, quant: cfg.quant });
  }
  const sched = new Scheduler(p, { maxBatch: cfg.maxBatch, maxPromptTokens: cfg.maxPromptTokens, testFaults: cfg.testFaults }, send);
  port.on('message', (m: ToWorker) => {
    if (m.type === 'submit') {
      // Test hook (faults.ts): the worker dies the two ways a real fault kills it.
      if (cfg.testFaults && m.testFault === 'exit') process.exit(70);
      if (cfg.testFaults && m.testFault === 'uncaught') {
        setImmediate(() => {
          throw new Error('test fault: uncaught exception in the engine worker');
        });
      }
      sched.submit(m);
    } else if (m.type === 'cancel') sched.cancel(m);
  });
  send({ type: 'ready', arch: p.config.arch, generation: p.generation, backend: p.model.backend.name, hasChatTemplate: p.chatTemplate !== null, threads: p.model.backend.name.startsWith('native') ? loadNativeAddon().threads() : 1, vocabSize: p.config.vocabSize, maxSequenceLength: p.config.maxSequenceLength });
} catch (e) {
  send({ type: 'fatal', message: (e as Error).message });
}
