/**
 * Loading: the loader picks SIMD128 exactly when WebAssembly.validate accepts the SIMD probe,
 * both committed variants load in Node without flags, and they agree with each other and with
 * the float64 reference.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pickVariant, simdSupported, WasmBackend } from '../../lib/backends/wasm.js';
import { loadWasmBackendSync, wasmNodeProvider } from '../../lib/backends/wasm-node.js';
import { referenceBackend, runAll, scaledError, trainCases } from './helpers.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('variant selection', () => {
  it('uses SIMD128 in Node 20, whose engine validates the probe', () => {
    expect(simdSupported()).toBe(true);
    expect(pickVariant()).toBe('simd128');
  });

  it('picks scalar when WebAssembly.validate rejects the SIMD probe', () => {
    const validate = vi.spyOn(WebAssembly, 'validate').mockReturnValue(false);
    expect(pickVariant()).toBe('scalar');
    const backend = loadWasmBackendSync();
    expect(validate).toHaveBeenCalled();
    expect(backend.variant).toBe('scalar');
    expect(backend.details()).toMatchObject({ simd: 'scalar', threads: 1, variant: 'simdnorm-scalar.wasm' });
  });

  it('picks the threaded SIMD128 variant in Node when WebAssembly.validate accepts it (workers can start)', () => {
    vi.spyOn(WebAssembly, 'validate').mockReturnValue(true);
    expect(pickVariant(true)).toBe('simd128-threads');
    expect(pickVariant(false)).toBe('simd128');
    const backend = loadWasmBackendSync();
    expect(backend.details()).toMatchObject({ simd: 'simd128', variant: 'simdnorm-threads.wasm' });
  });

  it('picks single-threaded SIMD128 when threads cannot run, and says why in details()', () => {
    const backend = loadWasmBackendSync('simd128');
    expect(backend.details()).toMatchObject({ simd: 'simd128', threads: 1, variant: 'simdnorm-simd.wasm' });
    expect(String(backend.details().threadsOff)).toMatch(/^threads off: [^\n]+$/);
  });

  it('treats a validate that throws as no SIMD', () => {
    vi.spyOn(WebAssembly, 'validate').mockImplementation(() => {
      throw new Error('no');
    });
    expect(pickVariant()).toBe('scalar');
  });
});

describe('the Node provider', () => {
  it('loads synchronously, once, as wasm with priority 20', async () => {
    expect(wasmNodeProvider.name).toBe('wasm');
    expect(wasmNodeProvider.priority).toBe(20);
    const a = wasmNodeProvider.loadSync!();
    const b = await wasmNodeProvider.load();
    expect(a).toBe(b);
    expect(a).toBeInstanceOf(WasmBackend);
    const details = a.details();
    expect(details.simd).toBe('simd128');
    expect(details.memoryBytes).toBeGreaterThan(0);
  });
});

describe('both variants give the reference numbers', () => {
  const simd = loadWasmBackendSync('simd128');
  const scalar = loadWasmBackendSync('scalar');
  for (const [i, c] of trainCases().entries()) {
    const g = c.g;
    const name = `${c.type.name} [${g.outer}, ${g.channels}, ${g.inner}] relu=${c.relu} affine=${c.affine}`;
    it(name, () => {
      const want = runAll(referenceBackend, c, 100 + i);
      const gotSimd = runAll(simd, c, 100 + i);
      const gotScalar = runAll(scalar, c, 100 + i);
      // float32: a few ulps of scale; float64: far tighter.
      const tolerance = c.type === Float32Array ? 1e-5 : 1e-12;
      for (const key of Object.keys(want)) {
        expect(scaledError(gotSimd[key], want[key]), `simd128 ${key}`).toBeLessThanOrEqual(tolerance);
        expect(scaledError(gotScalar[key], want[key]), `scalar ${key}`).toBeLessThanOrEqual(tolerance);
        expect(scaledError(gotSimd[key], gotScalar[key]), `simd128 vs scalar ${key}`).toBeLessThanOrEqual(tolerance);
      }
    });
  }
});
