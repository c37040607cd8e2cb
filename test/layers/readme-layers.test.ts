/** The README's "Layers on WASM" example runs as written, and its layers live in module memory. */
import { afterAll, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { runReadmeBlock } from '../package/readme-block.js';

afterAll(() => api.useBackend('auto'));

it('the README "Layers on WASM" example runs: the layer in module memory, three steps', async () => {
  const logs = await runReadmeBlock('Layers on WASM', 'layers-wasm', undefined, 3);
  expect(logs).toEqual([[true, true, 3]]);
});
