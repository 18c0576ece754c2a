#!/usr/bin/env node
// Builds the /local page's engine worker (src/web/worker.ts) into one browser ESM file, dist/web/local-worker.js (and
// the chat-template helper it nests, src/web/template-worker.ts, into dist/web/template-worker.js),
// with esbuild (a devDependency; `npm run build` runs this after tsc). The bundle holds the engine, the reference
// backend, the loaders and @huggingface/tokenizers / @huggingface/jinja. Node built-ins never run on this path
// (models load from bytes, load/bytes.ts): node:path and node:assert get small browser versions, every other node:*
// module a stand-in that throws if called, load/template-sandbox.ts (a Node helper thread) is swapped for
// src/web/template-render.ts, load/tokenizer-probe.ts (a Node helper thread too) for src/web/shims/tokenizer-probe.ts,
// load/hub.ts (folders, the Hugging Face cache) for src/web/shims/hub.ts, kernels/native.ts
// (the addon, located on disk at import) for src/web/shims/native.ts. Run from the repository root: node scripts/build-web.mjs
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const shims = join(root, 'src', 'web', 'shims');

/** Resolves node:* and the template sandbox to their browser versions; lists the built-ins it stood in for. */
const browserShims = (stubbed) => ({
  name: 'dyllm-browser-shims',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      const mod = args.path.slice(5);
      if (mod === 'path') return { path: join(shims, 'node-path.cjs') };
      if (mod === 'assert' || mod === 'assert/strict') return { path: join(shims, 'node-assert.cjs') };
      stubbed.add(args.path);
      return { path: join(shims, 'node-unavailable.cjs') };
    });
    b.onResolve({ filter: /\/template-sandbox\.js$/ }, () => ({ path: join(root, 'src', 'web', 'template-render.ts') }));
    // The tokenizer's pattern probe runs in a Node helper thread; the page probes nothing.
    b.onResolve({ filter: /\/tokenizer-probe\.js$/ }, () => ({ path: join(shims, 'tokenizer-probe.ts') }));
    // Folder and Hugging Face cache resolution (and @huggingface/hub with it) has no place in a page.
    b.onResolve({ filter: /\/load\/hub\.js$/ }, () => ({ path: join(shims, 'hub.ts') }));
    // The native addon is found on disk when native.ts is imported; a page has none.
    b.onResolve({ filter: /^\.\.?\/(\.\.\/)*(kernels\/)?native\.js$/ }, (args) =>
      (args.importer.includes(`${'/src/kernels/'}`) || args.path.includes('kernels/native.js') ? { path: join(shims, 'native.ts') } : undefined));
  },
});

const stubbed = new Set();
const result = await build({
  absWorkingDir: root,
  // The engine worker, and the chat-template helper it nests (src/web/template-render.ts).
  entryPoints: { 'local-worker': join(root, 'src', 'web', 'worker.ts'), 'template-worker': join(root, 'src', 'web', 'template-worker.ts') },
  outdir: join(root, 'dist', 'web'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: false,
  legalComments: 'inline',
  logLevel: 'warning',
  // The loaders read process.env for optional limits (template timeout); the browser has none.
  banner: { js: 'globalThis.process ??= { env: {} };' },
  plugins: [browserShims(stubbed)],
  metafile: true,
});
const kib = (name) => (Object.entries(result.metafile.outputs).find(([f]) => f.endsWith(name))?.[1].bytes ?? 0) / 1024;
console.log(`dist/web/local-worker.js: ${kib('local-worker.js').toFixed(0)} KiB, template-worker.js: ${kib('template-worker.js').toFixed(0)} KiB (never-called stand-ins for ${[...stubbed].sort().join(', ') || 'no built-ins'})`);
