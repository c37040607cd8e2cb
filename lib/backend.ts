/**
 * The contract between the façade and a backend. The façade validates every argument
 * (lib/validate.ts), allocates the outputs and reduces each call to these kernels, so a
 * backend never sees a bad argument and never allocates a result.
 *
 * Every tensor is seen as x[outer][channels][inner]:
 *   channels-first (N, C, ...spatial): outer = N, inner = product(spatial);
 *   channels-last  (N, ...spatial, C): outer = N * product(spatial), inner = 1.
 * M = outer * inner is the number of values per channel.
 *
 * The arrays a backend receives are genuine Float32Arrays/Float64Arrays the façade has read once
 * and checked after every read of the caller's values (lib/api.ts): lengths as the geometry says,
 * buffers attached, no overlap but the allowed exact aliases. A backend touches them only by
 * element index and through lib/intrinsics.ts (length, buffer, byteOffset, `set` ...), never by a
 * property or method of the array itself (an own `length` or a subclass's `set` must not run), and
 * runs no caller code, so nothing can change them between the check and the kernel.
 */

export type FloatArray = Float32Array | Float64Array;

export interface Geometry {
  readonly outer: number;
  readonly channels: number;
  readonly inner: number;
}

/** How a training step folds the batch statistics into the running ones. */
export interface RunningUpdateArgs {
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  /** weight of the new batch: 1 - momentum, or 1/numBatchesTracked for the cumulative average */
  readonly factor: number;
  /** M/(M-1) for the unbiased running variance, else 1 */
  readonly varScale: number;
  readonly skipNonFinite: boolean;
}

export interface TrainArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  readonly eps: number;
  readonly relu: boolean;
  readonly y: FloatArray;
  readonly mean: FloatArray;
  readonly invStd: FloatArray;
  readonly running: RunningUpdateArgs | null;
}

export interface InferArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  readonly eps: number;
  readonly relu: boolean;
  readonly y: FloatArray;
}

export interface BackwardArgs {
  readonly dy: FloatArray;
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly mean: FloatArray;
  readonly invStd: FloatArray;
  readonly gamma: FloatArray | null;
  /** the fused ReLU's forward output: dy is masked by y > 0; null without ReLU */
  readonly y: FloatArray | null;
  readonly training: boolean;
  readonly dx: FloatArray;
  readonly dgamma: FloatArray;
  readonly dbeta: FloatArray;
}

export interface MomentsArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly mean: FloatArray;
  readonly variance: FloatArray;
}

export interface UpdateRunningArgs extends RunningUpdateArgs {
  readonly batchMean: FloatArray;
  /** biased batch variance */
  readonly batchVar: FloatArray;
}

/** What `backends()` reports of a backend beyond its name. */
export interface BackendDetails {
  /** SIMD level in use: 'avx2-fma', 'sse2', 'neon', 'simd128', 'scalar', or 'none' for js */
  simd: string;
  threads: number;
  [key: string]: unknown;
}

/**
 * A loaded backend. Each kernel writes only its outputs and returns once they are written;
 * the async variants (optional) run off the calling thread and resolve when done.
 */
export interface Backend {
  readonly name: BackendName;
  train(args: TrainArgs): boolean;
  infer(args: InferArgs): void;
  backward(args: BackwardArgs): void;
  moments(args: MomentsArgs): void;
  updateRunningStats(args: UpdateRunningArgs): boolean;
  trainAsync?(args: TrainArgs): Promise<boolean>;
  inferAsync?(args: InferArgs): Promise<void>;
  backwardAsync?(args: BackwardArgs): Promise<void>;
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
