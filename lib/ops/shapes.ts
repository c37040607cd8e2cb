/**
 * How the family's ops read shapes (internal to lib/ops): rows × D for LayerNorm and RMSNorm,
 * N × C × spatial for GroupNorm and InstanceNorm, and the forward output that backward needs
 * under a fused ReLU.
 */
import type { Phase } from '../core/abi.js';
import { product } from '../core/call.js';
import { makeNorm, type FloatArray, type Norm, type NormScalars } from '../core/descriptor.js';
import { checkOptionalFloatArray, describe, type Activation, type DType, type Layout } from '../validate.js';

/** A shape read as rows × D by its normalizedShape. */
export interface Rows {
  readonly dims: readonly number[];
  readonly elements: number;
  readonly rows: number;
  /** D: values per row, the product of normalizedShape */
  readonly size: number;
}

/** `dims` as rows of `normalized` (which must be its last dims); RangeError naming normalizedShape. */
export function rowsOf(dims: readonly number[], normalized: readonly number[], name = 'normalizedShape'): Rows {
  const k = normalized.length;
  let suffix = k <= dims.length;
  for (let i = 0; suffix && i < k; i++) suffix = dims[dims.length - k + i] === normalized[i];
  if (!suffix) {
    throw new RangeError(
      `${name} must be the last dims of shape [${dims.join(', ')}], received [${normalized.join(', ')}]`,
    );
  }
  const size = product(normalized);
  const rows = product(dims, 0, dims.length - k);
  return { dims, elements: rows * size, rows, size };
}

/** The descriptor of rows × D (LayerNorm, and RMSNorm with scalars.rms). */
export function rowsDescriptor(phase: (typeof Phase)[keyof typeof Phase], x: FloatArray, r: Rows, s: NormScalars): Norm {
  return makeNorm(phase, x, { samples: 1, outer: 1, stats: r.rows, inner: r.size }, { groups: 1, size: r.size, run: 1 }, s);
}

/** A [N, C, ...spatial] or [N, ...spatial, C] shape: N, C and S = product of the spatial dims. */
export interface Samples {
  readonly dims: readonly number[];
  readonly elements: number;
  readonly n: number;
  readonly c: number;
  readonly s: number;
  readonly layout: Layout;
}

export function samplesOf(dims: readonly number[], layout: Layout): Samples {
  const last = dims.length - 1;
  const c = layout === 'channels-first' ? dims[1] : dims[last];
  const s = layout === 'channels-first' ? product(dims, 2) : product(dims, 1, last);
  return { dims, elements: product(dims), n: dims[0], c, s, layout };
}

/** The forward output y, required exactly with activation 'relu' (backward functions). */
export function checkReluOutput(value: unknown, activation: Activation, dtype: DType, length: number): FloatArray | null {
  const y = checkOptionalFloatArray(value, 'y', dtype, length);
  if (activation === 'relu' && y === null) {
    throw new TypeError(`y (the forward output) is required with activation 'relu', received ${describe(value)}`);
  }
  if (activation === 'none' && y !== null) {
    throw new RangeError(`y is only used with activation 'relu', received it with activation 'none'`);
  }
  return y;
}

/** PyTorch's default eps for RMSNorm: the machine epsilon of the dtype. */
export function rmsDefaultEps(dtype: DType): number {
  return dtype === 'float32' ? 2 ** -23 : Number.EPSILON;
}
