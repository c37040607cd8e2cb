/** The README's "BatchNorm variants" example runs as written (its `simdnorm` import pointed at this checkout). */
import { expect, it } from 'vitest';
import { runReadmeBlock } from '../package/readme-block.js';

it('the README BatchNorm variants example runs', async () => {
  const logs = await runReadmeBlock('BatchNorm variants', 'variants');
  expect(logs).toEqual([[4, 4, 16, 864, 4, 8]]);
});
