/**
 * Issue 12's getter / Proxy / aliasing / loadState repros (test/reliability/procs/repro.mjs), one
 * child process per backend under `node --expose-gc`, so that a crash, an abort or a corrupted
 * heap fails the test instead of the runner: every repro must report ok, the process must exit 0.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, expect, it } from 'vitest';
import { ensureDist, root } from './dist.js';
import { BACKENDS, describeBackend } from './support.js';

const script = fileURLToPath(new URL('./procs/repro.mjs', import.meta.url));

beforeAll(() => ensureDist());

for (const backend of BACKENDS) {
  describeBackend(backend, 'issue 12 repros in a child process', () => {
    it('every repro holds and the process exits cleanly', () => {
      const r = spawnSync(process.execPath, ['--expose-gc', script, backend], { cwd: root, encoding: 'utf8', timeout: 120_000 });
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.signal, output).toBeNull();
      expect(r.status, output).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name?: string; ok?: boolean; detail?: string; done?: boolean; backend?: string });
      const done = lines.pop();
      expect(done).toEqual({ done: true, backend });
      expect(lines.length).toBeGreaterThanOrEqual(10);
      expect(lines.filter((l) => !l.ok)).toEqual([]);
    }, 150_000);
  });
}
