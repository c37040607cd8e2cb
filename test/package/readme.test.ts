/** The README's example runs as written (its `simdnorm` import pointed at this checkout). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { runReadmeBlock as runBlock } from './readme-block.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

it('the README zero-copy WASM example runs', async () => {
  const logs = await runBlock('WASM: zero-copy', 'zero-copy');
  expect(logs).toHaveLength(1);
  expect(logs[0][0] as number).toBeCloseTo(0.25, 5);
});

it('the README example runs and trains a step', async () => {
  const logs = await runBlock('Example', 'example');
  expect(logs).toHaveLength(1);
  const [backend, dxLength, yEval, tracked] = logs[0];
  expect(['native', 'wasm', 'js']).toContain(backend);
  expect(dxLength).toBe(8 * 16 * 12 * 12);
  expect(Number.isFinite(yEval)).toBe(true);
  expect(tracked).toBe(1);
});

it('the README browser example runs (in Node it runs on the best backend here)', async () => {
  const logs = await runBlock('Browsers and bundlers', 'browser');
  expect(logs).toHaveLength(1);
  const [backend, y0] = logs[0];
  expect(['native', 'wasm', 'js']).toContain(backend);
  expect(y0 as number).toBeCloseTo(1, 4);
});

it('the README keeps the two development commands as written', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  expect(readme).toContain('npm install && npm run build && npx simdnorm verify');
  expect(readme).toContain('npm install && npm test');
  // Consumers first: install and usage come before the development section.
  expect(readme.indexOf('## Install')).toBeLessThan(readme.indexOf('## Development'));
  expect(readme.indexOf('## Usage')).toBeLessThan(readme.indexOf('## Development'));
  expect(readme.indexOf('npm install && npm test')).toBeGreaterThan(readme.indexOf('## Development'));
});

it('the README family example runs', async () => {
  const logs = await runBlock('The normalization family', 'family');
  expect(logs).toEqual([[4, 32, 8, 4, 4, 8]]);
});
