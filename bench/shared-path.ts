/** Where ../shared (the project's spec and upstream data) lives relative to the compiled benchmarks. */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export function sharedDirGuess(): string {
  return process.env.DYLLM_SHARED ?? join(fileURLToPath(new URL('../../', import.meta.url)), '..', 'shared');
}
