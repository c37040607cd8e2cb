/**
 * The `native` backend: the C++ SIMD kernels (native/kernels) through the N-API addon
 * (native/node), multi-threaded, zero-copy over the caller's typed arrays. Node only: imported by
 * the Node entry (lib/index.ts), never by the browser entry.
 *
 * The addon is looked for, in order, at
 *   1. the path in the environment variable SIMDNORM_NATIVE_PATH (CI tests the cmake-js build so),
 *   2. build/Release/simdnorm.node        (a build from source: `npx simdnorm build` in a project,
 *                                          `npm run build` or `npm run build:native` in a checkout),
 *   3. the prebuilt addon shipped in the package, prebuilds/<platform>-<arch>/node.abi<N>.<libc>.node
 *      (prebuildify's layout, chosen by node-gyp-build for this platform, architecture, libc and
 *      Node ABI: the binding is tied to one Node major, see native/node/pin.h),
 *   4. build-cmake/Release/simdnorm.node  (cmake-js: `npm run build:native:cmake`),
 * relative to the package root. A file is taken only when it is the simdnorm addon and was compiled
 * with this façade's C ABI (its `abiVersion` is ABI_VERSION, native/abi/table.mjs): an addon built
 * from older sources is refused as stale, never called. When none loads, one Error lists every
 * attempt's reason (`simdnorm info` turns them into advice, lib/cli.ts).
 */
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendDetails, BackendProvider } from '../backend.js';
import { ABI_VERSION } from '../core/abi.js';
import type { FloatArray, Norm } from '../core/descriptor.js';

type Tensor = FloatArray | null | undefined;

/**
 * The raw addon (native/node/operations.h). `run` takes a descriptor (lib/core/descriptor.ts) as
 * positional arguments: the scalars (a Float64Array, lib/core/abi.ts's Scalar order) and then one
 * tensor per slot in Slot order (null or undefined when absent), cheaper than an array. It keeps
 * only the checks memory safety needs (the C ABI's sn_prepare: counts, overflow, required and
 * unexpected slots, bytes behind each tensor, alignment, outputs overlapping another tensor by
 * address but for the allowed exact aliases, tensors of the dtype) and throws what abiError
 * (lib/core/descriptor.ts) would make of a refusal: `internal error: <phase>: <error> (tensor
 * <slot>)`, a TypeError for a tensor not of the dtype or scalars that are not a Float64Array; a
 * RangeError `<phase>: out of memory: ...` when the kernels' scratch memory cannot be had. A call
 * that throws has written nothing. It returns the C ABI's result (train, update: 1 when the
 * running stats were written, else 0).
 *
 * runAsync is run off the main thread: it rejects instead of throwing, pins the memory of its
 * tensors until it settles (transferring or collecting one meanwhile is memory-safe, though the
 * results then land in memory the caller no longer sees) and rejects tensors over a resizable
 * ArrayBuffer with a TypeError.
 */
export interface NativeBinding {
  /** The C ABI version the addon was compiled with (abi_table.h's SN_ABI_VERSION); absent in older addons. */
  readonly abiVersion?: number;
  run(
    scalars: Float64Array, x: Tensor, y: Tensor, dy: Tensor, dx: Tensor, gamma: Tensor, beta: Tensor,
    mean: Tensor, invStd: Tensor, variance: Tensor, runningMean: Tensor, runningVar: Tensor,
    dgamma: Tensor, dbeta: Tensor, r: Tensor, d: Tensor, residual: Tensor, dz: Tensor,
    /** bit i set: slot i is given; the others are absent whatever is passed (omitted: every slot inspected) */
    given?: number,
  ): number;
  runAsync(...args: Parameters<NativeBinding['run']>): Promise<number>;
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
  /** where the loaded addon comes from: a prebuild shipped in the package, or a build from source */
  origin: 'prebuild' | 'source';
  /** the addon file that was loaded */
  path: string;
}

export interface LoadedBinding {
  binding: NativeBinding;
  /** the addon file that was loaded */
  path: string;
}

/** The package root: this file is lib/backends/native.ts (tests) or dist/backends/native.js. */
function packageRoot(): string {
  return fileURLToPath(new URL('../../', import.meta.url));
}

/** Which prebuilt addon fits this process: its path, or why none does. */
export interface PrebuildMatch {
  path?: string;
  /** why no prebuild fits (node-gyp-build's words: platform, arch, abi, libc of this process) */
  reason?: string;
}

/**
 * The prebuild node-gyp-build picks for this process from `<root>/prebuilds`, ignoring any build
 * under build/ (that one is candidate 2 on its own). node-gyp-build reads PREBUILDS_ONLY when its
 * module is evaluated, so a private instance is evaluated with it set.
 */
export function findPrebuild(root: string = packageRoot()): PrebuildMatch {
  const require = createRequire(import.meta.url);
  let id: string;
  try {
    id = require.resolve('node-gyp-build/node-gyp-build.js');
  } catch {
    return { reason: 'node-gyp-build is not installed (a dependency of simdnorm)' };
  }
  const saved = process.env.PREBUILDS_ONLY;
  const cached = require.cache[id];
  process.env.PREBUILDS_ONLY = '1';
  try {
    delete require.cache[id];
    const ngb = require(id) as { path(dir: string): string };
    return { path: ngb.path(root) };
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    return { reason: text.split('\n')[0].replace(/^No native build was found for /, 'no prebuild for ') };
  } finally {
    if (saved === undefined) delete process.env.PREBUILDS_ONLY;
    else process.env.PREBUILDS_ONLY = saved;
    if (cached) require.cache[id] = cached;
    else delete require.cache[id];
  }
}

/** The addon files to try, in order (see the file comment). */
export function nativeCandidates(): string[] {
  const root = packageRoot();
  const prebuild = findPrebuild(root).path;
  const candidates = [
    `${root}build/Release/simdnorm.node`,
    ...(prebuild ? [prebuild] : []),
    `${root}build-cmake/Release/simdnorm.node`,
  ];
  const fromEnv = process.env.SIMDNORM_NATIVE_PATH;
  return fromEnv ? [resolvePath(fromEnv), ...candidates] : candidates;
}

/**
 * Why a loaded module cannot serve as this simdnorm's addon, or undefined when it can. A stale
 * addon (built from sources of another C ABI) would misread every call's descriptor, so it is
 * refused with words `simdnorm info` recognises ("stale").
 */
export function refuseBinding(binding: Partial<NativeBinding> | undefined): string | undefined {
  if (typeof binding?.run !== 'function' || typeof binding.info !== 'function') {
    return 'it is not the simdnorm addon (no run/info functions)';
  }
  const version = binding.abiVersion;
  if (version !== ABI_VERSION) {
    const has = typeof version === 'number' ? `C ABI version ${version}` : 'no C ABI version (from before addons exported theirs)';
    return `it is stale: built from simdnorm sources with ${has}, and this simdnorm needs C ABI version ${ABI_VERSION}`;
  }
  return undefined;
}

/** Loads the first of `paths` that is this simdnorm's addon; one Error lists why each failed. */
export function loadBindingFrom(paths: readonly string[]): LoadedBinding {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of paths) {
    try {
      const binding = require(path) as NativeBinding;
      const refused = refuseBinding(binding);
      if (refused) throw new Error(refused);
      return { binding, path };
    } catch (e) {
      const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
      failures.push(`  ${path}: ${reason}`);
    }
  }
  throw new Error(
    'the native addon could not be loaded (in a project: `npx simdnorm build`; ' +
      'in a checkout of simdnorm: `npm run build:native`; `npx simdnorm info` says why):\n' +
      failures.join('\n'),
  );
}

let loaded: LoadedBinding | undefined;

/** The raw addon from nativeCandidates(), loaded once; throws as loadBindingFrom does. */
export function loadNativeBinding(): LoadedBinding {
  return (loaded ??= loadBindingFrom(nativeCandidates()));
}

/** The mask of the slots a descriptor gives (bit i: slot i), so the addon inspects only those. */
function given(t: readonly (FloatArray | null)[]): number {
  let mask = 0;
  for (let i = 0; i < t.length; i++) if (t[i] !== null) mask |= 1 << i;
  return mask;
}

/** A Backend over the raw addon: a descriptor's tensors go positionally (Slot order). */
export function nativeBackend({ binding: b, path }: LoadedBinding): Backend {
  return {
    name: 'native',
    run: (n: Norm) => {
      const t = n.tensors;
      return b.run(n.scalars, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[16], given(t));
    },
    runAsync: (n: Norm) => {
      const t = n.tensors;
      return b.runAsync(n.scalars, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[16], given(t));
    },
    setThreads: (n) => b.setThreads(n),
    details: (): NativeDetails => {
      const info = b.info();
      const origin = /[\\/]prebuilds[\\/][^\\/]+[\\/][^\\/]+\.node$/.test(path) ? 'prebuild' : 'source';
      return { simd: info.simd, threads: info.threads, maxThreads: info.maxThreads, build: info.build, origin, path };
    },
  };
}

export const nativeProvider: BackendProvider = {
  name: 'native',
  priority: 30,
  loadSync: () => nativeBackend(loadNativeBinding()),
  load: async () => nativeBackend(loadNativeBinding()),
};
