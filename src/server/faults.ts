/**
 * TEST HOOK, not a feature: deterministic faults for the server's fault-isolation tests (test/e2e/server-faults.test.ts).
 *
 * Only when the environment variable DYLLM_TEST_FAULTS=1 is set in the process that calls startServer, a prompt
 * containing the marker `[[dyllm-test-fault:NAME]]` carries NAME to the worker that handles it:
 *   throw-step      the request's sampling step throws at its third step (the others in its batch go on);
 *   throw-forward   every forward that includes the request's batch throws (a merged dense forward is then
 *                   retried member by member, so only this request fails);
 *   exit            the engine worker calls process.exit when the request arrives (it is restarted);
 *   uncaught        the engine worker throws an uncaught exception when the request arrives (it is restarted);
 *   tokenizer-exit  the tokenizer worker exits while encoding the request (it is restarted).
 * Without the variable markers are ordinary prompt text. No flag, option or request field exposes this.
 */
import type { PromptSpec, TestFault } from './protocol.js';

const FAULTS: readonly TestFault[] = ['throw-step', 'throw-forward', 'exit', 'uncaught', 'tokenizer-exit'];
const MARKER = /\[\[dyllm-test-fault:([a-z-]+)\]\]/;

export function testFaultsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DYLLM_TEST_FAULTS === '1';
}

/** The fault a prompt asks for (null without a marker). Only called when testFaultsEnabled(). */
export function testFaultOf(prompt: PromptSpec): TestFault | null {
  const texts = prompt.kind === 'chat' ? prompt.messages.map((m) => m.content) : prompt.kind === 'text' ? [prompt.text] : [prompt.template, ...(prompt.messages ?? []).map((m) => m.content)];
  for (const t of texts) {
    const m = MARKER.exec(t);
    if (m && (FAULTS as readonly string[]).includes(m[1])) return m[1] as TestFault;
  }
  return null;
}

/** The step at which `throw-step` throws (after the stream has started). */
export const THROW_STEP_AT = 2;
