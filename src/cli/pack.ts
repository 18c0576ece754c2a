/**
 * `dyllm pack MODEL [--quant Q]`: writes the packed-weight cache file of a model (src/load/pack-cache.ts,
 * docs/loading.md) ahead of time, so that the first `--pack-cache` load maps it instead of packing and writing.
 * Prints the file's path on stdout; says on stderr whether it was written or already up to date.
 */
import { loadModel } from '../models/load-model.js';
import { packCacheDir } from '../load/pack-cache.js';
import { modelDir, parse, quantOption, UsageError } from './args.js';

const PACK_HELP = `Usage: dyllm pack MODEL [--quant none|int8|q4]

Writes the native backend's packed weights of MODEL (a folder, an HF id in the HF cache, or a bundled name)
to one cache file, which loads with --pack-cache (or DYLLM_PACK_CACHE=1) then map instead of packing:
no packing work and no fresh memory at load. The file is as large as the packed weights (an 8B model in
bf16: about 16 GB). One file per model folder and --quant; a file for changed model files is replaced.
  --quant Q          none | int8 | q4: the layout to write, as the loads that will use it (default none)
  --threads N        kernel threads for the packing
Directory: DYLLM_CACHE_DIR, else XDG_CACHE_HOME/dyllm/packed, else ~/.cache/dyllm/packed (now ${packCacheDir()}).`;

export async function cmdPack(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { quant: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(PACK_HELP + '\n');
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one MODEL (a folder, org/name or a bundled name), found ${positionals.length} arguments`);
  const quant = quantOption(values.quant);
  const dir = modelDir(positionals[0]);
  const t0 = performance.now();
  const { packCache } = loadModel(dir, { backend: 'native', quant, packCache: true });
  if (!packCache) throw new Error('the packed-weight cache was not used (see the line above)');
  const s = ((performance.now() - t0) / 1000).toFixed(2);
  const mib = (packCache.bytes / 2 ** 20).toFixed(0);
  if (packCache.written) process.stderr.write(`dyllm: pack: ${packCache.packed} weights packed and written in ${s} s (${mib} MiB)\n`);
  else if (packCache.packed === 0) process.stderr.write(`dyllm: pack: up to date (${packCache.mapped} weights, ${mib} MiB)\n`);
  else throw new Error(`pack: ${packCache.path} could not be written (see the warning above)`);
  process.stdout.write(packCache.path + '\n');
}
