/**
 * Model-folder fuzz: seeded hostile folders (folder-cases.ts) are loaded in a child process (folder-child.ts), one
 * at a time, each within a time budget. Every case must end in a one-line LoadError or load fine (and then serve a
 * request, or refuse it with a one-line error); a hang (the budget passes: the child is killed), a crash of the
 * child, or any other exception is a failure, reported with the case's mutations and how to replay it.
 *
 * DYLLM_FUZZ_SEED=<seed> replays a run, DYLLM_FUZZ_CASE=<i> one case of it; DYLLM_FUZZ_CASES sets the budget
 * (60 in `npm test`, 1500 in `npm run fuzz:folders`); DYLLM_FUZZ_CASE_MS the time budget of one case.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { buildCase, type FolderCase } from './folder-cases.js';

const CASES = Number(process.env.DYLLM_FUZZ_CASES ?? 60);
const SEED = Number(process.env.DYLLM_FUZZ_SEED ?? Date.now() % 1_000_000);
const ONLY = process.env.DYLLM_FUZZ_CASE === undefined ? null : Number(process.env.DYLLM_FUZZ_CASE);
/** Loading a tiny fixture takes ~0.1 s; a runaway template is stopped after 0.5 s (twice: probe, then request). */
const CASE_MS = Number(process.env.DYLLM_FUZZ_CASE_MS ?? 30_000);
const childScript = new URL('./folder-child.js', import.meta.url);

interface Result {
  readonly i: number;
  readonly outcome: 'loaded' | 'load-error' | 'other' | 'hang' | 'crash';
  readonly message: string | null;
  readonly ms?: number;
}

class Child {
  private proc: ChildProcessWithoutNullStreams | null = null;
  private lines: Interface | null = null;
  private pending: ((r: Result | null) => void) | null = null;
  private stderr = '';

  private start(): void {
    this.stderr = '';
    const proc = spawn(process.execPath, [childScript.pathname], {
      env: { ...process.env, DYLLM_TEMPLATE_TIMEOUT_MS: '500' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    const lines = createInterface({ input: proc.stdout });
    lines.on('line', (l) => {
      const cb = this.pending;
      this.pending = null;
      cb?.(JSON.parse(l) as Result);
    });
    proc.on('exit', () => {
      const cb = this.pending;
      this.pending = null;
      if (this.proc === proc) this.proc = null;
      cb?.(null);
    });
    this.proc = proc;
    this.lines = lines;
  }

  /** Run one case; null result when the child died, 'hang' when the budget passed (the child is then killed). */
  run(i: number, dir: string): Promise<Result> {
    if (!this.proc) this.start();
    const proc = this.proc!;
    return new Promise<Result>((resolve) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.kill();
        resolve({ i, outcome: 'hang', message: `no answer within ${CASE_MS} ms (child killed)` });
      }, CASE_MS);
      this.pending = (r) => {
        clearTimeout(timer);
        resolve(r ?? { i, outcome: 'crash', message: `the child process died: ${this.stderr.trim().split('\n').slice(-3).join(' / ')}` });
      };
      proc.stdin.write(JSON.stringify({ i, dir }) + '\n');
    });
  }

  kill(): void {
    const proc = this.proc;
    this.proc = null;
    this.lines?.close();
    if (proc) {
      proc.kill('SIGKILL');
    }
  }

  close(): void {
    this.proc?.stdin.end();
    this.kill();
  }
}

test(`folder fuzz: ${ONLY !== null ? `case ${ONLY}` : `${CASES} hostile model folders`} end in a one-line LoadError or load fine, never hang or crash (seed ${SEED})`, { timeout: Math.max(600_000, CASES * 20_000) }, async (t) => {
  t.diagnostic(`seed ${SEED}: replay with DYLLM_FUZZ_SEED=${SEED} (one case: DYLLM_FUZZ_CASE=<i>)`);
  const root = mkdtempSync(join(tmpdir(), 'dyllm-fuzz-folders-'));
  const child = new Child();
  const counts: Record<string, number> = {};
  const failures: string[] = [];
  const indices = ONLY !== null ? [ONLY] : Array.from({ length: CASES }, (_, k) => k);
  let slowest = 0;
  try {
    for (const i of indices) {
      const dir = join(root, `case-${i}`);
      let c: FolderCase;
      try {
        const t0 = performance.now();
        c = buildCase(SEED, i, dir);
        // The fuzz's own cost is watched too: a case that takes long to build is a bug of the fuzz.
        if (performance.now() - t0 > 5_000) t.diagnostic(`case ${i}: building took ${Math.round(performance.now() - t0)} ms`);
      } catch (e) {
        failures.push(`case ${i}: the case could not be built: ${(e as Error).message}`);
        continue;
      }
      const r = await child.run(i, dir);
      counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
      slowest = Math.max(slowest, r.ms ?? 0);
      if (r.outcome !== 'loaded' && r.outcome !== 'load-error') {
        failures.push(`case ${i} [${c.fixture}: ${c.mutations.join('; ')}] ${r.outcome}: ${r.message}\n  replay: DYLLM_FUZZ_SEED=${SEED} DYLLM_FUZZ_CASE=${i}`);
      }
      if (process.env.DYLLM_FUZZ_VERBOSE) t.diagnostic(`case ${i} [${c.fixture}: ${c.mutations.join('; ')}] ${r.outcome} ${r.ms ?? '-'} ms: ${r.message ?? ''}`);
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    child.close();
    rmSync(root, { recursive: true, force: true });
  }
  t.diagnostic(`outcomes: ${JSON.stringify(counts)}; slowest case ${slowest} ms`);
  assert.deepEqual(failures, [], `${failures.length} of ${indices.length} cases broke the contract (seed ${SEED}):\n${failures.join('\n')}`);
});
