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
import * as abi from '../../../native/abi/table.mjs';

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

// The descriptor layout, from the ABI table itself (native/abi/table.mjs).
const indexOf = (list) => Object.fromEntries(list.map(([name], i) => [name, i]));
export const Phase = indexOf(abi.phases);
export const Scalar = indexOf(abi.scalars);
export const Slot = indexOf(abi.slots);
export const SLOT_NAMES = abi.slots.map(([name]) => name);

/**
 * run's positional arguments for a BatchNorm descriptor (samples 1, stats = channels, γ/β by
 * channel): [scalars, one tensor per slot]; `tensors` maps slot names to arrays.
 */
export function bnArgs(phase, T, s, tensors, { eps = 1e-5, relu = false, training = false, factor = 0, varScale = 1 } = {}) {
  const scalars = new Float64Array(abi.scalars.length);
  scalars[Scalar.phase] = Phase[phase];
  scalars[Scalar.dtype] = T === Float64Array ? 1 : 0;
  scalars[Scalar.samples] = 1;
  scalars[Scalar.outer] = s.outer;
  scalars[Scalar.stats] = s.channels;
  scalars[Scalar.inner] = s.inner;
  scalars[Scalar.affineGroups] = s.channels;
  scalars[Scalar.affineSize] = 1;
  scalars[Scalar.affineRun] = s.inner;
  scalars[Scalar.flags] = (relu ? 1 : 0) | (training ? 2 : 0);
  scalars[Scalar.eps] = eps;
  scalars[Scalar.factor] = factor;
  scalars[Scalar.varScale] = varScale;
  return [scalars, ...SLOT_NAMES.map((name) => tensors[name] ?? null)];
}

/**
 * Three phases as the async tests use them: run's positional arguments (bnArgs), which of them
 * are arrays (argument index -> slot name) and which of those the call writes.
 */
const specOf = (phase, outputs, build) => {
  const spec = {
    args(T, s, seed) {
      const [tensors, options] = build(T, s, seed);
      return bnArgs(phase, T, s, tensors, options);
    },
  };
  const probe = spec.args(Float32Array, { outer: 1, channels: 1, inner: 2 }, 1);
  spec.arrays = Object.fromEntries(probe.flatMap((a, i) => (i > 0 && a ? [[i, SLOT_NAMES[i - 1]]] : [])));
  spec.outputs = outputs.map((name) => 1 + Slot[name]);
  return spec;
};

export const OPS = {
  train: specOf('train', ['y', 'mean', 'invStd', 'runningMean', 'runningVar'], (T, s, seed) => {
    const n = s.outer * s.channels * s.inner, c = s.channels, m = s.outer * s.inner;
    return [{
      x: fill(new T(n), seed, 1, 3), gamma: fill(new T(c), seed + 1, 0.5, 1), beta: fill(new T(c), seed + 2),
      y: new T(n), mean: new T(c), invStd: new T(c), runningMean: fill(new T(c), seed + 3),
      runningVar: fill(new T(c), seed + 4, 0.5, 1),
    }, { relu: true, factor: 0.9, varScale: m / (m - 1) }];
  }),
  infer: specOf('infer', ['y'], (T, s, seed) => {
    const n = s.outer * s.channels * s.inner, c = s.channels;
    return [{
      x: fill(new T(n), seed, 1, 3), runningMean: fill(new T(c), seed + 1), runningVar: fill(new T(c), seed + 2, 0.5, 1),
      gamma: fill(new T(c), seed + 3, 0.5, 1), beta: fill(new T(c), seed + 4), y: new T(n),
    }, {}];
  }),
  backward: specOf('backward', ['dx', 'dgamma', 'dbeta'], (T, s, seed) => {
    const n = s.outer * s.channels * s.inner, c = s.channels;
    return [{
      dy: fill(new T(n), seed), x: fill(new T(n), seed + 1, 1, 3), mean: fill(new T(c), seed + 2, 1, 3),
      invStd: fill(new T(c), seed + 3, 0.5, 1), gamma: fill(new T(c), seed + 4, 0.5, 1), y: fill(new T(n), seed + 5),
      dx: new T(n), dgamma: new T(c), dbeta: new T(c),
    }, { relu: true, training: true }];
  }),
};

export const arrayIndexes = (op) => Object.keys(OPS[op].arrays).map(Number);

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
