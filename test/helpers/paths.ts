/** Paths used by tests, resolved from the compiled location (dist/test/helpers). */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** The project's shared spec and upstream data (a sibling of the repository). */
export const sharedDir = join(repoRoot, '..', 'shared');
export const fixturesDir = join(repoRoot, 'test', 'fixtures');
export const upstreamLlada = join(sharedDir, 'data', 'llada-8b-instruct');
export const upstreamDream = join(sharedDir, 'data', 'dream-v0-instruct-7b');
