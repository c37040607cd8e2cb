/**
 * The threaded wasm variant (wasm/bin/simdnorm-threads.wasm, lib/backends/wasm/threads.ts):
 *  - bitwise the same results for 1, 2, 3 and 4 threads as the single-threaded SIMD128 variant,
 *    every phase, both dtypes, both layouts, on shapes big enough to be split into many tasks
 *    (and the workers really take part: the pool counts the times a worker joined a job);
 *  - Node picks it by default and backends() / setThreads report it;
 *  - a script that makes one call and ends exits by itself (idle workers never keep Node alive).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { Geometry } from '../../lib/backend.js';
import { loadWasmBackendSync } from '../../lib/backends/wasm-node.js';
import { MIN_PARALLEL_ELEMENTS, ThreadedWasmBackend } from '../../lib/backends/wasm.js';
import { ensureDist } from '../reliability/dist.js';
import { runAll, type Ctor, type TrainCase } from './helpers.js';

const SHAPES: [string, Geometry][] = [
  ['NCHW [4, 32, 64, 64]', { outer: 4, channels: 32, inner: 64 * 64 }],
  ['NCHW [2, 3, 301, 299] (few channels, odd planes)', { outer: 2, channels: 3, inner: 301 * 299 }],
  ['NHWC [8, 32, 32, 48] (channels-last)', { outer: 8 * 32 * 32, channels: 48, inner: 1 }],
  ['NC [100003, 7] (odd sizes)', { outer: 100003, channels: 7, inner: 1 }],
];

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  const f = new Float64Array(1), u = new BigUint64Array(f.buffer);
  for (let i = 0; i < a.length; i++) {
    f[0] = a[i];
    const x = u[0];
    f[0] = b[i];
    if (x !== u[0]) return false;
  }
  return true;
}

/** Resolves once `backend`'s workers have all joined a job (they start asynchronously). */
async function warmUp(backend: ThreadedWasmBackend, workers: number): Promise<void> {
  const c: TrainCase = { type: Float32Array, g: { outer: 64, channels: 8, inner: 4096 }, relu: false, affine: true, running: false };
  for (let i = 0; i < 200; i++) {
    const before = backend.helperJoins();
    runAll(backend, c, 1);
    if (backend.helperJoins() - before >= workers) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the ${workers} workers never joined a job`);
}

describe('threaded wasm: bitwise the same for any thread count', () => {
  const single = loadWasmBackendSync('simd128');
  const threaded = loadWasmBackendSync('simd128-threads', 3) as ThreadedWasmBackend;
  // The threaded module's own kernels at every thread count: no single-threaded module for
  // copying calls on one thread (tested below).
  threaded.soloLoader = undefined;

  it('is the threaded variant, with 3 workers', async () => {
    expect(threaded).toBeInstanceOf(ThreadedWasmBackend);
    expect(threaded.details()).toMatchObject({ simd: 'simd128', variant: 'simdnorm-threads.wasm', threads: 4, workers: 3 });
    await warmUp(threaded, 3);
  });

  for (const type of [Float32Array, Float64Array] as Ctor[]) {
    for (const [name, g] of SHAPES) {
      for (const relu of [false, true]) {
        it(`${type.name} ${name}${relu ? ' relu' : ''}: 1, 2, 3, 4 threads = single-threaded variant`, () => {
          const c: TrainCase = { type, g, relu, affine: !relu, running: !relu };
          const expected = runAll(single, c, 7);
          for (const n of [1, 2, 3, 4]) {
            threaded.setThreads(n);
            expect(threaded.details().threads).toBe(n);
            const joins = threaded.helperJoins();
            const got = runAll(threaded, c, 7);
            if (n === 1) expect(threaded.helperJoins()).toBe(joins);
            for (const key of Object.keys(expected)) {
              expect(sameBits(got[key], expected[key]), `${key} with ${n} threads`).toBe(true);
            }
          }
          threaded.setThreads(0);
        }, 120_000);
      }
    }
  }
});

describe('threaded wasm: the main thread has thread-local storage of its own', () => {
  it('a call leaves the module memory\'s first 256 bytes zero (a __tls_base of 0 put thread_locals there)', () => {
    const threaded = loadWasmBackendSync('simd128-threads', 1) as ThreadedWasmBackend;
    threaded.soloLoader = undefined;
    const c: TrainCase = { type: Float32Array, g: { outer: 8, channels: 16, inner: 33 * 35 }, relu: true, affine: true, running: true };
    for (const n of [1, 2]) {
      threaded.setThreads(n);
      runAll(threaded, c, 5);
    }
    expect(Array.from(new Uint32Array(threaded.abi.buffer, 0, 64)).every((w) => w === 0)).toBe(true);
  });
});

describe('threaded wasm: copying calls on one thread run on the single-threaded module', () => {
  it('MIN_PARALLEL_ELEMENTS is parallel.h\'s kMinParallelElements', () => {
    const header = readFileSync(fileURLToPath(new URL('../../native/kernels/parallel.h', import.meta.url)), 'utf8');
    const m = /kMinParallelElements = int64_t\{1\} << (\d+);/.exec(header);
    expect(m).not.toBeNull();
    expect(MIN_PARALLEL_ELEMENTS).toBe(2 ** Number(m![1]));
  });

  it('plain arrays on one thread (or too few to split) go to simdnorm-simd.wasm, bitwise the same; module memory and several threads stay', () => {
    const threaded = loadWasmBackendSync('simd128-threads', 1) as ThreadedWasmBackend;
    expect(threaded.soloLoader).toBeTypeOf('function');
    const own = loadWasmBackendSync('simd128-threads', 1) as ThreadedWasmBackend;
    own.soloLoader = undefined;
    const big: TrainCase = { type: Float32Array, g: { outer: 4, channels: 8, inner: 4096 }, relu: true, affine: true, running: true };
    const small: TrainCase = { ...big, g: { outer: 2, channels: 3, inner: 20 } };
    for (const c of [big, small]) {
      own.setThreads(1);
      const expected = runAll(own, c, 3);
      // Several threads, a tensor large enough to split: the threaded module's own calls.
      threaded.setThreads(2);
      const scratch = threaded.marshal.scratchBytes;
      const split = runAll(threaded, c, 3);
      const bigEnough = c === big;
      expect(threaded.marshal.scratchBytes > scratch || !bigEnough).toBe(true);
      threaded.setThreads(1);
      const before = threaded.marshal.scratchBytes;
      const got = runAll(threaded, c, 3);
      expect(threaded.marshal.scratchBytes).toBe(before); // nothing copied into the threaded module
      expect(threaded.details().oneThreadCopies).toBe('simdnorm-simd.wasm');
      for (const key of Object.keys(expected)) {
        expect(sameBits(got[key], expected[key]), key).toBe(true);
        expect(sameBits(split[key], expected[key]), key).toBe(true);
      }
    }
  });

  it('a call with an array in the threaded module\'s memory runs there', () => {
    api.useBackend('wasm');
    try {
      const backend = api.withBackend('wasm', () => api.backends().find((b) => b.name === 'wasm'));
      if (backend?.details?.variant !== 'simdnorm-threads.wasm') return; // SIMDNORM_WASM_VARIANT forced another
      api.setThreads(1);
      const x = api.wasmMemory.alloc(Float32Array, 120);
      const y = new Float32Array(120);
      for (let i = 0; i < 120; i++) x.array[i] = Math.sin(i);
      const stats = { runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1) };
      api.batchNormInfer({ x: x.array, shape: [2, 3, 4, 5], ...stats }, {}, { y });
      const plain = new Float32Array(120);
      api.batchNormInfer({ x: x.array.slice(), shape: [2, 3, 4, 5], ...stats }, {}, { y: plain });
      expect(sameBits(y, plain)).toBe(true);
      const stale = x.array;
      x.free();
      // A view of a freed block is refused as before (not copied by the single-threaded module).
      expect(() => api.batchNormInfer({ x: stale, shape: [2, 3, 4, 5], ...stats }, {}, { y })).toThrow(RangeError);
    } finally {
      api.setThreads(0);
      api.useBackend('auto');
    }
  });
});

describe('threaded wasm: chosen in Node, reported', () => {
  it('is the default wasm backend in Node; setThreads and backends() report its threads', () => {
    api.useBackend('wasm');
    try {
      const details = () => api.backends().find((b) => b.name === 'wasm')!.details!;
      if (process.env.SIMDNORM_WASM_VARIANT && process.env.SIMDNORM_WASM_VARIANT !== 'simd128-threads') {
        expect(details()).toMatchObject({ threads: 1, threadsOff: expect.stringMatching(/^threads off: /) });
        return;
      }
      expect(details()).toMatchObject({ variant: 'simdnorm-threads.wasm', simd: 'simd128' });
      api.setThreads(3);
      expect(details()).toMatchObject({ threads: 3 });
      api.setThreads(1);
      expect(details()).toMatchObject({ threads: 1 });
    } finally {
      api.setThreads(0);
      api.useBackend('auto');
    }
  });
});

describe('threaded wasm: the process exits once the work is done', () => {
  const script = fileURLToPath(new URL('./procs/one-call.mjs', import.meta.url));
  ensureDist();
  it('a script that starts the pool, makes one call (and more threads) and ends exits by itself', () => {
    const r = spawnSync(process.execPath, [script], {
      encoding: 'utf8',
      timeout: 60_000, // a safety net only: a pool keeping the process alive never ends by itself
      env: { ...process.env, SIMDNORM_WASM_VARIANT: 'simd128-threads' },
    });
    expect(r.error, 'the process did not exit by itself').toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ variant: 'simdnorm-threads.wasm', workers: 3, joined: true });
  }, 90_000);
});
