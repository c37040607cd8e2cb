/** The README's SyncBatchNorm example runs as written (its `simdnorm` import pointed at this checkout). */
import { expect, it } from 'vitest';
import { runReadmeBlock } from '../package/readme-block.js';

it('the README SyncBatchNorm example runs', async () => {
  const logs = await runReadmeBlock('SyncBatchNorm', 'syncbatchnorm');
  expect(logs).toEqual([[200, true, 100, 1]]);
});
