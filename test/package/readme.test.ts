/** The README's example runs as written (its `simdnorm` import pointed at this checkout). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Runs the ts block under the README heading that starts with `heading`; returns what it logged. */
async function runBlock(heading: string, name: string): Promise<unknown[][]> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.search(new RegExp(`^## ${heading.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
  const next = at < 0 ? -1 : readme.slice(at + 3).search(/^## /m);
  const section = at < 0 ? '' : readme.slice(at, next < 0 ? undefined : at + 3 + next);
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(block, `README has a ts block in its section "## ${heading}"`).toBeTruthy();
  const entry = pathToFileURL(join(root, 'lib', 'index.ts')).href;
  const dir = join(root, 'node_modules', '.cache', 'simdnorm-readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, block!.replace(/from 'simdnorm'/g, `from '${entry}'`));
  const logs: unknown[][] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void logs.push(args);
  try {
    await import(/* @vite-ignore */ pathToFileURL(file).href);
  } finally {
    console.log = log;
  }
  return logs;
}

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
