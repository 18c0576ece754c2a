/**
 * bench/peers-lib.ts: the mapping of LLaDA generate.py settings onto llama-diffusion-cli's block schedule, checked
 * against a port of that CLI's loop (llama.cpp examples/diffusion/diffusion.cpp, `diffusion_generate`: blocks
 * counted over the whole canvas, starting at the prompt's end; get_num_transfer_tokens per block; a forward
 * before the empty-block check), and the readers of its output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareTokens, idPrompt, llamaSchedule, markdownReport, parseIdText, parseLlamaOutput, svgReport } from '../../bench/peers-lib.js';

function numTransfer(mask: number, steps: number): number[] {
  const base = Math.floor(mask / steps);
  const rem = mask % steps;
  return Array.from({ length: steps }, (_, i) => base + (i < rem ? 1 : 0));
}

/** generate.py: per step, [blockStart, blockEnd) and how many tokens it commits; positions relative to the canvas. */
function lladaSchedule(P: number, G: number, B: number, steps: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  const blocks = G / B;
  for (let b = 0; b < blocks; b++) {
    for (const k of numTransfer(B, steps / blocks)) out.push([P + b * B, P + (b + 1) * B, k]);
  }
  return out;
}

/** diffusion.cpp's block-based loop, reduced to what it commits per forward; also counts forwards. */
function llamaCppSchedule(P: number, ub: number, B: number, steps: number): { commits: [number, number, number][]; forwards: number } {
  assert.equal(ub % B, 0, 'GGML_ASSERT(params.max_length % params.block_length == 0)');
  const numBlocks = ub / B;
  assert.equal(steps % numBlocks, 0, 'GGML_ASSERT(params.steps % num_blocks == 0)');
  const perBlock = steps / numBlocks;
  const masked = new Array<boolean>(ub).fill(false).map((_, i) => i >= P);
  const commits: [number, number, number][] = [];
  let forwards = 0;
  for (let b = 0; b < numBlocks; b++) {
    const start = P + b * B;
    const end = Math.min(P + (b + 1) * B, ub);
    let count = 0;
    for (let i = start; i < end; i++) if (masked[i]) count++;
    const nt = numTransfer(count, perBlock);
    for (let s = 0; s < perBlock; s++) {
      forwards++; // llama_decode runs before the mask positions are collected
      const pos: number[] = [];
      for (let i = 0; i < ub; i++) if (masked[i] && i >= start && i < end) pos.push(i);
      if (pos.length === 0) break;
      const k = nt[s];
      for (const i of pos.slice(0, k)) masked[i] = false; // leftmost first: every confidence is 1 under --top-k 1
      commits.push([start, end, k]);
    }
  }
  assert.ok(masked.every((m) => !m), 'every generated position committed');
  return { commits, forwards };
}

test('llamaSchedule reproduces generate.py block by block, step by step', () => {
  for (const [P, G, B, steps] of [[32, 64, 32, 64], [32, 256, 32, 256], [40, 64, 8, 8], [48, 64, 1, 64], [32, 64, 32, 2], [64, 96, 32, 48], [8, 16, 8, 6]]) {
    const s = llamaSchedule(P, G, B, steps);
    assert.equal(s.ub, P + G);
    const sim = llamaCppSchedule(P, s.ub, B, s.steps);
    assert.deepEqual(sim.commits, lladaSchedule(P, G, B, steps), `P ${P} G ${G} B ${B} steps ${steps}`);
    assert.equal(sim.forwards, steps + s.emptyBlockDecodes, 'forwards = generate.py steps + the empty trailing blocks');
  }
});

test('llamaSchedule refuses what llama-diffusion-cli cannot express, saying why', () => {
  assert.throws(() => llamaSchedule(39, 64, 32, 64), /prompt length 39 is not a multiple of block 32: llama-diffusion-cli counts blocks over prompt \+ gen/);
  assert.throws(() => llamaSchedule(32, 60, 32, 60), /gen 60 is not a multiple of block 32/);
  assert.throws(() => llamaSchedule(32, 64, 32, 3), /steps 3 is not a multiple of the 2 blocks/);
});

test('parseLlamaOutput reads the loop time and the answer after it, with or without log prefixes', () => {
  // as llama-diffusion-cli writes it on stderr (progress bar with \r, prefixed messages)
  const prefixed = '0.00.076.794 I diffusion step: 0/9 [   ] 0%0.13.880.614 I \rdiffusion step: 8/9 [==] 88%0.13.914.132 I \n' +
    'total time: 13837.33ms, time per step: 1537.48ms, sampling time per step: 0.01ms\n0.13.914.204 I \n[t5][t17]\n';
  assert.deepEqual(parseLlamaOutput(prefixed), { loopMs: 13837.33, text: '[t5][t17]', complete: true });
  const plain = 'total time: 2.00ms, time per step: 1.00ms, sampling time per step: 0.00ms\n\n25-8=17.\n\n#### 17\n';
  assert.deepEqual(parseLlamaOutput(plain), { loopMs: 2, text: '25-8=17.\n\n#### 17', complete: true });
  const trailing = 'total time: 3.50ms, time per step: 1.00ms, sampling time per step: 0.00ms\n0.01.000.000 I \nab\n\n0.01.000.100 W teardown warning\n';
  assert.deepEqual(parseLlamaOutput(trailing), { loopMs: 3.5, text: 'ab\n', complete: true });
  // the answer is empty (all end-of-text tokens, which are not printed) but its message arrived
  assert.deepEqual(parseLlamaOutput('total time: 1.00ms, time per step: 1.00ms, sampling time per step: 0.00ms\n0.01.000.000 I \n\n'), { loopMs: 1, text: '', complete: true });
  // the process exited before its logger thread wrote the answer's message
  assert.deepEqual(parseLlamaOutput('total time: 1.00ms, time per step: 1.00ms, sampling time per step: 0.00ms\n'), { loopMs: 1, text: '', complete: false });
  assert.throws(() => parseLlamaOutput('error: failed to load model\n'), /no "total time: \.\.\. ms" line/);
});

test('id prompts round-trip and anything else in an answer is refused', () => {
  const ids = [0, 5, 126336, 42];
  assert.equal(idPrompt(ids), '[t0][t5][t126336][t42]');
  assert.deepEqual(parseIdText(idPrompt(ids)), ids);
  assert.deepEqual(parseIdText(''), []);
  assert.throws(() => parseIdText('[t1] [t2]'), /expected only \[t<id>\] tokens in the answer, found " \[t2\]" at offset 4/);
});

test('compareTokens reports the first difference', () => {
  assert.deepEqual(compareTokens([1, 2, 3], [1, 2, 3]), { identical: true, same: 3, total: 3, first: null });
  assert.deepEqual(compareTokens([1, 2, 3, 4], [1, 9, 3]), { identical: false, same: 2, total: 4, first: { index: 1, ours: 2, theirs: 9 } });
});

test('the report divides by llama.cpp bf16 and survives a missing engine', () => {
  const rows = [
    { engine: 'dyllm dense', loopMs: 2000, wallMs: 3000, peakRssKb: 2048, tokensPerS: 32 },
    { engine: 'llama.cpp bf16', loopMs: 4000, wallMs: 4500, peakRssKb: 1024, tokensPerS: 16 },
  ];
  const md = markdownReport([{ model: 'm', P: 32, G: 64, steps: 64, block: 32, rows }]);
  assert.match(md, /\| m \| 64 \| llama\.cpp bf16 \| 2\.00× \| – \| 0\.67 \| – \| 2\.00 \|/);
  const spin = { engine: 'llama.cpp bf16, default OpenMP wait', loopMs: 8000, wallMs: 9000, peakRssKb: 1024, tokensPerS: 8 };
  const md2 = markdownReport([{ model: 'm', P: 32, G: 64, steps: 64, block: 32, rows: [...rows, spin] }]);
  assert.match(md2, /\| m \| 64 \| llama\.cpp bf16 \| 2\.00× /);
  assert.match(md2, /\| m \| 64 \| llama\.cpp bf16, default OpenMP wait \| 4\.00× \| – \| 0\.33 \| – \| 2\.00 \|/);
  const svg = svgReport([{ model: 'm', P: 32, G: 64, steps: 64, block: 32, rows }], 't <&>');
  assert.match(svg, /^<svg /);
  assert.match(svg, /t &lt;&amp;&gt;/);
  assert.match(svg, /2\.00× \(32\.00 tok\/s\)/);
});
