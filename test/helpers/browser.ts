/**
 * Headless Chromium for browser tests, from npm: the @sparticuz/chromium devDependency (a Chromium build packed
 * into the package, brotli-compressed) driven by playwright-core. No system browser is ever picked up: the binary
 * is the one named by CHROMIUM_PATH when the user sets it, else the package's own.
 *
 * The package extracts its binary (plus SwiftShader's Vulkan/GL libraries beside it) into os.tmpdir() and reuses
 * any `chromium` it finds there, whatever its version. So the extraction runs in a child process whose TMPDIR is a
 * private staging folder, which is then renamed into node_modules/.cache/dyllm-chromium/<version>/: one folder per
 * package version, complete or absent (rename is atomic; concurrent test files race harmlessly).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { repoRoot } from './paths.js';

export interface LaunchOptions {
  /**
   * Enable WebGPU on SwiftShader's software Vulkan (no GPU needed): navigator.gpu works on secure origins
   * (http://127.0.0.1, http://localhost). Default: the GPU is disabled.
   */
  webgpu?: boolean;
}

/** The @sparticuz/chromium package folder and version. */
export function npmChromiumPackage(): { dir: string; version: string } {
  const entry = createRequire(import.meta.url).resolve('@sparticuz/chromium'); // <dir>/build/index.js
  const dir = dirname(dirname(entry));
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
  return { dir, version };
}

let cachedPath: string | undefined;

/** The Chromium executable the browser tests run: $CHROMIUM_PATH, else @sparticuz/chromium's (extracted once). */
export function chromiumExecutable(): string {
  const named = process.env.CHROMIUM_PATH;
  if (named) {
    if (!existsSync(named)) throw new Error(`CHROMIUM_PATH=${named} does not exist: point it at a Chromium executable, or unset it to use the npm one (@sparticuz/chromium)`);
    return named;
  }
  if (cachedPath) return cachedPath;
  const { dir, version } = npmChromiumPackage();
  const cacheRoot = join(repoRoot, 'node_modules', '.cache', 'dyllm-chromium');
  const final = join(cacheRoot, version);
  const exe = join(final, 'chromium');
  if (!existsSync(exe)) {
    mkdirSync(cacheRoot, { recursive: true });
    const staging = mkdtempSync(join(cacheRoot, `.staging-${version}-`));
    try {
      const entry = pathToFileURL(join(dir, 'build', 'index.js')).href;
      const script = `const { default: c } = await import(${JSON.stringify(entry)}); process.stdout.write(await c.executablePath(${JSON.stringify(join(dir, 'bin'))}));`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: staging }, encoding: 'utf8' });
      if (r.status !== 0 || r.stdout !== join(staging, 'chromium')) {
        throw new Error(`@sparticuz/chromium ${version} did not extract into ${staging} (exit ${r.status}, printed '${r.stdout}'): ${r.stderr.trim().split('\n').at(-1) ?? ''}; reinstall it (npm ci) or set CHROMIUM_PATH`);
      }
      try {
        renameSync(staging, final);
      } catch (e) {
        // Another process finished first: its folder is complete; use it.
        if (!existsSync(exe)) throw e;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  cachedPath = exe;
  return exe;
}

/** Command-line flags for a headless run on a machine with no network and (possibly) no GPU. */
export function chromiumArgs(opts: LaunchOptions = {}): string[] {
  const args = [
    // The network is closed: background connections only fail, noisily.
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  ];
  // Chromium refuses to run as root with its sandbox on.
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  if (opts.webgpu) args.push('--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader');
  else args.push('--disable-gpu');
  return args;
}

/** Launches headless Chromium (see the module comment for which binary); the caller closes it. */
export async function launchChromium(opts: LaunchOptions = {}): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: chromiumExecutable(), headless: true, args: chromiumArgs(opts) });
}
