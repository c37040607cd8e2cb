/**
 * Runs the first ts block of a README section as written, with its `simdnorm` (or `simdnorm/…`)
 * import pointed at this checkout's lib/, and returns what it logged. Shared by the README-example
 * tests of each section.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * heading: the start of the section's `## ` heading (`### ` with level 3: a subsection, which ends
 * at the next heading of level 2 or 3); name: the file the block is written to; entry: the package
 * specifier the block imports and the lib/ file it maps to.
 */
export async function runReadmeBlock(
  heading: string,
  name: string,
  entry: { specifier: string; file: string } = { specifier: 'simdnorm', file: 'index.ts' },
  level: 2 | 3 = 2,
): Promise<unknown[][]> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const marks = '#'.repeat(level);
  const at = readme.search(new RegExp(`^${marks} ${escape(heading)}`, 'm'));
  const next = at < 0 ? -1 : readme.slice(at + level + 1).search(level === 2 ? /^## /m : /^###? /m);
  const section = at < 0 ? '' : readme.slice(at, next < 0 ? undefined : at + level + 1 + next);
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(block, `README has a ts block in its section "${marks} ${heading}"`).toBeTruthy();
  const target = pathToFileURL(join(root, 'lib', entry.file)).href;
  const dir = join(root, 'node_modules', '.cache', 'simdnorm-readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, block!.replace(new RegExp(`from '${escape(entry.specifier)}'`, 'g'), `from '${target}'`));
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

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
