/**
 * Batched DyLLM across requests (engine/canvas.ts forwardMergedPlanned, as server/scheduler.ts uses it): several
 * requests with different prompts, lengths, seeds and thresholds stepped together — each tick, the parts with equal
 * keys share one planned forward — generate exactly what each generates alone, token for token, with the same
 * per-step telemetry. Also: parts of different keys are refused before anything is computed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePrompt, loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { DenoiseRun, forwardMergedPlanned, type GenerateRequest } from '../../src/engine/generate.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import type { PlannedPart } from '../../src/engine/accel/types.js';
import type { ForwardBatch } from '../../src/models/types.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';

interface Spec {
  prompts: number[][];
  options: GenerateOptionsInput;
  accel: Record<string, unknown>;
}

function request(p: Pipeline, s: Spec): GenerateRequest {
  return { prompts: s.prompts, options: resolveOptions(p.config, s.options, p.generation), accel: resolveAccel(p.config, { method: 'dyllm', ...s.accel }) };
}

/** Each run alone: tokens and the salient rows per layer of every step. */
function alone(p: Pipeline, s: Spec): { tokens: number[][]; salient: string[] } {
  const run = new DenoiseRun(p.model, p.ids, request(p, s));
  const salient: string[] = [];
  for (;;) {
    const b = run.prepare();
    if (!b) break;
    const ev = run.finish(run.forwardOwn(b), 0);
    assert.ok(ev.accel, 'a DyLLM step reports telemetry');
    salient.push(JSON.stringify(ev.accel?.salientPerLayer));
  }
  return { tokens: run.result().tokens.map((t) => [...t]), salient };
}

/** All runs stepped together, one merged planned forward per key per tick. Returns results and the largest group. */
function together(p: Pipeline, specs: Spec[]): { tokens: number[][][]; salient: string[][]; largest: number } {
  const runs = specs.map((s) => new DenoiseRun(p.model, p.ids, request(p, s)));
  const salient: string[][] = specs.map(() => []);
  let largest = 0;
  for (;;) {
    const groups = new Map<string, { i: number; batch: ForwardBatch; part: PlannedPart }[]>();
    runs.forEach((run, i) => {
      const batch = run.prepare();
      if (!batch) return;
      assert.ok(run.plannable);
      const part = run.planOwn(batch);
      const g = groups.get(part.key) ?? [];
      g.push({ i, batch, part });
      groups.set(part.key, g);
    });
    if (groups.size === 0) break;
    for (const g of groups.values()) {
      largest = Math.max(largest, g.length);
      const logits = forwardMergedPlanned(p.model, g);
      g.forEach((m, j) => salient[m.i].push(JSON.stringify(runs[m.i].finish(logits[j], 0).accel?.salientPerLayer)));
    }
  }
  return { tokens: runs.map((r) => r.result().tokens.map((t) => [...t])), salient, largest };
}

function check(p: Pipeline, specs: Spec[], label: string): void {
  const t = together(p, specs);
  assert.ok(t.largest >= 2, `${label}: some steps were merged (largest group ${t.largest})`);
  specs.forEach((s, i) => {
    const a = alone(p, s);
    assert.deepEqual(t.tokens[i], a.tokens, `${label}: request ${i} tokens`);
    assert.deepEqual(t.salient[i], a.salient, `${label}: request ${i} salient rows per layer, step by step`);
  });
}

test('bundled model: batched DyLLM requests generate exactly what each generates alone', { timeout: 600_000 }, async () => {
  const p = await loadPipeline(join(repoRoot, 'models', 'dyllm-demo'));
  const qs = readFileSync(join(repoRoot, 'data', 'arith-test.jsonl'), 'utf8').trim().split('\n').slice(0, 5).map((l) => (JSON.parse(l) as { question: string }).question);
  const enc = (i: number) => encodePrompt(p, qs[i], true);
  const specs: Spec[] = [
    { prompts: [enc(0)], options: { genLength: 32, steps: 32, blockLength: 16 }, accel: {} },
    { prompts: [enc(1)], options: { genLength: 48, steps: 48, blockLength: 16, temperature: 0.7, seed: 11 }, accel: {} },
    { prompts: [enc(2), enc(3)], options: { genLength: 32, steps: 32, blockLength: 32, temperature: 0.5, seed: 3 }, accel: {} },
    { prompts: [enc(4).slice(0, 20)], options: { genLength: 32, steps: 16, blockLength: 16 }, accel: { oProj: 'recompute' } },
    { prompts: [enc(1)], options: { genLength: 24, steps: 24, blockLength: 8 }, accel: { threshold: 0.995 } },
    { prompts: [enc(0)], options: { genLength: 32, steps: 32, blockLength: 16 }, accel: { attnUpdate: 'rescale' } },
  ];
  check(p, specs, 'bundled');
});

test('dream-tiny (shifted logits, entropy): batched DyLLM requests generate exactly what each generates alone', { timeout: 300_000 }, async () => {
  const p = await loadPipeline(fixturePath('dream-tiny-f32-sharded'));
  const specs: Spec[] = [
    { prompts: [[12, 40, 41, 42, 7]], options: { genLength: 16, steps: 16, alg: 'entropy' }, accel: { threshold: 0.999 } },
    { prompts: [[99, 3], [5, 6, 7, 8, 9, 10, 11, 13]], options: { genLength: 12, steps: 12, alg: 'entropy', temperature: 0.4, seed: 5 }, accel: { threshold: 0.999 } },
    { prompts: [[5, 6, 7]], options: { genLength: 20, steps: 10, alg: 'maskgit_plus', batchLayout: 'left-pad' }, accel: { threshold: 0.999, fullSteps: 2 } },
  ];
  check(p, specs, 'dream-tiny');
});

test('forwardMergedPlanned refuses parts that cannot share a forward, before computing anything', async () => {
  const p = await loadPipeline(fixturePath('llada-tiny-f32-sharded'));
  const mk = (threshold: number, fullSteps: number) => new DenoiseRun(p.model, p.ids, request(p, { prompts: [[5, 6, 7]], options: { genLength: 8, steps: 8, blockLength: 8 }, accel: { threshold, fullSteps } }));
  const a = mk(0.99, 1);
  const b = mk(0.995, 1);
  for (const r of [a, b]) r.finish(r.forwardOwn(r.prepare()!), 0);
  const ma = { batch: a.prepare()!, part: null as unknown as PlannedPart };
  ma.part = a.planOwn(ma.batch);
  const mb = { batch: b.prepare()!, part: null as unknown as PlannedPart };
  mb.part = b.planOwn(mb.batch);
  assert.throws(() => forwardMergedPlanned(p.model, [ma, mb]), {
    message: 'forwardMergedPlanned: parts "dyllm(τ=0.99)|delta|when-cheaper" and "dyllm(τ=0.995)|delta|when-cheaper" cannot share a forward',
  });
});

test('batched DyLLM requests with qkvTol / headTol (beyond the paper) generate exactly what each generates alone', { timeout: 300_000 }, async () => {
  // The reuse decisions are per row, from the row's own input and its own sequence's cache: merging changes nothing.
  const p = await loadPipeline(fixturePath('dream-tiny-f32-sharded'));
  const tol = { threshold: 0.999, qkvTol: 0.05, headTol: 0.05 };
  const specs: Spec[] = [
    { prompts: [[12, 40, 41, 42, 7]], options: { genLength: 16, steps: 16, alg: 'entropy' }, accel: tol },
    { prompts: [[99, 3], [5, 6, 7, 8, 9, 10, 11, 13]], options: { genLength: 12, steps: 12, alg: 'entropy', temperature: 0.4, seed: 5 }, accel: tol },
    { prompts: [[5, 6, 7]], options: { genLength: 20, steps: 10, alg: 'maskgit_plus' }, accel: { threshold: 0.999, qkvTol: 0 } },
  ];
  check(p, specs, 'dream-tiny tolerances');
});
