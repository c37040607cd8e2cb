/**
 * The zero-copy path through the public API: tensors allocated with `wasmMemory.alloc` go
 * through the façade's validation and reach the kernels by pointer, in place when y is x.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as api from '../../lib/index.js';
import { wasmMemory } from '../../lib/backends/wasm.js';
import { wasmNodeProvider } from '../../lib/backends/wasm-node.js';
import * as reference from '../../lib/reference.js';
import { random, randomArray, scaledError } from './helpers.js';

beforeAll(() => {
  api.registerBackend(wasmNodeProvider); // as lib/index.ts does
  api.useBackend('wasm');
});
afterAll(() => api.useBackend('auto'));

describe('wasmMemory through the façade', () => {
  it('trains, infers in place and backpropagates without a copy', () => {
    const shape = [4, 6, 5, 7];
    const n = 4 * 6 * 35;
    const g = { outer: 4, channels: 6, inner: 35 };
    const data = randomArray(Float32Array, n, random(9), 2, 3);
    const x = wasmMemory.alloc(Float32Array, n);
    const y = wasmMemory.alloc(Float32Array, n);
    const dy = wasmMemory.alloc(Float32Array, n);
    const stats = { mean: wasmMemory.alloc(Float32Array, 6), invStd: wasmMemory.alloc(Float32Array, 6) };
    const grads = { dgamma: wasmMemory.alloc(Float32Array, 6), dbeta: wasmMemory.alloc(Float32Array, 6) };
    x.array.set(data);
    dy.array.set(randomArray(Float32Array, n, random(10)));
    const bytes = wasmMemory.bytes;
    const set = vi.spyOn(Float32Array.prototype, 'set');

    const result = api.batchNormTrain({ x: x.array, shape }, {}, { y: y.array, mean: stats.mean.array, invStd: stats.invStd.array });
    expect(result.y).toBe(y.array);
    // Backward of the training step, dx in place of dy.
    api.batchNormBackward(
      { dy: dy.array, x: x.array, shape, mean: stats.mean.array, invStd: stats.invStd.array },
      {},
      { dx: dy.array, dgamma: grads.dgamma.array, dbeta: grads.dbeta.array },
    );
    expect(set).not.toHaveBeenCalled();
    set.mockRestore();
    expect(wasmMemory.bytes).toBe(bytes);

    const want = { y: new Float32Array(n), mean: new Float32Array(6), invStd: new Float32Array(6) };
    reference.train({ x: data, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: false, ...want, running: null });
    expect(scaledError(y.array, want.y)).toBeLessThan(1e-5);
    expect(scaledError(stats.invStd.array, want.invStd)).toBeLessThan(1e-5);
    for (const a of [x, y, dy, stats.mean, stats.invStd, grads.dgamma, grads.dbeta]) a.free();
  });

  it('says what to do before the backend is loaded', async () => {
    vi.resetModules();
    const fresh = await import('../../lib/backends/wasm.js');
    expect(fresh.wasmMemory === wasmMemory).toBe(false);
    expect(fresh.loadedWasmBackend()).toBeUndefined();
    expect(() => fresh.wasmMemory.alloc(Float32Array, 4)).toThrow(/not loaded yet: await ready\(\)/);
    expect(fresh.wasmMemory.isZeroCopy(new Float32Array(4))).toBe(false);
  });
});
