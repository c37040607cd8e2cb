/**
 * The conformance suite (test/conformance/cases.ts) on each wasm variant explicitly: SIMD128
 * and scalar (test/conformance/conformance.test.ts runs it on the wasm backend the registry
 * picks, which is SIMD128 in Node 20). Same cases, same tolerances as every backend.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { Backend } from '../../lib/backend.js';
import { type WasmVariant } from '../../lib/backends/wasm.js';
import { loadWasmBackendSync, wasmNodeProvider } from '../../lib/backends/wasm-node.js';
import { conformanceCases } from '../conformance/cases.js';

const cases = conformanceCases();

for (const variant of ['simd128', 'scalar'] as WasmVariant[]) {
  describe(`conformance: wasm ${variant}`, () => {
    let backend: Backend;
    beforeAll(() => {
      backend = loadWasmBackendSync(variant);
      api.registerBackend({ name: 'wasm', priority: 20, loadSync: () => backend, load: async () => backend });
      api.useBackend('wasm');
    });
    afterAll(() => {
      api.registerBackend(wasmNodeProvider);
      api.useBackend('auto');
    });
    it('runs the requested variant', () => {
      expect(api.backends().find((b) => b.current)?.details).toMatchObject({ simd: variant });
    });
    for (const c of cases) it(c.name, () => c.run(api), 120_000);
  });
}
