/**
 * The import graph of src/ (every relative import and re-export of the TypeScript sources, type-only ones included):
 * no module may reach itself through its imports, and a folder imports only the folders below it in the data flow
 * (docs/architecture.md). A failure prints the cycle or the offending import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const src = join(root, 'src');

/** The layers, lowest first: a folder may import its own and earlier ones. Folders not listed are not checked. */
const LAYERS = ['tensor', 'kernels', 'load', 'cache', 'models', 'sampler', 'families', 'engine', 'eval', 'web', 'server', 'cli', '.'];

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** file -> the src files it imports (relative specifiers ending in .js name the .ts source). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of sources(src)) {
    const deps: string[] = [];
    for (const imp of ts.preProcessFile(readFileSync(f, 'utf8'), true, true).importedFiles) {
      if (!imp.fileName.startsWith('.')) continue;
      const target = resolve(dirname(f), imp.fileName.replace(/\.js$/, '.ts'));
      if (target.startsWith(src) && existsSync(target)) deps.push(target);
    }
    graph.set(f, deps);
  }
  return graph;
}

/** Every cycle's member list (strongly connected components of more than one file, or a file importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc);
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** The shortest path around a cycle from its first member, for the message: a → b → … → a. */
function path(graph: Map<string, string[]>, scc: string[], name = (f: string) => relative(root, f)): string {
  const members = new Set(scc);
  const from = new Map<string, string>();
  const queue = [scc[0]];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w) || from.has(w)) continue;
      from.set(w, v);
      if (w === scc[0]) queue.length = 0;
      else queue.push(w);
    }
  }
  const back = [scc[0]];
  for (let v = from.get(scc[0])!; v !== scc[0]; v = from.get(v)!) back.push(v);
  return [...back, scc[0]].reverse().map(name).join(' → ');
}

const layerOf = (f: string): string => {
  const parts = relative(src, f).split('/');
  return parts.length === 1 ? '.' : parts[0];
};

test('src/ has no import cycles (type-only imports count)', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `only ${graph.size} source files found under ${src}`);
  const found = cycles(graph).map((c) => path(graph, c));
  assert.deepEqual(found, [], `import cycles:\n${found.join('\n')}`);
});

test('folders import only the layers below them', () => {
  const bad: string[] = [];
  for (const [f, deps] of importGraph()) {
    if (f.endsWith('.test.ts')) continue;
    const from = LAYERS.indexOf(layerOf(f));
    for (const d of deps) {
      const to = LAYERS.indexOf(layerOf(d));
      if (from >= 0 && to > from) bad.push(`${relative(root, f)} imports ${relative(root, d)} (${layerOf(f)} sits below ${layerOf(d)})`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the cycle finder finds a cycle', () => {
  const g = new Map([['a', ['d', 'b']], ['b', ['c']], ['c', ['a']], ['d', ['b']], ['e', ['a']]]);
  assert.deepEqual(cycles(g).map((c) => [...c].sort()), [['a', 'b', 'c', 'd']]);
  assert.equal(path(g, ['a', 'b', 'c', 'd'], (f) => f), 'a → b → c → a');
});
