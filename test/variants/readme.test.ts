/** The README's "BatchNorm variants" examples run as written (their `simdnorm` import pointed at this checkout). */
import { expect, it } from 'vitest';
import { runReadmeBlock } from '../package/readme-block.js';

it('the README BatchNorm variants example runs', async () => {
  const logs = await runReadmeBlock('BatchNorm variants', 'variants');
  expect(logs).toEqual([[4, 4, 16, 864, 4, 8]]);
});

it('the README BatchNorm + residual add + ReLU example runs', async () => {
  const logs = await runReadmeBlock('BatchNorm + residual add + ReLU', 'residual', undefined, 3);
  expect(logs).toEqual([[true, true, true, 800]]);
});
