/**
 * Issue 12, native side: the addon across environments - workers terminated mid-call (sync and
 * async) 200 times with flat memory, workers that process.exit() with calls queued, workers loading
 * the addon at once, the main thread exiting with calls queued. Child processes (./children.ts,
 * ./procs/workers.mjs); CI also runs this file against the ASan build of the addon (.ci/run).
 */
import { expect, it } from 'vitest';
import { expectClean, slow } from './children.js';
import { describeNative } from './helpers.js';

describeNative('native addon across environments (child processes)', () => {
  const cycles = process.env.SIMDNORM_LIFETIME_CYCLES ?? '200'; // CI's ASan step: 100
  it(`${cycles} worker create-call-terminate cycles: the process stays alive, RSS flat`, async () => {
    const out = await expectClean('workers.mjs', ['cycles', cycles], 300_000 * slow);
    expect(out).toMatch(/growth after warm-up/);
  }, 300_000 * slow);

  it('workers that call process.exit() with async calls queued', async () => {
    await expectClean('workers.mjs', ['worker-exit', '20']);
  }, 120_000 * slow);

  it('8 workers load the addon at the same moment and call it', async () => {
    await expectClean('workers.mjs', ['load-at-once', '8']);
  }, 120_000 * slow);

  it('the main thread exits with async calls queued (alone, and with workers mid-call)', async () => {
    await expectClean('workers.mjs', ['main-exit']);
    await expectClean('workers.mjs', ['main-exit-busy']);
  }, 120_000 * slow);
});

