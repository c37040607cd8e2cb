/** The README's TensorFlow.js example runs as written (its `simdnorm/tfjs` import pointed at this checkout). */
import { expect, it, vi } from 'vitest';
import { runReadmeBlock } from '../package/readme-block.js';

// tfjs-cpu trains slowly; a loaded machine must not fail these (no wall-clock assertion here).
vi.setConfig({ testTimeout: 120_000 });
it('the README "With TensorFlow.js" example trains and predicts on simdnorm', async () => {
  const logs = await runReadmeBlock('With TensorFlow.js', 'tfjs', { specifier: 'simdnorm/tfjs', file: 'tfjs.ts' });
  // (tfjs prints a banner of its own in Node)
  expect(logs.filter((l) => typeof l[0] === 'number')).toEqual([[4, 1, 0, [2, 2]]]);
});
