/** The released models' upstream config files in the repository (test/fixtures/upstream/README.md), from dist/bench/. */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export function upstreamModelDir(name: 'llada-8b-instruct' | 'dream-v0-instruct-7b'): string {
  return join(fileURLToPath(new URL('../../', import.meta.url)), 'test', 'fixtures', 'upstream', name);
}
