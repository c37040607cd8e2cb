/** The README's TensorFlow.js example runs as written (its `simdnorm/tfjs` import pointed at this checkout). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it, vi } from 'vitest';

// tfjs-cpu trains slowly; a loaded machine must not fail these (no wall-clock assertion here).
vi.setConfig({ testTimeout: 120_000 });

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

it('the README "With TensorFlow.js" example trains and predicts on simdnorm', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.search(/^## With TensorFlow\.js/m);
  expect(at, 'README has a section "## With TensorFlow.js"').toBeGreaterThan(0);
  const next = readme.slice(at + 3).search(/^## /m);
  const section = readme.slice(at, next < 0 ? undefined : at + 3 + next);
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(block).toBeTruthy();
  const entry = pathToFileURL(join(root, 'lib', 'tfjs.ts')).href;
  const dir = join(root, 'node_modules', '.cache', 'simdnorm-readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'tfjs.ts');
  writeFileSync(file, block!.replace(/from 'simdnorm\/tfjs'/g, `from '${entry}'`));
  const logs: unknown[][] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void logs.push(args);
  try {
    await import(/* @vite-ignore */ pathToFileURL(file).href);
  } finally {
    console.log = log;
  }
  // (tfjs prints a banner of its own in Node)
  expect(logs.filter((l) => typeof l[0] === 'number')).toEqual([[4, 1, 0, [2, 2]]]);
});
