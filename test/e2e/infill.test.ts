/**
 * Infilling (src/engine/infill.ts, GenerateRequest.fixed): fixed text never changes, every hole is filled, the
 * family samplers and DyLLM run unchanged (all-salient DyLLM ≡ dense on an infill), the library's m.infill, the CLI's
 * --infill with its one-line errors, and the README's "Infilling" example.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { load } from '../../src/api.js';
import { resolveAccel, type AccelOptionsInput } from '../../src/engine/accel.js';
import { generateSteps } from '../../src/engine/generate.js';
import { encodeInfill, infillOptions, MAX_INFILL_MASKS, parseInfill } from '../../src/engine/infill.js';
import { resolveOptions, type GenerateOptionsInput } from '../../src/engine/options.js';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { fixturePath } from '../helpers/fixtures.js';
import { repoRoot } from '../helpers/paths.js';

const BIN = join(repoRoot, 'bin', 'dyllm.js');
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

test('template errors are one line naming the hole, the bound and the fix', () => {
  const msg = (t: unknown) => {
    try {
      parseInfill(t, '--infill');
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  assert.equal(msg('a <mask:0> b'), '--infill: expected <mask:N> with N in [1, 1024], found "<mask:0>"');
  assert.equal(msg('a <mask:x>'), '--infill: expected <mask:N> with N in [1, 1024], found "<mask:x>"');
  assert.equal(msg('a <mask:1025>'), '--infill: expected <mask:N> with N in [1, 1024], found "<mask:1025>"');
  assert.equal(msg('<mask:1000> <mask:25>'), '--infill: expected at most 1024 masks in all holes, found 1025 by "<mask:25>" (shorten the holes)');
  assert.equal(msg('no holes'), '--infill: expected at least one <mask:N> hole, found none (write e.g. "The capital of France is <mask:4>.")');
  assert.equal(msg('x'.repeat(70_000)), '--infill: expected a template of at most 65536 characters, found 70000');
  assert.equal(msg(42), '--infill: expected a template string with <mask:N> holes, found number');
  assert.deepEqual(parseInfill(`<mask:${MAX_INFILL_MASKS}>`, 'x'), [{ hole: MAX_INFILL_MASKS }]);
  assert.deepEqual(parseInfill('a <mask:2>b<mask:1>', 'x'), [{ text: 'a ' }, { hole: 2 }, { text: 'b' }, { hole: 1 }]);
});

function infillRun(p: Pipeline, template: string, gen: GenerateOptionsInput, accel?: AccelOptionsInput) {
  const c = encodeInfill(p, parseInfill(template, 'infill'), 'infill');
  const options = resolveOptions(p.config, infillOptions(gen, c), p.generation);
  const it = generateSteps(p.model, p.ids, { prompts: [c.prompt], fixed: [c.region], options, accel: accel ? resolveAccel(p.config, accel, options) : undefined });
  let committed = 0;
  const seen = new Set<number>();
  for (;;) {
    const r = it.next();
    if (r.done) return { c, r: r.value, committed, seen, options };
    // Only hole offsets are ever committed.
    for (const off of r.value.sequences[0].committed) {
      assert.ok(c.holes.some((h) => off >= h.start && off < h.start + h.length), `offset ${off} is not in a hole`);
      committed++;
      seen.add(off);
    }
  }
}

for (const [name, blocks] of [['llada-tiny', true], ['llada-tiny', false], ['dream-tiny', false]] as const) {
  test(`${name}${blocks ? ' in blocks' : ''}: fixed tokens never change, every hole is filled, all-salient DyLLM ≡ dense`, async () => {
    const p = await loadPipeline(fixturePath(name), { backend: new ReferenceBackend() });
    const template = 'The cat sat <mask:3> on the mat, and then <mask:2>. End<mask:3>';
    // Several LLaDA blocks: the region split by its smallest divisor above 1.
    const G = encodeInfill(p, parseInfill(template, 'infill'), 'infill').region.length;
    let d = 2;
    while (G % d !== 0) d++;
    const gen: GenerateOptionsInput = blocks ? { blockLength: G / d } : {};
    const dense = infillRun(p, template, gen);
    const { c, r } = dense;
    const out = r.tokens[0];
    assert.equal(out.length, c.region.length);
    c.region.forEach((t, i) => {
      // Every hole position was committed (Dream's sampler, as upstream, may commit the mask id a random tiny model predicts).
      if (t === p.ids.mask) assert.ok(dense.seen.has(i) && (name === 'dream-tiny' || out[i] !== p.ids.mask), `hole position ${i} not filled`);
      else assert.equal(out[i], t, `fixed position ${i} changed`);
    });
    // Every hole committed (a random tiny model may predict the mask id itself, which commits a position again later).
    assert.ok(dense.committed >= c.masks);
    // Generated tokens: the holes' masks only, not the region's fixed text.
    assert.ok(c.masks < c.region.length);
    assert.equal(r.stats.generatedTokens, c.masks);
    if (!blocks) assert.equal(dense.options.steps, c.masks);
    else assert.ok(dense.options.steps >= c.masks && dense.options.steps % d === 0 && G / dense.options.blockLength === d);
    const all = infillRun(p, template, gen, { method: 'dyllm', allSalient: true });
    assert.deepEqual([...all.r.tokens[0]], [...out]);
    assert.equal(all.r.stats.salientFraction, 1);
    const sparse = infillRun(p, template, gen, { method: 'dyllm', threshold: 0.9 });
    c.region.forEach((t, i) => (t === p.ids.mask ? assert.ok(sparse.seen.has(i)) : assert.equal(sparse.r.tokens[0][i], t)));
  });
}

test('library: m.infill fills the holes of the bundled model\'s answer; errors name the option', async () => {
  const m = await load('dyllm-demo');
  const prompt = m.pipeline.tokenizer.decode(m.encode('Tom has 12 apples. He buys 7 more. How many apples does Tom have now?'));
  const r = await m.infill(`${prompt}12+7=<mask:2>. #### <mask:2>`);
  assert.deepEqual(r.fills, ['19', '19']);
  assert.ok(r.text.endsWith('12+7=19. #### 19'), r.text);
  assert.equal(r.stats.steps, 4);
  // Only the 4 masked positions were generated; the fixed text between the holes (". #### ") was not.
  assert.equal(r.stats.generatedTokens, 4);
  const d = await m.infill(`${prompt}12+7=<mask:2>. #### <mask:2>`, { accel: 'dyllm' });
  assert.deepEqual(d.fills, ['19', '19']);
  await assert.rejects(m.infill('x <mask:2>', { genLength: 8 } as never), /^OptionError: genLength: set by the infill template/);
  await assert.rejects(m.infill('x <mask:0>'), { message: 'infill: expected <mask:N> with N in [1, 1024], found "<mask:0>"' });
  await assert.rejects(m.infill(`<|mdm_mask|> <mask:1>`), /^ConfigError: infill: the fixed text holds the mask token "<\|mdm_mask\|>"; write holes as <mask:N>$/);
});

test('CLI: generate --infill prints the filled template; --json adds the fills; bad input is one line, exit 2', () => {
  const ok = cli('generate', '--infill', 'Q: 2+3=?\nA: 2+3=<mask:1>. #### <mask:1>', '--json');
  assert.equal(ok.code, 0, ok.stderr);
  const j = JSON.parse(ok.stdout);
  assert.equal(j.fills.length, 2);
  // The two holes' positions, not the fixed text between them.
  assert.equal(j.stats.generated_tokens, 2);
  assert.ok(j.text.startsWith('Q: 2+3=?\nA: 2+3=') && j.text.includes('. #### '), j.text);
  const e = (args: string[], line: string) => {
    const r = cli('generate', ...args);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `dyllm: ${line}\n`);
  };
  e(['--infill', 'a <mask:0>'], '--infill: expected <mask:N> with N in [1, 1024], found "<mask:0>"');
  e(['--infill', 'a <mask:2>', '--gen-length', '8'], '--gen-length: set by the infill template (its positions from the first hole on); leave it unset');
  e(['--infill', 'a <mask:2>', '--chat'], '--infill: a template is raw text (no chat template); drop --chat');
  e(['--infill', 'a <mask:2>', 'prompt'], 'expected exactly one of: a positional PROMPT, --prompt TEXT, --prompt-ids IDS, --infill TEMPLATE');
});

test('README "Infilling": its command prints what the README says', () => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n### Infilling'));
  const m = /```sh\n\$ dyllm generate --infill '([^']+)'([^\n]*)\n([^`]*)```/.exec(section);
  assert.ok(m, 'README has an Infilling ```sh example');
  const args = ['generate', '--infill', m[1], ...m[2].trim().split(/\s+/)];
  const r = cli(...args);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, m[3]);
});
