/**
 * `dyllm pull ORG/NAME[@REV]`: download a model into the Hugging Face cache (load/hub.ts), with a progress bar on
 * a terminal; prints the snapshot folder. An interrupted pull resumes when run again.
 */
import { pullModel } from '../load/hub.js';
import { parse, UsageError } from './args.js';

const PULL_HELP = `Usage: dyllm pull ORG/NAME[@REVISION]

Downloads the model's configs, tokenizer and safetensors weights into the Hugging Face cache
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), as huggingface_hub lays it out, so
"--model ORG/NAME" finds it afterwards (and so do Python tools). HF_ENDPOINT sets the hub, HF_TOKEN
authenticates (gated models). Partial files resume; LFS files are checked against their sha256.`;

export async function cmdPull(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(PULL_HELP + '\n');
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one model id ORG/NAME[@REVISION], found ${positionals.length}`);
  const tty = process.stderr.isTTY;
  let last = 0;
  const dir = await pullModel(positionals[0], {
    onProgress: (done, total, file) => {
      const now = performance.now();
      if (now - last < (tty ? 100 : 5000) && done < total) return;
      last = now;
      const gb = (x: number) => (x / 2 ** 30).toFixed(2);
      const w = 30;
      const f = total > 0 ? Math.round((done / total) * w) : w;
      const line = `pull ${positionals[0]} [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${gb(done)}/${gb(total)} GiB ${file}`;
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
  });
  if (tty) process.stderr.write('\n');
  process.stdout.write(dir + '\n');
}
