/**
 * Issue 12, "aliasing by memory, not by object": two SharedArrayBuffer objects over the same
 * memory (structuredClone in the same thread, a round trip through a worker, a shared
 * WebAssembly.Memory's buffer before and after grow()) must not let an output overlap another
 * argument. On every backend: a partial overlap is a RangeError naming both arguments with every
 * byte of the memory unchanged (the probe's bit flip restored); the exact aliases the README
 * allows (out.y over exactly x, out.dx over exactly dy) give the in-place result; running
 * statistics over the same bytes are refused, never "updated"; two different memories with the
 * same offsets are not confused.
 */
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { BACKENDS, describeBackend } from './support.js';

const N = 4;
const C = 3;
const S = 5;
const E = N * C * S;
const SHAPE = [N, C, S];
const BYTES = 64 * 1024;

type Pair = { a: SharedArrayBuffer; b: SharedArrayBuffer };
type PairMaker = () => Pair | Promise<Pair>;

function fill(a: Float32Array, seed: number): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = Math.sin(seed * 7.3 + i * 1.7) + 1.5;
  return a;
}

/** A SAB posted to a worker and back: a new object over the same memory. */
async function roundTrip(sab: SharedArrayBuffer): Promise<SharedArrayBuffer> {
  const worker = new Worker(
    "const { parentPort } = require('node:worker_threads'); parentPort.once('message', (m) => { parentPort.postMessage(m); });",
    { eval: true },
  );
  try {
    return await new Promise<SharedArrayBuffer>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.postMessage(sab);
    });
  } finally {
    await worker.terminate();
  }
}

const PAIRS: Record<string, PairMaker> = {
  'structuredClone in the same thread': () => {
    const a = new SharedArrayBuffer(BYTES);
    return { a, b: structuredClone(a) };
  },
  'a round trip through a worker': async () => {
    const a = new SharedArrayBuffer(BYTES);
    return { a, b: await roundTrip(a) };
  },
  'a shared WebAssembly.Memory before and after grow()': () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
    const before = memory.buffer as unknown as SharedArrayBuffer;
    memory.grow(1);
    return { a: before, b: memory.buffer as unknown as SharedArrayBuffer };
  },
};

function memoryOf(sab: SharedArrayBuffer): Uint8Array {
  return new Uint8Array(sab, 0, BYTES).slice();
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

describe('the SharedArrayBuffer pairs are distinct objects over one memory', () => {
  for (const [what, make] of Object.entries(PAIRS)) {
    it(what, async () => {
      const { a, b } = await make();
      expect(a).not.toBe(b);
      new Uint8Array(a)[100] = 42;
      expect(new Uint8Array(b)[100]).toBe(42);
    });
  }
});

for (const backend of BACKENDS) {
  describeBackend(backend, 'aliasing by memory', () => {
    beforeAll(() => api.useBackend(backend));
    afterAll(() => api.useBackend('auto'));

    for (const [what, make] of Object.entries(PAIRS)) {
      describe(what, () => {
        it('out.y one element past x (a partial overlap) is a RangeError naming both; nothing written', async () => {
          const { a, b } = await make();
          const x = fill(new Float32Array(a, 0, E), 1);
          const y = new Float32Array(b, 4, E);
          const runningMean = new Float32Array(C);
          const runningVar = new Float32Array(C).fill(1);
          const before = memoryOf(a);
          expect(() => api.batchNormTrain({ x, shape: SHAPE, runningMean, runningVar }, {}, { y })).toThrow(
            /out\.y must not overlap x.*same memory/,
          );
          expect(same(memoryOf(a), before)).toBe(true);
          expect(runningMean.every((v) => v === 0)).toBe(true);
          await expect(api.batchNormTrainAsync({ x, shape: SHAPE }, {}, { y })).rejects.toThrow(RangeError);
          expect(() => api.batchNormInfer({ x, shape: SHAPE, runningMean, runningVar }, {}, { y })).toThrow(/out\.y must not overlap x/);
          expect(same(memoryOf(a), before)).toBe(true);
        });

        it('out.y over exactly x through the other object is the in-place call', async () => {
          const { a, b } = await make();
          const x = fill(new Float32Array(a, 256, E), 2);
          const want = x.slice();
          const wantRM = new Float32Array(C);
          const wantRV = new Float32Array(C).fill(1);
          const ref = api.batchNormTrain({ x: want, shape: SHAPE, runningMean: wantRM, runningVar: wantRV }, {}, { y: want });
          const y = new Float32Array(b, 256, E);
          const runningMean = new Float32Array(C);
          const runningVar = new Float32Array(C).fill(1);
          const r = api.batchNormTrain({ x, shape: SHAPE, runningMean, runningVar }, {}, { y });
          expect(r.y).toBe(y);
          expect(Array.from(x)).toEqual(Array.from(want));
          expect(Array.from(r.mean)).toEqual(Array.from(ref.mean));
          expect(Array.from(runningVar)).toEqual(Array.from(wantRV));
        });

        it('out.dx over x (dx may only be dy) is a RangeError; out.dx over exactly dy is allowed', async () => {
          const { a, b } = await make();
          const x = fill(new Float32Array(a, 0, E), 3);
          const dy = fill(new Float32Array(a, 1024, E), 4);
          const mean = fill(new Float32Array(C), 5);
          const invStd = fill(new Float32Array(C), 6);
          const before = memoryOf(a);
          expect(() => api.batchNormBackward({ dy, x, shape: SHAPE, mean, invStd }, {}, { dx: new Float32Array(b, 0, E) })).toThrow(
            /out\.dx must not overlap x/,
          );
          expect(same(memoryOf(a), before)).toBe(true);
          const want = api.batchNormBackward({ dy: dy.slice(), x, shape: SHAPE, mean, invStd });
          const r = api.batchNormBackward({ dy, x, shape: SHAPE, mean, invStd }, {}, { dx: new Float32Array(b, 1024, E) });
          expect(Array.from(dy)).toEqual(Array.from(want.dx));
          expect(Array.from(r.dgamma)).toEqual(Array.from(want.dgamma));
        });

        it('runningMean and runningVar over the same bytes are refused, never "updated"', async () => {
          const { a, b } = await make();
          const x = fill(new Float32Array(E), 7);
          const runningMean = fill(new Float32Array(a, 512, C), 8);
          const runningVar = new Float32Array(b, 512, C);
          const before = memoryOf(a);
          expect(() => api.batchNormTrain({ x, shape: SHAPE, runningMean, runningVar })).toThrow(
            /runningMean must not overlap runningVar/,
          );
          expect(() =>
            api.updateRunningStats({ runningMean, runningVar, mean: fill(new Float32Array(C), 9), variance: fill(new Float32Array(C), 10), count: 20 }),
          ).toThrow(/runningMean must not overlap runningVar/);
          expect(same(memoryOf(a), before)).toBe(true);
        });

        it('an output over a parameter (infer: out.y over runningMean) is refused', async () => {
          const { a, b } = await make();
          const x = fill(new Float32Array(E), 11);
          const runningMean = fill(new Float32Array(a, 2048, C), 12);
          const runningVar = fill(new Float32Array(C), 13);
          const y = new Float32Array(b, 2048 - 4 * (E - 1), E); // its last element is runningMean[0]
          expect(() => api.batchNormInfer({ x, shape: SHAPE, runningMean, runningVar }, {}, { y })).toThrow(
            /out\.y must not overlap runningMean/,
          );
        });
      });
    }

    it('two different SharedArrayBuffers at the same offsets are not confused (and the probe writes nothing)', () => {
      const a = new SharedArrayBuffer(BYTES);
      const b = new SharedArrayBuffer(BYTES);
      const x = fill(new Float32Array(a, 0, E), 14);
      const y = new Float32Array(b, 4, E).fill(0);
      const before = memoryOf(a);
      const r = api.batchNormTrain({ x, shape: SHAPE }, {}, { y });
      const want = api.batchNormTrain({ x: x.slice(), shape: SHAPE });
      expect(Array.from(r.y)).toEqual(Array.from(want.y));
      expect(same(memoryOf(a), before)).toBe(true);
    });
  });
}
