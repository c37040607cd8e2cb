/**
 * Issue 12: BatchNorm.loadState is all-or-nothing with typed errors (every entry read once and
 * checked, elements included, before anything is written), and the minor findings: allocations
 * name their argument, one setThreads range checked in the façade, the numBatchesTracked ceiling,
 * count read once, lying own properties ignored, async calls refusing resizable buffers, the
 * wasm block limit stated truly, wasm refusing module-memory views outside alloc blocks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { wasmMemory } from '../../lib/backends/wasm.js';
import { ResizableBuffer } from './attacks.js';
import { BACKENDS, describeBackend } from './support.js';

const C = 3;

function layer(): api.BatchNorm {
  const bn = new api.BatchNorm(C, { momentum: null });
  bn.loadState({ weight: [1, 2, 3], bias: [4, 5, 6], running_mean: [7, 8, 9], running_var: [1, 2, 3], num_batches_tracked: 4 });
  return bn;
}

function stateOf(bn: api.BatchNorm): string {
  return JSON.stringify([bn.gamma, bn.beta, bn.runningMean, bn.runningVar].map((a) => Array.from(a!))) + bn.numBatchesTracked;
}

describe('BatchNorm.loadState: all or nothing, typed errors', () => {
  const good = () => ({ weight: [10, 20, 30], bias: [40, 50, 60], running_mean: [70, 80, 90], running_var: [11, 12, 13], num_batches_tracked: 5 });
  const bad: [string, Record<string, unknown>, typeof TypeError | typeof RangeError, RegExp][] = [
    ['a bad running_var after a good weight', { running_var: [1, 2] }, RangeError, /state\.running_var must have length 3/],
    ["strings: weight ['a','b','c']", { weight: ['a', 'b', 'c'] }, TypeError, /state\.weight\[0\] must be a number, received string 'a'/],
    ['a string among numbers, last entry', { running_var: [1, 2, '3'] }, TypeError, /state\.running_var\[2\] must be a number/],
    ['a bigint element', { bias: [1n, 2n, 3n] }, TypeError, /state\.bias\[0\] must be a number, received bigint/],
    ['a hole', { running_mean: [1, , 3] }, TypeError, /state\.running_mean\[1\] must be a number, received undefined/], // eslint-disable-line no-sparse-arrays
    ['null elements', { weight: [null, null, null] }, TypeError, /state\.weight\[0\]/],
    ['a BigInt64Array', { weight: new BigInt64Array(3) }, TypeError, /state\.weight must hold numbers/],
    ['a string', { bias: 'abc' }, TypeError, /state\.bias must be an array of 3 numbers/],
    ['an array-like with a string length', { bias: { length: '3', 0: 1, 1: 2, 2: 3 } }, TypeError, /state\.bias must be an array/],
    ['a detached Float32Array', { weight: (() => { const a = new Float32Array(3); structuredClone(a.buffer, { transfer: [a.buffer] }); return a; })() }, RangeError, /state\.weight must have length 3, received length 0/],
    ['num_batches_tracked -1', { num_batches_tracked: -1 }, RangeError, /state\.num_batches_tracked/],
    ['num_batches_tracked 2^53 as a bigint', { num_batches_tracked: 2n ** 53n }, RangeError, /state\.num_batches_tracked/],
    ['num_batches_tracked 2^53 + 1 as a bigint', { num_batches_tracked: 2n ** 53n + 1n }, RangeError, /state\.num_batches_tracked/],
    ['num_batches_tracked as a string', { num_batches_tracked: '5' }, TypeError, /state\.num_batches_tracked/],
  ];
  for (const [what, spoil, error, message] of bad) {
    it(what, () => {
      const bn = layer();
      const before = stateOf(bn);
      expect(() => bn.loadState({ ...good(), ...spoil } as never)).toThrow(error);
      expect(() => bn.loadState({ ...good(), ...spoil } as never)).toThrow(message);
      expect(stateOf(bn)).toBe(before);
    });
  }

  it('accepts plain arrays, array-likes, typed arrays of any numeric kind, a bigint count', () => {
    const bn = layer();
    bn.loadState({ weight: Float64Array.of(1.5, 2.5, 3.5), bias: { length: 3, 0: 1, 1: 2, 2: 3 } as never, running_mean: Int16Array.of(-1, 0, 1), running_var: [0.5, 0.25, 0.125], num_batches_tracked: 12n });
    expect(Array.from(bn.gamma!)).toEqual([1.5, 2.5, 3.5]);
    expect(Array.from(bn.beta!)).toEqual([1, 2, 3]);
    expect(Array.from(bn.runningMean!)).toEqual([-1, 0, 1]);
    expect(Array.from(bn.runningVar!)).toEqual([0.5, 0.25, 0.125]);
    expect(bn.numBatchesTracked).toBe(12);
  });

  it('reads each entry and each element once (a Proxy that changes its answers loads the first ones)', () => {
    const bn = layer();
    const reads = new Map<string, number>();
    const count = (key: string) => reads.set(key, (reads.get(key) ?? 0) + 1);
    const elements = new Proxy([1, 2, 3], {
      get(t, k, r) {
        if (typeof k === 'string') count(`weight.${k}`);
        return (reads.get(`weight.${String(k)}`) ?? 0) > 1 ? 'changed' : Reflect.get(t, k, r);
      },
    });
    const state = new Proxy({ weight: elements, bias: [4, 5, 6], running_mean: [7, 8, 9], running_var: [1, 1, 1], num_batches_tracked: 6 }, {
      get(t, k, r) {
        if (typeof k === 'string') count(k);
        return (reads.get(String(k)) ?? 0) > 1 ? undefined : Reflect.get(t, k, r);
      },
    });
    bn.loadState(state);
    expect(Array.from(bn.gamma!)).toEqual([1, 2, 3]);
    expect(bn.numBatchesTracked).toBe(6);
    for (const [key, n] of reads) expect(n, key).toBe(1);
  });

  it('a getter that detaches one of the layer’s own arrays while the state is read: TypeError, nothing loaded', () => {
    const bn = layer();
    const before = stateOf(bn);
    const runningVar = bn.runningVar!;
    const copy = runningVar.slice();
    const state = {
      weight: [10, 20, 30],
      get bias() {
        structuredClone(runningVar.buffer, { transfer: [runningVar.buffer] });
        return [40, 50, 60];
      },
      running_mean: [70, 80, 90],
      running_var: [11, 12, 13],
    };
    expect(() => bn.loadState(state)).toThrow(TypeError);
    expect(copy.length).toBe(3);
    expect(JSON.stringify([bn.gamma, bn.beta, bn.runningMean].map((a) => Array.from(a!)))).toBe(JSON.stringify(JSON.parse(before.slice(0, before.lastIndexOf(']') + 1)).slice(0, 3)));
  });
});

describe('minor findings', () => {
  it('shape [0, 2**40] names the shape and the output instead of "Invalid typed array length"', () => {
    const shape = [0, 2 ** 40];
    const x = new Float32Array(0);
    for (const call of [
      () => api.batchNormTrain({ x, shape }),
      () => api.moments({ x, shape }),
      () => api.batchNormBackward({ dy: x, x, shape, mean: new Float32Array(0), invStd: new Float32Array(0) }),
    ]) {
      expect(call).toThrow(RangeError);
      expect(call).toThrow(/shape \[0, 1099511627776\].*cannot allocate out\.(mean|dgamma|variance)|mean must have length 1099511627776/);
    }
    expect(() => api.batchNormTrain({ x, shape })).toThrow(/shape \[0, 1099511627776\] \(its channel dim\): cannot allocate out\.mean/);
  });

  it('new BatchNorm(2**40) names numFeatures', () => {
    expect(() => new api.BatchNorm(2 ** 40)).toThrow(RangeError);
    expect(() => new api.BatchNorm(2 ** 40)).toThrow(/numFeatures: cannot allocate/);
  });

  it('setThreads: one range, 0 or 1 to 256, checked in the façade with errors naming n', () => {
    for (const n of [300, 257, -1, 1.5, NaN, Infinity]) {
      expect(() => api.setThreads(n)).toThrow(RangeError);
      expect(() => api.setThreads(n)).toThrow(/^n \(threads\) must be an integer from 1 to 256, or 0 for the default/);
    }
    expect(() => api.setThreads('2' as never)).toThrow(TypeError);
    expect(() => api.setThreads('2' as never)).toThrow(/^n \(threads\)/);
    api.setThreads(256);
    api.setThreads(0);
  });

  it('wasm: one block is at most 2 GiB - 64 KiB, and the error says so (not 4 GiB)', () => {
    api.useBackend('wasm');
    try {
      const bytes = wasmMemory.bytes;
      expect(() => wasmMemory.alloc(Float32Array, 2 ** 29)).toThrow(RangeError);
      expect(() => wasmMemory.alloc(Float32Array, 2 ** 29)).toThrow(/at most 2 GiB - 64 KiB \(2147418112 bytes\)/);
      expect(wasmMemory.bytes).toBe(bytes); // refused before growing anything
    } finally {
      api.useBackend('auto');
    }
  });
});

for (const backend of BACKENDS) {
  describeBackend(backend, 'minor findings per backend', () => {
    beforeAll(() => api.useBackend(backend));
    afterAll(() => api.useBackend('auto'));
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const shape = [2, 3, 4];

    for (const momentum of [null, 0.9]) {
      it(`numBatchesTracked saturates at 2^53 - 1 (momentum ${String(momentum)}), and the next call accepts it`, () => {
        const runningMean = new Float32Array(3);
        const runningVar = new Float32Array(3).fill(1);
        const r = api.batchNormTrain({ x, shape, runningMean, runningVar, numBatchesTracked: Number.MAX_SAFE_INTEGER }, { momentum });
        expect(r.updated).toBe(true);
        expect(r.numBatchesTracked).toBe(Number.MAX_SAFE_INTEGER);
        const again = api.batchNormTrain({ x, shape, runningMean, runningVar, numBatchesTracked: r.numBatchesTracked }, { momentum });
        expect(again.numBatchesTracked).toBe(Number.MAX_SAFE_INTEGER);
        const u = api.updateRunningStats(
          { runningMean, runningVar, mean: new Float32Array(3), variance: new Float32Array(3).fill(1), count: 8, numBatchesTracked: Number.MAX_SAFE_INTEGER },
          { momentum },
        );
        expect(u).toEqual({ numBatchesTracked: Number.MAX_SAFE_INTEGER, updated: true });
        const bn = new api.BatchNorm(3, { momentum });
        bn.loadState({ num_batches_tracked: Number.MAX_SAFE_INTEGER, weight: [1, 1, 1], bias: [0, 0, 0], running_mean: [0, 0, 0], running_var: [1, 1, 1] });
        bn.forward(x, shape);
        bn.forward(x, shape);
        expect(bn.numBatchesTracked).toBe(Number.MAX_SAFE_INTEGER);
      });
    }

    it('updateRunningStats reads count once', () => {
      let reads = 0;
      const inputs = {
        runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1), mean: new Float32Array(3), variance: new Float32Array(3).fill(2),
        get count() {
          return ++reads === 1 ? 10 : 1; // a second read would answer 1 (refused with unbiasedRunningVar)
        },
      };
      const r = api.updateRunningStats(inputs, { momentum: 0.5 });
      expect(r.updated).toBe(true);
      expect(reads).toBe(1);
      expect(inputs.runningVar[0]).toBeCloseTo(0.5 + 0.5 * 2 * (10 / 9), 6);
    });

    it('own length / BYTES_PER_ELEMENT / buffer properties are ignored, never read', () => {
      const want = api.batchNormTrain({ x: x.slice(), shape });
      let reads = 0;
      const liar = x.slice();
      for (const key of ['length', 'BYTES_PER_ELEMENT', 'buffer', 'byteOffset', 'byteLength']) {
        Object.defineProperty(liar, key, { get: () => (reads++, key === 'BYTES_PER_ELEMENT' ? 8 : 1) });
      }
      const r = api.batchNormTrain({ x: liar, shape });
      expect(reads).toBe(0);
      expect(Array.from(r.y)).toEqual(Array.from(want.y));
    });

    it('async calls refuse arrays over a resizable ArrayBuffer (TypeError naming it); sync calls take them', async () => {
      const resizable = new Float32Array(new ResizableBuffer(24 * 4, { maxByteLength: 48 * 4 }), 0, 24);
      resizable.set(x);
      const runningMean = new Float32Array(3);
      const runningVar = new Float32Array(3).fill(1);
      const yOut = new Float32Array(new ResizableBuffer(24 * 4, { maxByteLength: 24 * 4 }));
      await expect(api.batchNormTrainAsync({ x: resizable, shape })).rejects.toThrow(/^x must not be a view of a resizable ArrayBuffer in an async call/);
      await expect(api.batchNormInferAsync({ x, shape, runningMean, runningVar }, {}, { y: yOut })).rejects.toThrow(/^out\.y must not be a view of a resizable/);
      await expect(
        api.batchNormBackwardAsync({ dy: resizable, x, shape, mean: runningMean, invStd: runningVar }),
      ).rejects.toThrow(/^dy must not be a view of a resizable/);
      expect(Array.from(yOut).every((v) => v === 0)).toBe(true);
      const want = api.batchNormTrain({ x, shape });
      expect(Array.from(api.batchNormTrain({ x: resizable, shape }).y)).toEqual(Array.from(want.y));
      // an own `resizable: false` on the buffer does not fool the intrinsic getter
      Object.defineProperty(resizable.buffer, 'resizable', { value: false });
      await expect(api.batchNormTrainAsync({ x: resizable, shape })).rejects.toThrow(TypeError);
    });
  });
}

describe('wasm: views of module memory outside alloc blocks', () => {
  it('are refused with a RangeError naming the argument, nothing written', () => {
    api.useBackend('wasm');
    try {
      const block = wasmMemory.alloc(Float32Array, 64);
      const x = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i));
      const freed = wasmMemory.alloc(Float32Array, 24);
      const stale = freed.array;
      freed.free();
      const y = new Float32Array(24).fill(7);
      expect(() => api.batchNormTrain({ x: stale, shape: [2, 3, 4] }, {}, { y })).toThrow(/wasm: x is a view of the wasm module memory outside every live wasmMemory.alloc block/);
      expect(y.every((v) => v === 7)).toBe(true);
      const r = api.batchNormTrain({ x, shape: [2, 3, 4] }, {}, { y: block.array.subarray(0, 24) });
      expect(r.y[0]).not.toBe(0);
      block.free();
    } finally {
      api.useBackend('auto');
    }
  });
});
