/** The README's SyncBatchNorm example runs as written (its `simdnorm` import pointed at this checkout). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

it('the README SyncBatchNorm example runs', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.search(/^## SyncBatchNorm/m);
  expect(at).toBeGreaterThan(0);
  const next = readme.slice(at + 3).search(/^## /m);
  const section = readme.slice(at, next < 0 ? undefined : at + 3 + next);
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(block).toBeTruthy();
  const entry = pathToFileURL(join(root, 'lib', 'index.ts')).href;
  const dir = join(root, 'node_modules', '.cache', 'simdnorm-readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'syncbatchnorm.ts');
  writeFileSync(file, block!.replace(/from 'simdnorm'/g, `from '${entry}'`));
  const logs: unknown[][] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void logs.push(args);
  try {
    await import(/* @vite-ignore */ pathToFileURL(file).href);
  } finally {
    console.log = log;
  }
  expect(logs).toEqual([[200, true, 100, 1]]);
});
