/**
 * Long runs (test/reliability/long-run.mjs, one child process per backend, run with
 * --expose-gc): a million small calls and a thousand large (4M-element) ones on native and on
 * wasm keep memory flat, and no thread or file descriptor is left behind, also by workers that
 * load the addon and exit. Bounds asserted:
 *   - RSS after the runs (after a full GC) and its peak during them: at most 32 MiB above the
 *     RSS after warm-up;
 *   - wasm module memory: exactly what it was after warm-up (the scratch area is reused);
 *   - threads: no more than after warm-up, which is at most Node's own (main, V8 platform,
 *     libuv's 4, inspector/signal: 12 allowed) plus the kernels' pool (maxThreads);
 *   - open file descriptors: no more than after warm-up.
 * SIMDNORM_LONG_SMALL / SIMDNORM_LONG_LARGE change the call counts (CI keeps the defaults).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, expect, it } from 'vitest';
import { ensureDist, root } from './dist.js';
import { describeBackend } from './support.js';

const SMALL = Number(process.env.SIMDNORM_LONG_SMALL ?? 1_000_000);
const LARGE = Number(process.env.SIMDNORM_LONG_LARGE ?? 1_000);
const MiB = 1024 * 1024;
const script = fileURLToPath(new URL('./long-run.mjs', import.meta.url));

interface Snapshot {
  rss: number;
  wasm: number;
  threads: number;
  fds: number;
}

interface Report {
  backend: string;
  small: number;
  large: number;
  largeElements: number;
  before: Snapshot;
  after: Snapshot;
  peakRss: number;
  poolThreads: number;
  workers: { count: number; threadsBefore: number; threadsAfter: number; fdsBefore: number; fdsAfter: number } | null;
  seconds: Record<string, number>;
}

function longRun(backend: string): Promise<Report> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', script, backend, String(SMALL), String(LARGE)], { cwd: root, maxBuffer: 1 << 20, timeout: 240_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${backend} long run failed: ${error.message}\n${stderr}`));
      const line = stdout.trim().split('\n').pop()!;
      resolve(JSON.parse(line) as Report);
    });
  });
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

beforeAll(() => ensureDist());

for (const backend of ['native', 'wasm'] as const) {
  describeBackend(backend, 'long runs', () => {
    it(`${SMALL} small and ${LARGE} large calls keep RSS, module memory, threads and file descriptors flat`, async () => {
      const r = await longRun(backend);
      console.log(
        `${backend} long run: ${r.small} small + ${r.large} large (${r.largeElements} elements) calls in ` +
          `${r.seconds.small!.toFixed(1)} + ${r.seconds.large!.toFixed(1)} s; RSS ${mib(r.before.rss)} -> ${mib(r.after.rss)} ` +
          `(peak ${mib(r.peakRss)})` + (backend === 'wasm' ? `; module memory ${mib(r.before.wasm)} -> ${mib(r.after.wasm)}` : '') +
          `; threads ${r.before.threads} -> ${r.after.threads}; fds ${r.before.fds} -> ${r.after.fds}` +
          (r.workers ? `; ${r.workers.count} addon-loading workers came and went: threads ${r.workers.threadsBefore} -> ${r.workers.threadsAfter}, fds ${r.workers.fdsBefore} -> ${r.workers.fdsAfter}` : ''),
      );
      expect(r.small).toBe(SMALL);
      expect(r.large).toBe(LARGE);
      expect(r.after.rss - r.before.rss, 'RSS growth over the runs').toBeLessThan(32 * MiB);
      expect(r.peakRss - r.before.rss, 'RSS peak over the runs').toBeLessThan(32 * MiB);
      if (backend === 'wasm') expect(r.after.wasm, 'module memory grew after warm-up').toBe(r.before.wasm);
      expect(r.after.threads).toBeLessThanOrEqual(r.before.threads);
      expect(r.before.threads).toBeLessThanOrEqual(12 + r.poolThreads);
      expect(r.after.fds).toBeLessThanOrEqual(r.before.fds);
      if (backend === 'native') {
        expect(r.workers).not.toBeNull();
        expect(r.workers!.threadsAfter, 'threads left behind by workers that loaded the addon').toBeLessThanOrEqual(r.workers!.threadsBefore);
        expect(r.workers!.fdsAfter).toBeLessThanOrEqual(r.workers!.fdsBefore);
      }
    }, 300_000);
  });
}
