/**
 * Worker threads and child processes cannot import the TypeScript sources: they use dist/
 * (built by `npm test`'s tsc, or `npm run build`). When dist/ is older than lib/, build it.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const distIndex = join(root, 'dist', 'index.js');

function newest(dir: string, ext: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) t = Math.max(t, newest(path, ext));
    else if (entry.name.endsWith(ext)) t = Math.max(t, statSync(path).mtimeMs);
  }
  return t;
}

/** Makes sure dist/ holds the current lib/ (runs tsc when it does not). */
export function ensureDist(): void {
  let built = 0;
  try {
    built = statSync(distIndex).mtimeMs;
  } catch {
    built = 0;
  }
  if (built >= newest(join(root, 'lib'), '.ts')) return;
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}
