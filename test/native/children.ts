/**
 * Runs the child-process scripts of ./procs/ for lifetime.test.ts and teardown.test.ts: each in
 * its own `node --expose-gc`, so a crash, an abort or an AddressSanitizer report is a failed test
 * with the child's output, not a dead test runner. The children inherit the environment (CI's ASan
 * step sets LD_PRELOAD) and load the addon the tests loaded.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { loaded } from './helpers.js';

const procs = fileURLToPath(new URL('./procs/', import.meta.url));
export const underAsan = /libasan/.test(process.env.LD_PRELOAD ?? '');
// The pool-path cases hold libuv's threads in a FIFO's open() (procs/common.mjs): two of them.
const THREADPOOL = '2';

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(script: string, args: string[], timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', `${procs}${script}`, ...args], {
      env: { ...process.env, SIMDNORM_TEST_ADDON: loaded!.path, UV_THREADPOOL_SIZE: THREADPOOL },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a child; it must exit 0 with no sanitizer report. Prints its stdout (the numbers). */
export async function expectClean(script: string, args: string[] = [], timeoutMs = 120_000): Promise<string> {
  const r = await runChild(script, args, timeoutMs);
  const what = `${script} ${args.join(' ')}`;
  const report = `${what}: exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-6000)}`;
  expect(r.stderr, report).not.toMatch(/AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Fatal error/);
  expect(r.signal, report).toBeNull();
  expect(r.code, report).toBe(0);
  if (r.stdout.trim()) console.log(r.stdout.trim());
  return r.stdout;
}

export const slow = underAsan ? 4 : 1;

