/**
 * Which kernel backends the tests run, and what happens when the native addon is unavailable. A test that needs
 * the addon never passes without it: it is registered with `needsNative()`, which skips it with the reason (so the
 * run reports it as skipped) — or, with DYLLM_REQUIRE_NATIVE=1 (CI), lets it run so that it fails with the reason.
 * scripts/run-tests.mjs prints `nativeSummary()` once before the run and stops at once under
 * DYLLM_REQUIRE_NATIVE=1 when the addon is missing.
 */
import type { TestOptions } from 'node:test';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { loadNativeAddon, loadNativeBackend } from '../../src/kernels/native.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';

export interface NativeStatus {
  /** ISA tiers this CPU runs, best first ([] when unavailable). */
  tiers: string[];
  /** The name of the backend loadNativeBackend() gives (honours DYLLM_ISA), e.g. 'native-avx2'; null when unavailable. */
  name: string | null;
  /** Why the addon is unavailable (not built, failed to load, DYLLM_NATIVE=off, bad DYLLM_ISA); null when it loads. */
  reason: string | null;
}

let status: NativeStatus | undefined;

export function nativeStatus(): NativeStatus {
  if (status) return status;
  try {
    const tiers = loadNativeAddon().tiers();
    status = { tiers, name: loadNativeBackend().name, reason: null };
  } catch (e) {
    status = { tiers: [], name: null, reason: (e as Error).message };
  }
  return status;
}

/** DYLLM_REQUIRE_NATIVE=1: a missing native addon is an error, not a skip. */
export const nativeRequired = process.env.DYLLM_REQUIRE_NATIVE === '1';

/**
 * node:test options for a test that needs the native addon: none when it loads (or when it is required: the test
 * then runs and fails with the loader's reason); else a skip carrying the reason. `why` says why a test that is not
 * about the kernels needs them (e.g. it runs the bundled model at a size only the native kernels make quick).
 */
export function needsNative(why?: string): TestOptions {
  const { reason } = nativeStatus();
  if (reason === null || nativeRequired) return {};
  return { skip: `native addon unavailable: ${reason}${why ? `; ${why}` : ''} (set DYLLM_REQUIRE_NATIVE=1 to make this a failure)` };
}

/** Why the bundled-model end-to-end tests need the native kernels. */
export const NATIVE_SPEED = 'the bundled model runs too slowly on the TypeScript reference backend for this test';

/** One line for the top of a test run: which backends and tiers are under test, or why native is missing. */
export function nativeSummary(): string {
  const s = nativeStatus();
  if (s.reason !== null) {
    return `dyllm tests: kernel backends under test: reference only; native addon unavailable: ${s.reason}` +
      (nativeRequired ? '' : '; native-only tests are reported as skipped (DYLLM_REQUIRE_NATIVE=1 makes this an error)');
  }
  return `dyllm tests: kernel backends under test: reference, ${s.name} (native tiers on this CPU: ${s.tiers.join(', ')}; ` +
    `the kernel conformance suite runs every tier, the other native tests ${s.name})`;
}

export interface BackendCase {
  name: string;
  make: () => KernelBackend;
  /** Test options: needsNative() for the native backend. */
  options: TestOptions;
}

/** The reference backend and the native one (its default tier), for tests that run on every backend. */
export function backendCases(): BackendCase[] {
  return [
    { name: 'reference', make: () => new ReferenceBackend(), options: {} },
    { name: nativeStatus().name ?? 'native', make: () => loadNativeBackend(), options: needsNative() },
  ];
}
