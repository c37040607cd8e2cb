/**
 * Issue 12, native side: async calls are memory-safe whatever JavaScript does meanwhile, the
 * binding runs no JavaScript of the caller's, and outputs are checked against the other arrays by
 * address. Every case runs in a child process (./children.ts, scripts in ./procs/). CI also runs
 * this file and teardown.test.ts against the ASan build of the addon (.ci/run).
 */
import { it } from 'vitest';
import { expectClean, slow } from './children.js';
import { describeNative } from './helpers.js';

describeNative('native async calls: arrays transferred, detached or collected mid-call (child processes)', () => {
  it("the issue's repros: out.y, x, runningVar and y transferred mid-call + gc(), resizable buffers in disguise", async () => {
    await expectClean('repro.mjs', ['raw']);
  }, 120_000 * slow);

  for (const op of ['train', 'infer', 'backward']) {
    for (const size of ['inline', 'pool']) {
      it(`runAsync ${op}, ${size} path: every tensor transferred (structuredClone, postMessage) mid-call`, async () => {
        await expectClean('transfer.mjs', [op, size, size === 'inline' ? 'float64' : 'float32']);
      }, 120_000 * slow);
    }
  }

  it('resizable ArrayBuffers are refused by what V8 knows (an own resizable: false or a getter does not help); growable SABs are taken and may grow mid-call', async () => {
    await expectClean('resizable.mjs');
  }, 120_000 * slow);
});

describeNative('the binding runs no JavaScript of the caller (child process)', () => {
  it("no getter, setter or Proxy trap runs in any call (sync, async inline and pool) or while the addon loads", async () => {
    await expectClean('nojs.mjs');
  }, 120_000 * slow);
});

describeNative('native aliasing by address (child processes)', () => {
  it('SharedArrayBuffer twins (structuredClone, worker round trip, WebAssembly.Memory grow) and views of one buffer: overlaps refused, nothing written; exact in-place aliases taken', async () => {
    await expectClean('aliasing.mjs');
  }, 120_000 * slow);
});

describeNative('public API on the native backend (child process, dist/index.js)', () => {
  it("the issue's transfer repros and SAB aliasing through batchNormTrain/Infer(Async)", async () => {
    await expectClean('repro.mjs', ['facade']);
  }, 120_000 * slow);
});
