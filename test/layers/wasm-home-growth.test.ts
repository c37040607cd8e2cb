/**
 * Layers on the single-threaded wasm variant (simdnorm-simd.wasm), whose non-shared memory
 * detaches every view of it when it grows: a layer allocating its outputs, the kernels' workspace
 * or the caller's own allocations between forward and backward grow it, and the layers never
 * hand a detached array to a kernel (they keep blocks and pinned addresses, not views); a view the
 * caller kept across a growth is detached (length 0), and passing it is a typed error.
 */
import { beforeAll, describe, expect, it } from 'vitest';

// Before the library loads (every import of it below is dynamic): the single-threaded variant.
process.env.SIMDNORM_WASM_VARIANT = 'simd128';
const api = await import('../../lib/index.js');
const { chain, maxRelative } = await import('./wasm-home-support.js');
await api.ready();
const wasm = api.backends().find((b) => b.name === 'wasm');

describe.skipIf(!wasm?.available)('layers on wasm: the memory grows (simdnorm-simd.wasm, not shared)', () => {
  beforeAll(() => {
    api.useBackend('wasm');
    expect(wasm?.details?.variant).toBe('simdnorm-simd.wasm');
  });

  it('a training step whose allocations grow the memory between layers: the numbers of ordinary-array layers', () => {
    const [N, C, S] = [8, 16, 32];
    const shape = [N, C, S, S];
    const before = api.wasmMemory.bytes;
    const layered = chain(C, S);
    const plain = api.withBackend('js', () => chain(C, S));
    const x = Float32Array.from({ length: N * C * S * S }, (_, i) => Math.sin(i * 0.37) * 2 + 0.5);
    for (let step = 0; step < 2; step++) {
      // The plain layers first: their calls copy into the scratch area, which may grow the memory too.
      const b = plain.step(x, shape);
      const grown = api.wasmMemory.bytes;
      const a = layered.step(x, shape);
      if (step === 0) expect(api.wasmMemory.bytes).toBeGreaterThan(grown); // this step grew it
      expect(a.dx.length).toBe(x.length);
      expect(maxRelative(a.dx, b.dx)).toBeLessThan(1e-5);
      const pa = layered.params();
      const pb = plain.params();
      for (let k = 0; k < pa.length; k++) expect(maxRelative(pa[k], pb[k])).toBeLessThan(1e-5);
    }
    expect(api.wasmMemory.bytes).toBeGreaterThan(before);
  });

  it('growth between forward and backward: backward reads the saved x again; a kept y is detached, passing it is a TypeError or RangeError', () => {
    const shape = [4, 8, 16, 16];
    const n = 4 * 8 * 16 * 16;
    const xBlock = api.wasmMemory.alloc(Float32Array, n); // the input in module memory too
    xBlock.array.set(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11) * 3));
    const xCopy = xBlock.array.slice();
    const layers = [new api.BatchNorm(8), new api.GroupNorm(4, 8), new api.InstanceNorm(8, { affine: true }), new api.LayerNorm([16, 16]), new api.RMSNorm(16)];
    const refs = api.withBackend('js', () => [new api.BatchNorm(8), new api.GroupNorm(4, 8), new api.InstanceNorm(8, { affine: true }), new api.LayerNorm([16, 16]), new api.RMSNorm(16)]);
    for (let k = 0; k < layers.length; k++) {
      const y = layers[k].forward(xBlock.array, shape);
      const yr = refs[k].forward(xCopy, shape);
      expect(maxRelative(y, yr)).toBeLessThan(1e-5);
      const bytes = api.wasmMemory.bytes;
      const filler = api.wasmMemory.alloc(Float32Array, bytes / 4); // as large as the memory: grows it
      expect(api.wasmMemory.bytes).toBeGreaterThan(bytes);
      expect(y.length).toBe(0); // detached
      expect(() => layers[k].forward(y, shape)).toThrow(/x|length|shape/);
      const dy = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
      const dx = layers[k].backward(dy);
      const dxr = refs[k].backward(dy);
      expect(maxRelative(dx, dxr)).toBeLessThan(1e-5);
      filler.free();
    }
    xBlock.free();
  });

  it("a layer's getters give current views after growth (bn.gamma read again), and state()/loadState() work", () => {
    const bn = new api.BatchNorm(5);
    const old = bn.gamma!;
    const filler = api.wasmMemory.alloc(Float32Array, api.wasmMemory.bytes / 4); // grows the memory
    expect(old.length).toBe(0);
    expect(bn.gamma!.length).toBe(5);
    bn.loadState({ weight: [1, 2, 3, 4, 5], bias: [0, 0, 0, 0, 1], running_mean: [0, 0, 0, 0, 0], running_var: [1, 1, 1, 1, 1] });
    expect(Array.from(bn.state().weight!)).toEqual([1, 2, 3, 4, 5]);
    filler.free();
  });
});
