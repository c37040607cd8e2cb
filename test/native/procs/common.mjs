// Shared by the child-process scripts of test/native/lifetime.test.ts. Each script runs in its own
// `node --expose-gc` process, so a crash (SIGSEGV, abort, an AddressSanitizer report) is a failed
// test and not a dead test runner. The addon is the one the parent test loaded
// (SIMDNORM_TEST_ADDON), else SIMDNORM_NATIVE_PATH, else build/Release.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, open, openSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../../', import.meta.url));
export const addonPath =
  process.env.SIMDNORM_TEST_ADDON || process.env.SIMDNORM_NATIVE_PATH || `${root}build/Release/simdnorm.node`;

export function loadAddon(path = addonPath) {
  return createRequire(import.meta.url)(path);
}

export const gc = globalThis.gc ?? (() => { throw new Error('run with node --expose-gc'); });

/** Fails the process with a message (the parent prints stderr). */
export function check(condition, message) {
  if (!condition) {
    console.error(`CHECK FAILED: ${message}`);
    process.exit(1);
  }
}

export function sameBits(a, b) {
  if (a.byteLength !== b.byteLength) return false;
  const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const v = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < u.length; i++) if (u[i] !== v[i]) return false;
  return true;
}

export function bytesOf(a) {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** Deterministic pseudo-random values in [lo, lo + span). */
export function fill(a, seed, lo = -1, span = 2) {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = lo + (span * s) / 4294967296;
  }
  return a;
}

/** Sizes: under 16384 elements an async call runs inline; from there on the thread pool. */
export const SHAPES = {
  inline: { outer: 2, channels: 3, inner: 25 },
  pool: { outer: 4, channels: 8, inner: 4096 },
};

/**
 * The three async operations: positional arguments (native/node/operations.h), which of them are
 * arrays (index -> name) and which of those the call writes.
 */
export const OPS = {
  train: {
    arrays: { 0: 'x', 4: 'gamma', 5: 'beta', 8: 'y', 9: 'mean', 10: 'invStd', 11: 'runningMean', 12: 'runningVar' },
    outputs: [8, 9, 10, 11, 12],
    args(T, s, seed) {
      const n = s.outer * s.channels * s.inner, c = s.channels, m = s.outer * s.inner;
      return [fill(new T(n), seed, 1, 3), s.outer, c, s.inner, fill(new T(c), seed + 1, 0.5, 1),
        fill(new T(c), seed + 2), 1e-5, true, new T(n), new T(c), new T(c), fill(new T(c), seed + 3),
        fill(new T(c), seed + 4, 0.5, 1), 0.9, m / (m - 1), false];
    },
  },
  infer: {
    arrays: { 0: 'x', 4: 'runningMean', 5: 'runningVar', 6: 'gamma', 7: 'beta', 10: 'y' },
    outputs: [10],
    args(T, s, seed) {
      const n = s.outer * s.channels * s.inner, c = s.channels;
      return [fill(new T(n), seed, 1, 3), s.outer, c, s.inner, fill(new T(c), seed + 1),
        fill(new T(c), seed + 2, 0.5, 1), fill(new T(c), seed + 3, 0.5, 1), fill(new T(c), seed + 4),
        1e-5, false, new T(n)];
    },
  },
  backward: {
    arrays: { 0: 'dy', 1: 'x', 5: 'mean', 6: 'invStd', 7: 'gamma', 8: 'y', 10: 'dx', 11: 'dgamma', 12: 'dbeta' },
    outputs: [10, 11, 12],
    args(T, s, seed) {
      const n = s.outer * s.channels * s.inner, c = s.channels;
      return [fill(new T(n), seed), fill(new T(n), seed + 1, 1, 3), s.outer, c, s.inner,
        fill(new T(c), seed + 2, 1, 3), fill(new T(c), seed + 3, 0.5, 1), fill(new T(c), seed + 4, 0.5, 1),
        fill(new T(n), seed + 5), true, new T(n), new T(c), new T(c)];
    },
  },
};

export const arrayIndexes = (op) => Object.keys(OPS[op].arrays).map(Number);

/** Arguments with every array over a SharedArrayBuffer of its own (same values). */
export function onShared(args) {
  return args.map((a) => {
    if (!ArrayBuffer.isView(a)) return a;
    const v = new a.constructor(new SharedArrayBuffer(a.byteLength));
    v.set(a);
    return v;
  });
}

export const tick = () => new Promise((r) => setImmediate(r));

/**
 * Holds every thread of libuv's pool (the children run with UV_THREADPOOL_SIZE=2) in a blocking
 * open() of a FIFO until release() is called: an async call queued meanwhile starts only after
 * the caller has transferred, dropped and collected its arrays, so without pins its kernel would
 * certainly run on freed memory. Deterministic, and no long kernel to wait for.
 */
let fifoDir = null;
export async function holdThreadPool(threads = Number(process.env.UV_THREADPOOL_SIZE || 4)) {
  if (!fifoDir) {
    fifoDir = mkdtempSync(join(tmpdir(), 'simdnorm-fifo-'));
    execFileSync('mkfifo', Array.from({ length: threads }, (_, i) => join(fifoDir, `f${i}`)));
    process.on('exit', () => rmSync(fifoDir, { recursive: true, force: true }));
  }
  const fifos = Array.from({ length: threads }, (_, i) => join(fifoDir, `f${i}`));
  const opened = fifos.map((f) => new Promise((resolve, reject) =>
    open(f, 'r', (error, fd) => (error ? reject(error) : resolve(fd)))));
  return async () => {
    for (const f of fifos) closeSync(openSync(f, 'w')); // the readers wait: this does not block
    for (const fd of await Promise.all(opened)) closeSync(fd);
  };
}
