#!/usr/bin/env node
// The prebuilt addon on older x64 CPUs (`npm run check:prebuild-cpus`; needs qemu-user: apt-get install qemu-user).
//
// One x64 binary is shipped for every x64 CPU: only the AVX-512 and AVX2 tier libraries are compiled with -march
// flags (binding.gyp), and the module picks a tier by CPUID. This runs Node under qemu-x86_64 emulating a CPU
// without AVX (Nehalem) and one without AVX-512 (Haswell), loads the addon from prebuilds/ and generates with it
// (dense and DyLLM, on the llada-tiny test fixture): the addon must pick the best tier that CPU has, never execute
// an instruction it lacks (qemu would stop with SIGILL), and give the tokens that tier gives on this machine
// (DYLLM_ISA forces it here). The model is tiny: emulated Node is slow (minutes for the demo model).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const CPUS = [
  { cpu: 'Nehalem', tiers: ['portable'] },
  { cpu: 'Haswell', tiers: ['avx2', 'portable'] },
];

const probe = `
const api = await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'src', 'index.js')).href)});
const native = await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'src', 'kernels', 'native.js')).href)});
const m = await api.load(${JSON.stringify(join(root, 'test', 'fixtures', 'llada-tiny'))}, { backend: 'native' });
const gen = { genLength: 16, steps: 16 };
const dense = await m.generate('Tom has 12 apples.', gen);
const dyllm = await m.generate('Tom has 12 apples.', { ...gen, accel: 'dyllm', threshold: 0.9 });
process.stdout.write(JSON.stringify({ file: native.findNativeAddon(), tiers: native.nativeIsaTiers(), backend: m.backend, dense: dense.tokens, dyllm: dyllm.tokens }));
`;

function run(cmd, args, env) {
  const r = spawnSync(cmd, [...args, '--input-type=module', '-e', probe], { cwd: root, encoding: 'utf8', env: { ...process.env, DYLLM_THREADS: '2', ...env }, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

let failed = false;
for (const { cpu, tiers } of CPUS) {
  const t0 = Date.now();
  let emulated;
  let here;
  try {
    emulated = run('qemu-x86_64', ['-cpu', cpu, process.execPath], { DYLLM_ISA: '' });
    here = run(process.execPath, [], { DYLLM_ISA: tiers[0] });
  } catch (e) {
    console.log(`${cpu}: FAIL: ${e.message.split('\n').filter((l) => !l.startsWith('qemu-x86_64: warning')).join(' ').trim()}`);
    failed = true;
    continue;
  }
  const problems = [];
  if (!emulated.file?.startsWith(join(root, 'prebuilds'))) problems.push(`loaded ${emulated.file}, not the prebuilt addon`);
  if (JSON.stringify(emulated.tiers) !== JSON.stringify(tiers)) problems.push(`tiers ${emulated.tiers.join(', ')}, expected ${tiers.join(', ')}`);
  if (emulated.backend !== `native-${tiers[0]}`) problems.push(`backend ${emulated.backend}, expected native-${tiers[0]}`);
  for (const k of ['dense', 'dyllm']) if (JSON.stringify(emulated[k]) !== JSON.stringify(here[k])) problems.push(`${k} tokens differ from native-${tiers[0]} on this machine`);
  failed ||= problems.length > 0;
  console.log(`${cpu}: ${problems.length ? `FAIL: ${problems.join('; ')}` : `ok: ${emulated.backend} (tiers ${emulated.tiers.join(', ')}), dense and DyLLM tokens equal to native-${tiers[0]} here`} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}
process.exit(failed ? 1 : 0);
