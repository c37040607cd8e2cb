/**
 * The `native` backend: the C++ SIMD kernels (native/kernels) through the N-API addon
 * (native/node), multi-threaded, zero-copy over the caller's typed arrays. Node only: imported by
 * the Node entry (lib/index.ts), never by the browser entry.
 *
 * The addon is looked for, in order, at
 *   1. the path in the environment variable SIMDNORM_NATIVE_PATH (CI tests the cmake-js build so),
 *   2. build/Release/simdnorm.node        (node-gyp: `npm install`, `npm run build:native`),
 *   3. build-cmake/Release/simdnorm.node  (cmake-js: `npm run build:native:cmake`),
 * relative to the package root; when none loads, one Error lists every attempt's reason.
 */
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  Backend,
  BackendDetails,
  BackendProvider,
  BackwardArgs,
  FloatArray,
  InferArgs,
  MomentsArgs,
  TrainArgs,
  UpdateRunningArgs,
} from '../backend.js';

/**
 * The raw addon. Positional arguments keep the per-call overhead low; the order here is the one
 * native/node/operations.h documents. All arrays of one call are Float32Array or all are
 * Float64Array; `outer * channels * inner` is the length of x (dy for backward); the per-channel
 * arrays have length `channels`. The addon checks every argument itself: wrong types throw a
 * TypeError, wrong values a RangeError, and a call that throws has written nothing (the async
 * variants reject instead of throwing). An output overlapping any other array argument in memory
 * is a RangeError (checked by address, so two SharedArrayBuffer objects over the same bytes are
 * caught), but for y being exactly x (train, infer) and dx exactly dy (backward). The async
 * variants pin the memory of their arrays until they settle (transferring or collecting one
 * meanwhile is memory-safe, though the results then land in memory the caller no longer sees)
 * and reject arrays over a resizable ArrayBuffer with a TypeError.
 */
export interface NativeBinding {
  /** Training forward; returns whether runningMean/runningVar (both null or both given) were written. */
  train(
    x: FloatArray, outer: number, channels: number, inner: number,
    gamma: FloatArray | null, beta: FloatArray | null, eps: number, relu: boolean,
    y: FloatArray, mean: FloatArray, invStd: FloatArray,
    runningMean: FloatArray | null, runningVar: FloatArray | null,
    factor: number, varScale: number, skipNonFinite: boolean,
  ): boolean;
  /** Inference forward: y = (x - runningMean) * gamma / sqrt(runningVar + eps) + beta. */
  infer(
    x: FloatArray, outer: number, channels: number, inner: number,
    runningMean: FloatArray, runningVar: FloatArray,
    gamma: FloatArray | null, beta: FloatArray | null, eps: number, relu: boolean,
    y: FloatArray,
  ): void;
  /** Backward; y is the fused ReLU's forward output (null without ReLU). */
  backward(
    dy: FloatArray, x: FloatArray, outer: number, channels: number, inner: number,
    mean: FloatArray, invStd: FloatArray, gamma: FloatArray | null, y: FloatArray | null,
    training: boolean, dx: FloatArray, dgamma: FloatArray, dbeta: FloatArray,
  ): void;
  /** Per-channel mean and biased variance. */
  moments(
    x: FloatArray, outer: number, channels: number, inner: number,
    mean: FloatArray, variance: FloatArray,
  ): void;
  /** The running-statistics update alone; returns whether the running stats were written. */
  updateRunningStats(
    runningMean: FloatArray, runningVar: FloatArray, batchMean: FloatArray, batchVar: FloatArray,
    factor: number, varScale: number, skipNonFinite: boolean,
  ): boolean;
  trainAsync(...args: Parameters<NativeBinding['train']>): Promise<boolean>;
  inferAsync(...args: Parameters<NativeBinding['infer']>): Promise<void>;
  backwardAsync(...args: Parameters<NativeBinding['backward']>): Promise<void>;
  /** n >= 1: threads a call may use (the caller counts as one); 0: the default (all cores). */
  setThreads(n: number): void;
  getThreads(): number;
  /** Testing only: kernel scratch requests above `bytes` fail as a failed malloc would (0: no limit). */
  setScratchLimit(bytes: number): void;
  info(): NativeInfo;
  /** Bandwidth probe: copies src into dst (typed arrays of equal byteLength); threads 0 = current. */
  copyBytes(dst: ArrayBufferView, src: ArrayBufferView, threads: number): void;
  /** Bandwidth probe: the sum of src read with `threads` threads (0 = current). */
  readFloats(src: Float32Array, threads: number): number;
}

export interface NativeInfo {
  /** SIMD level the kernels run with on this CPU: 'avx2-fma', 'sse2', 'neon' or 'scalar' */
  simd: string;
  threads: number;
  maxThreads: number;
  napiVersion: number;
  build: 'node-gyp' | 'cmake-js';
}

export interface NativeDetails extends BackendDetails {
  maxThreads: number;
  build: 'node-gyp' | 'cmake-js';
  /** the addon file that was loaded */
  path: string;
}

export interface LoadedBinding {
  binding: NativeBinding;
  /** the addon file that was loaded */
  path: string;
}

/** The addon files to try, in order (see the file comment). */
export function nativeCandidates(): string[] {
  // This file is lib/backends/native.ts (tests) or dist/backends/native.js: the root is two up.
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const candidates = [`${root}build/Release/simdnorm.node`, `${root}build-cmake/Release/simdnorm.node`];
  const fromEnv = process.env.SIMDNORM_NATIVE_PATH;
  return fromEnv ? [resolvePath(fromEnv), ...candidates] : candidates;
}

/** Loads the first of `paths` that is the simdnorm addon; one Error lists why each failed. */
export function loadBindingFrom(paths: readonly string[]): LoadedBinding {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of paths) {
    try {
      const binding = require(path) as NativeBinding;
      if (typeof binding?.train !== 'function' || typeof binding.info !== 'function') {
        throw new Error('it is not the simdnorm addon (no train/info functions)');
      }
      return { binding, path };
    } catch (e) {
      const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
      failures.push(`  ${path}: ${reason}`);
    }
  }
  throw new Error(
    'the native addon could not be loaded (in a project: `npm rebuild simdnorm --foreground-scripts`; ' +
      'in a checkout of simdnorm: `npm run build:native`; `npx simdnorm info` says why):\n' +
      failures.join('\n'),
  );
}

let loaded: LoadedBinding | undefined;

/** The raw addon from nativeCandidates(), loaded once; throws as loadBindingFrom does. */
export function loadNativeBinding(): LoadedBinding {
  return (loaded ??= loadBindingFrom(nativeCandidates()));
}

// Positional calls without an intermediate array: `call` is the sync or the async binding function.
function callTrain<R>(call: (...args: Parameters<NativeBinding['train']>) => R, a: TrainArgs): R {
  const g = a.geometry;
  const r = a.running;
  return call(
    a.x, g.outer, g.channels, g.inner, a.gamma, a.beta, a.eps, a.relu, a.y, a.mean, a.invStd,
    r ? r.runningMean : null, r ? r.runningVar : null,
    r ? r.factor : 0, r ? r.varScale : 1, r ? r.skipNonFinite : false,
  );
}

function callInfer<R>(call: (...args: Parameters<NativeBinding['infer']>) => R, a: InferArgs): R {
  const g = a.geometry;
  return call(a.x, g.outer, g.channels, g.inner, a.runningMean, a.runningVar, a.gamma, a.beta, a.eps, a.relu, a.y);
}

function callBackward<R>(call: (...args: Parameters<NativeBinding['backward']>) => R, a: BackwardArgs): R {
  const g = a.geometry;
  return call(
    a.dy, a.x, g.outer, g.channels, g.inner, a.mean, a.invStd, a.gamma, a.y, a.training,
    a.dx, a.dgamma, a.dbeta,
  );
}

/** A Backend over the raw addon: maps lib/backend.ts's argument objects to positional calls. */
export function nativeBackend({ binding: b, path }: LoadedBinding): Backend {
  return {
    name: 'native',
    train: (a) => callTrain(b.train, a),
    infer: (a) => callInfer(b.infer, a),
    backward: (a) => callBackward(b.backward, a),
    moments: (a: MomentsArgs) => {
      const g = a.geometry;
      b.moments(a.x, g.outer, g.channels, g.inner, a.mean, a.variance);
    },
    updateRunningStats: (a: UpdateRunningArgs) =>
      b.updateRunningStats(a.runningMean, a.runningVar, a.batchMean, a.batchVar, a.factor, a.varScale, a.skipNonFinite),
    trainAsync: (a) => callTrain(b.trainAsync, a),
    inferAsync: (a) => callInfer(b.inferAsync, a),
    backwardAsync: (a) => callBackward(b.backwardAsync, a),
    setThreads: (n) => b.setThreads(n),
    details: (): NativeDetails => {
      const info = b.info();
      return { simd: info.simd, threads: info.threads, maxThreads: info.maxThreads, build: info.build, path };
    },
  };
}

export const nativeProvider: BackendProvider = {
  name: 'native',
  priority: 30,
  loadSync: () => nativeBackend(loadNativeBinding()),
  load: async () => nativeBackend(loadNativeBinding()),
};
