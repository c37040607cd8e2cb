/**
 * Layers made on the wasm backend keep their arrays in module memory (lib/layers/home.ts, README
 * "Layers on WASM"): zero-copy from one layer to the next, the same numbers as layers of ordinary
 * arrays, and the lifetime rules — a view handed out stays valid while it is reachable (after the
 * layer is dropped or disposed too), a layer fed its own output does not overwrite what backward
 * reads, a backend switch keeps working, bad input is a typed error.
 *
 * This file runs on the default wasm variant (the threaded one in Node, over shared memory);
 * wasm-home-growth.test.ts runs the growth cases on the single-threaded variant, whose memory
 * detaches every view when it grows.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { Random } from '../../lib/random.js';
import { chain, maxRelative, type Chain } from './wasm-home-support.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

await api.ready();
const wasmReason = api.backends().find((b) => b.name === 'wasm')?.reason;
const nativeAvailable = api.backends().find((b) => b.name === 'native')?.available === true;

async function collect(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

describe.skipIf(wasmReason !== undefined)('layers on wasm: arrays in module memory', () => {
  beforeAll(() => api.useBackend('wasm'));
  afterAll(() => api.useBackend('auto'));

  it('a layer made on wasm keeps parameters, statistics and outputs in module memory; made elsewhere, ordinary arrays', () => {
    const bn = new api.BatchNorm(4);
    expect(bn.inWasmMemory).toBe(true);
    for (const a of [bn.gamma, bn.beta, bn.runningMean, bn.runningVar, bn.dgamma, bn.dbeta]) expect(api.wasmMemory.isZeroCopy(a!)).toBe(true);
    expect(Array.from(bn.gamma!)).toEqual([1, 1, 1, 1]);
    expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1, 1]);
    const x = Float32Array.from({ length: 2 * 4 * 3 }, (_, i) => Math.sin(i));
    const y = bn.forward(x, [2, 4, 3]);
    const dx = bn.backward(y);
    expect(api.wasmMemory.isZeroCopy(y)).toBe(true);
    expect(api.wasmMemory.isZeroCopy(dx)).toBe(true);
    const plain = api.withBackend('js', () => new api.BatchNorm(4));
    expect(plain.inWasmMemory).toBe(false);
    expect(api.wasmMemory.isZeroCopy(plain.gamma!)).toBe(false);
    for (const layer of [new api.LayerNorm(4), new api.RMSNorm(4), new api.GroupNorm(2, 4), new api.InstanceNorm(4, { affine: true })]) {
      expect(layer.inWasmMemory).toBe(true);
    }
  });

  it('a training step of BatchNorm → GroupNorm → InstanceNorm → LayerNorm → RMSNorm: zero-copy between layers, the numbers of ordinary-array layers', () => {
    const shape = [4, 6, 5, 5];
    const wasm = chain(6, 5);
    const plain = api.withBackend('js', () => chain(6, 5)); // ordinary arrays, run on wasm below
    expect(plain.layers.every((l) => !l.inWasmMemory)).toBe(true);
    const rng = new Random(3);
    for (let step = 0; step < 3; step++) {
      const x = Float32Array.from({ length: 4 * 6 * 25 }, () => rng.normal() * 2 + 1);
      const a = wasm.step(x, shape);
      const b = plain.step(x, shape);
      for (const o of a.outputs) expect(api.wasmMemory.isZeroCopy(o)).toBe(true);
      // Outputs within 1e-6: the family's backward rounds dx over dy (the copied path) and
      // elsewhere (a layer's own block) by up to 1 ulp (test/layers/family-layers.test.ts).
      expect(maxRelative(a.dx, b.dx)).toBeLessThan(1e-5);
      for (let k = 0; k < a.outputs.length; k++) expect(maxRelative(a.outputs[k], b.outputs[k])).toBeLessThan(1e-5);
      for (let k = 0; k < wasm.params().length; k++) expect(maxRelative(wasm.params()[k], plain.params()[k])).toBeLessThan(1e-5);
    }
  });

  it("a layer's outputs are its own blocks, rewritten by its next call (no allocation per step)", () => {
    const bn = new api.BatchNorm(3);
    const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i % 5);
    const y1 = bn.forward(x, [2, 3, 4]);
    const first = y1.slice();
    const y2 = bn.forward(x.map((v) => v * 2), [2, 3, 4]);
    expect(y2.byteOffset).toBe(y1.byteOffset);
    expect(Array.from(y1)).toEqual(Array.from(y2)); // the same block
    expect(first.length).toBe(24);
  });

  it('a layer fed its own output does not write over the x its backward reads', () => {
    const shape = [2, 3, 4];
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i) * 3);
    const dy = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const bn = new api.BatchNorm(3);
    const y = bn.forward(bn.forward(x, shape), shape);
    const dx = bn.backward(dy);
    const ref = api.withBackend('js', () => new api.BatchNorm(3));
    const yr = api.withBackend('wasm', () => ref.forward(ref.forward(x, shape), shape));
    const dxr = api.withBackend('wasm', () => ref.backward(dy));
    expect(Array.from(y)).toEqual(Array.from(yr));
    expect(Array.from(dx)).toEqual(Array.from(dxr));
  });

  it('arrays handed out stay valid after the layer is dropped; its blocks are freed once nothing holds them', async () => {
    let bn: api.BatchNorm | null = new api.BatchNorm(3);
    let y: Float32Array | null = bn.forward(Float32Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
    const copy = y.slice();
    let gamma: Float32Array | null = bn.gamma!;
    const at = { y: [y.byteOffset, y.length], gamma: [gamma.byteOffset, gamma.length] };
    const live = ([p, n]: number[]) => api.wasmMemory.isZeroCopy(new Float32Array(api.wasmMemory.buffer, p, n));
    bn = null;
    await collect();
    expect(live(at.y)).toBe(true);
    expect(live(at.gamma)).toBe(true);
    expect(Array.from(y)).toEqual(Array.from(copy));
    expect(Array.from(gamma)).toEqual([1, 1, 1]);
    y = null;
    gamma = null;
    await collect();
    expect(live(at.y)).toBe(false);
    expect(live(at.gamma)).toBe(false);
  });

  it('dispose(): the layer moves to ordinary arrays and keeps working; arrays kept from it stay valid', () => {
    const shape = [2, 3, 4];
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 0.7) * 2);
    const bn = new api.BatchNorm(3);
    const ref = api.withBackend('js', () => new api.BatchNorm(3));
    const y = bn.forward(x, shape);
    api.withBackend('wasm', () => ref.forward(x, shape));
    const kept = y.slice();
    bn.gamma![1] = 2;
    ref.gamma![1] = 2;
    bn.dispose();
    expect(bn.inWasmMemory).toBe(false);
    expect(api.wasmMemory.isZeroCopy(bn.gamma!)).toBe(false);
    expect(Array.from(bn.gamma!)).toEqual([1, 2, 1]);
    expect(Array.from(bn.runningMean!)).toEqual(Array.from(ref.runningMean!));
    expect(Array.from(y)).toEqual(Array.from(kept)); // still its block, not freed
    expect(api.wasmMemory.isZeroCopy(y)).toBe(true);
    expect(() => bn.backward(x)).toThrow(/forward\(\) first/);
    const y2 = bn.forward(x, shape);
    const y2r = api.withBackend('wasm', () => ref.forward(x, shape));
    expect(Array.from(y2)).toEqual(Array.from(y2r));
    bn.dispose(); // twice: nothing
    for (const layer of [new api.LayerNorm(4), new api.RMSNorm(4), new api.GroupNorm(2, 4), new api.InstanceNorm(4, { affine: true, trackRunningStats: true })]) {
      layer.dispose();
      expect(layer.inWasmMemory).toBe(false);
    }
  });

  it.skipIf(!nativeAvailable)('after useBackend("native") a layer made on wasm keeps working, the numbers of a native layer', () => {
    const shape = [4, 6, 5, 5];
    const wasm = chain(6, 5);
    api.useBackend('native');
    try {
      const native = chain(6, 5);
      expect(native.layers.every((l) => !l.inWasmMemory)).toBe(true);
      const rng = new Random(9);
      for (let step = 0; step < 2; step++) {
        const x = Float32Array.from({ length: 4 * 6 * 25 }, () => rng.normal());
        const a = wasm.step(x, shape);
        const b = native.step(x, shape);
        expect(maxRelative(a.dx, b.dx)).toBeLessThan(1e-5);
        for (let k = 0; k < a.outputs.length; k++) expect(maxRelative(a.outputs[k], b.outputs[k])).toBeLessThan(1e-5);
      }
    } finally {
      api.useBackend('wasm');
    }
  });

  it('bad input: a freed block, a wrong dtype, junk in out: typed errors, the layer unchanged', () => {
    const bn = new api.BatchNorm(3);
    const family = [new api.LayerNorm(4), new api.RMSNorm(4), new api.GroupNorm(2, 4)] as Chain['layers'];
    // Outputs allocated first (else the freed block is handed out again as one of them).
    bn.forward(new Float32Array(24), [2, 3, 4]);
    for (const layer of family) layer.forward(new Float32Array(24), [6, 4]);
    const block = api.wasmMemory.alloc(Float32Array, 24);
    const view = block.array;
    block.free();
    expect(() => bn.forward(view, [2, 3, 4])).toThrow(RangeError);
    for (const layer of family) expect(() => layer.forward(view, [6, 4])).toThrow(RangeError);
    expect(() => bn.forward(new Float64Array(24) as unknown as Float32Array, [2, 3, 4])).toThrow(TypeError);
    expect(() => bn.forward(new Float32Array(24), [2, 3, 4], { y: 7 as unknown as Float32Array })).toThrow(TypeError);
    bn.forward(new Float32Array(24).fill(1), [2, 3, 4]);
    expect(() => bn.backward('dy' as unknown as Float32Array)).toThrow(TypeError);
    expect(() => bn.backward(new Float32Array(24), { dx: {} as Float32Array })).toThrow(TypeError);
    expect(bn.numBatchesTracked).toBe(2);
    for (const layer of family) {
      expect(() => layer.forward(new Float32Array(24), [6, 4], { y: 'y' as unknown as Float32Array })).toThrow(TypeError);
    }
  });
});
