/**
 * The contract between the façade and a backend. The façade validates every argument
 * (lib/validate.ts), allocates the outputs and reduces each call to one descriptor
 * (lib/core/descriptor.ts) that the backend runs, so a backend never sees a bad argument, never
 * allocates a result and knows no op: every op family is a descriptor builder (lib/ops/*.ts).
 *
 * The arrays a backend receives are genuine Float32Arrays/Float64Arrays the façade has read once
 * and checked after every read of the caller's values (lib/ops/*.ts): lengths as the geometry says,
 * buffers attached, no overlap but the allowed exact aliases. A backend touches them only by
 * element index and through lib/intrinsics.ts (length, buffer, byteOffset, `set` ...), never by a
 * property or method of the array itself (an own `length` or a subclass's `set` must not run), and
 * runs no caller code, so nothing can change them between the check and the kernel.
 */

import type { FloatArray, Norm } from './core/descriptor.js';

export type { FloatArray } from './core/descriptor.js';

/**
 * BatchNorm's view of a tensor, x[outer][channels][inner] (lib/validate.ts's Shape):
 *   channels-first (N, C, ...spatial): outer = N, inner = product(spatial);
 *   channels-last  (N, ...spatial, C): outer = N * product(spatial), inner = 1.
 */
export interface Geometry {
  readonly outer: number;
  readonly channels: number;
  readonly inner: number;
}

/** What `backends()` reports of a backend beyond its name. */
export interface BackendDetails {
  /** SIMD level in use: 'avx2-fma', 'sse2', 'neon', 'simd128', 'scalar', or 'none' for js */
  simd: string;
  threads: number;
  [key: string]: unknown;
}

/** A loaded backend: it writes only a call's outputs and returns once they are written. */
export interface Backend {
  readonly name: BackendName;
  /**
   * Runs a descriptor (lib/core/descriptor.ts) the façade has built and checked; returns the
   * C ABI's result (>= 0; train and update: 1 when the running stats were written) or throws
   * `internal error: …` (abiError) for a descriptor the ABI refuses, which the façade never sends.
   * The backend must not keep `n` past the call (the sync façade may reuse it).
   */
  run(n: Norm): number;
  /** run off the calling thread (native); resolves with run's result. */
  runAsync?(n: Norm): Promise<number>;
  setThreads?(n: number): void;
  details(): BackendDetails;
}

export type BackendName = 'native' | 'wasm' | 'js';

/** A backend the registry can try to load; `load` throws (or rejects) with the reason when it cannot. */
export interface BackendProvider {
  readonly name: BackendName;
  /** higher is preferred */
  readonly priority: number;
  /** synchronous loading where the platform allows it (Node); may be absent */
  loadSync?(): Backend;
  load(): Promise<Backend>;
}
