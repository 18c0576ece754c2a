/** Paths used by tests, resolved from the compiled location (dist/test/helpers). */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const fixturesDir = join(repoRoot, 'test', 'fixtures');
/** The released models' upstream config and tokenizer files, byte-identical (test/fixtures/upstream/README.md). */
export const upstreamDir = join(fixturesDir, 'upstream');
export const upstreamLlada = join(upstreamDir, 'llada-8b-instruct');
export const upstreamDream = join(upstreamDir, 'dream-v0-instruct-7b');
