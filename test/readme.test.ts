/** The README's example runs as written (its `simdnorm` import pointed at this checkout). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

it('the README example runs and trains a step', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /## Example[^\n]*\n+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block, 'README has a ts example under "## Example"').toBeTruthy();
  const entry = pathToFileURL(join(root, 'lib', 'index.ts')).href;
  const dir = join(root, 'node_modules', '.cache', 'simdnorm-readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'example.ts');
  writeFileSync(file, block!.replace(/from 'simdnorm'/g, `from '${entry}'`));
  const logs: unknown[][] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void logs.push(args);
  try {
    await import(/* @vite-ignore */ pathToFileURL(file).href);
  } finally {
    console.log = log;
  }
  expect(logs).toHaveLength(1);
  const [backend, dxLength, yEval, tracked] = logs[0];
  expect(['native', 'wasm', 'js']).toContain(backend);
  expect(dxLength).toBe(8 * 16 * 12 * 12);
  expect(Number.isFinite(yEval)).toBe(true);
  expect(tracked).toBe(1);
});
