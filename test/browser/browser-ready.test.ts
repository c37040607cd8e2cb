/**
 * Calls before `await ready()` where the best backend loads only asynchronously (WASM in
 * browsers; issue 19 item 6): the call runs on js, a warning says so once, clearly, and the
 * pending backend is loaded so that later calls use it.
 */
import { afterEach, expect, it, vi } from 'vitest';
import type { Backend, BackendProvider } from '../../lib/backend.js';
import { jsBackend } from '../../lib/backends/js.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.resetModules();
});

async function freshRegistry() {
  vi.resetModules();
  const registry = await import('../../lib/registry.js');
  const api = await import('../../lib/api.js');
  let resolve!: (b: Backend) => void;
  const loading = new Promise<Backend>((r) => (resolve = r));
  let loads = 0;
  const asyncOnly: BackendProvider = {
    name: 'wasm',
    priority: 20,
    load: () => {
      loads++;
      return loading;
    },
  };
  registry.registerBackend(asyncOnly);
  registry.registerBackend({ name: 'js', priority: 1, loadSync: () => jsBackend, load: async () => jsBackend });
  const fakeWasm: Backend = { ...jsBackend, name: 'wasm' };
  return { registry, api, finishLoading: () => resolve(fakeWasm), loads: () => loads };
}

const args = { x: new Float32Array([1, 2, 3, 4]), shape: [2, 2], runningMean: new Float32Array(2), runningVar: new Float32Array(2).fill(1) };

it('a call before ready() warns once that it ran on js, starts loading wasm, and later calls use wasm', async () => {
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
  const { registry, api, finishLoading, loads } = await freshRegistry();
  expect(registry.currentBackend()).toBe('js'); // introspection does not warn
  expect(registry.backends().map((b) => b.name)).toEqual(['wasm', 'js']);
  expect(warn).not.toHaveBeenCalled();

  api.batchNormInfer(args);
  api.batchNormInfer(args);
  await api.batchNormInferAsync(args);
  expect(warn).toHaveBeenCalledTimes(1);
  expect(String(warn.mock.calls[0][0])).toMatch(/ran on the 'js' backend because 'wasm' loads asynchronously .*await ready\(\)/);
  expect(loads()).toBe(1);

  finishLoading();
  await new Promise((r) => setTimeout(r, 0));
  expect(registry.currentBackend()).toBe('wasm');
  api.batchNormInfer(args);
  expect(warn).toHaveBeenCalledTimes(1);
});

it('after await ready() nothing is said', async () => {
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
  const { registry, api, finishLoading } = await freshRegistry();
  finishLoading();
  expect(await registry.ready()).toBe('wasm');
  api.batchNormInfer(args);
  expect(warn).not.toHaveBeenCalled();
});

it('a forced backend is not second-guessed', async () => {
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
  const { registry, api } = await freshRegistry();
  registry.useBackend('js');
  api.batchNormInfer(args);
  expect(warn).not.toHaveBeenCalled();
});
