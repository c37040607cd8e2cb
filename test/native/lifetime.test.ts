/**
 * Issue 12, native side: async calls are memory-safe whatever JavaScript does meanwhile, the addon
 * survives environments that end with calls pending, and outputs are checked against the other
 * arrays by address. Every case runs in a child process (`node --expose-gc`, scripts in
 * ./procs/), so a crash, an abort or an AddressSanitizer report is a failed test with the child's
 * output, not a dead test runner. CI also runs this file against the ASan build of the addon
 * (.ci/run: SIMDNORM_NATIVE_PATH=build-asan/..., LD_PRELOAD of libasan, inherited by the children).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { describeNative, loaded } from './helpers.js';

const procs = fileURLToPath(new URL('./procs/', import.meta.url));
const underAsan = /libasan/.test(process.env.LD_PRELOAD ?? '');
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
async function expectClean(script: string, args: string[] = [], timeoutMs = 120_000): Promise<string> {
  const r = await runChild(script, args, timeoutMs);
  const what = `${script} ${args.join(' ')}`;
  const report = `${what}: exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-6000)}`;
  expect(r.stderr, report).not.toMatch(/AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Fatal error/);
  expect(r.signal, report).toBeNull();
  expect(r.code, report).toBe(0);
  if (r.stdout.trim()) console.log(r.stdout.trim());
  return r.stdout;
}

const slow = underAsan ? 4 : 1;

describeNative('native async calls: arrays transferred, detached or collected mid-call (child processes)', () => {
  it("the issue's repros: out.y, x, runningVar and y transferred mid-call + gc(), resizable buffers in disguise", async () => {
    await expectClean('repro.mjs', ['raw']);
  }, 120_000 * slow);

  for (const op of ['train', 'infer', 'backward']) {
    for (const size of ['inline', 'pool']) {
      it(`${op}Async, ${size} path: every array argument transferred (structuredClone, postMessage) mid-call`, async () => {
        await expectClean('transfer.mjs', [op, size, size === 'inline' ? 'float64' : 'float32']);
      }, 120_000 * slow);
    }
  }

  it('resizable ArrayBuffers are refused by what V8 knows (an own resizable: false or a getter does not help); growable SABs are taken and may grow mid-call', async () => {
    await expectClean('resizable.mjs');
  }, 120_000 * slow);
});

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
