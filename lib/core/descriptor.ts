/**
 * A normalization call as the backends take it: the scalars of native/abi/table.mjs in a
 * Float64Array (indexed by `Scalar`) and the tensor table (indexed by `Slot`). The op files
 * (lib/ops/*.ts) build descriptors; every backend runs any descriptor through one entry
 * (`Backend.run`), so a new op family needs nothing in the backends, the addon or the wasm ABI.
 *
 * Geometry: x is x[samples][outer][stats][inner]; statistic (n, s) reduces over outer and inner
 * and sits at n * stats + s; γ/β of element (n, o, s, j) sit at
 * (s mod affineGroups) * affineSize + floor(j / affineRun) mod affineSize.
 */
import { DType, ERROR_NAMES, Flag, Phase, PHASE_NAMES, SCALAR_COUNT, SCALAR_NAMES, SLOT_COUNT, SLOT_NAMES, Scalar } from './abi.js';

export type FloatArray = Float32Array | Float64Array;
export type PhaseCode = (typeof Phase)[keyof typeof Phase];

export interface Norm {
  readonly scalars: Float64Array;
  /** indexed by Slot; null where the phase does not use the slot (or an optional one is absent) */
  readonly tensors: (FloatArray | null)[];
}

export interface NormGeometry {
  readonly samples: number;
  readonly outer: number;
  readonly stats: number;
  readonly inner: number;
}

/** How γ/β are indexed (see the file comment); BatchNorm's is { groups: stats, size: 1, run: inner }. */
export interface AffineMap {
  readonly groups: number;
  readonly size: number;
  readonly run: number;
}

export interface NormScalars {
  readonly eps?: number;
  readonly relu?: boolean;
  readonly training?: boolean;
  readonly skipNonFinite?: boolean;
  /** statistics about zero (RMSNorm) */
  readonly rms?: boolean;
  readonly factor?: number;
  readonly varScale?: number;
  /** backward: dx from the sums given in dgamma/dbeta over `sumsCount` values per statistic (SyncBatchNorm) */
  readonly givenSums?: boolean;
  readonly sumsCount?: number;
  /** backward: dgamma = Σg·x̂ and dbeta = Σg alone, no dx (SyncBatchNorm) */
  readonly sumsOnly?: boolean;
  /** train: Batch Renormalization with these clips (flag renorm; r and d in their slots) */
  readonly renorm?: { readonly rmax: number; readonly dmax: number } | null;
  /** train/infer: y = act(BN(x) + residual); backward: dz written beside dx (flag residual) */
  readonly residual?: boolean;
}

/** A descriptor with every tensor null (set them with bind or `n.tensors[Slot.x] = x`); new or reused (releaseNorm). */
export function makeNorm(
  phase: PhaseCode,
  dtype: FloatArray,
  g: NormGeometry,
  affine: AffineMap,
  s: NormScalars = {},
): Norm {
  const flags =
    (s.relu ? Flag.relu : 0) | (s.training ? Flag.training : 0) | (s.skipNonFinite ? Flag.skipNonFinite : 0) | (s.rms ? Flag.rms : 0) |
    (s.givenSums ? Flag.givenSums : 0) | (s.sumsOnly ? Flag.sumsOnly : 0) | (s.renorm ? Flag.renorm : 0) |
    (s.residual ? Flag.residual : 0);
  return makeNormOf(
    phase, dtype instanceof Float64Array ? DType.f64 : DType.f32, g.samples, g.outer, g.stats, g.inner, affine.groups, affine.size, affine.run,
    flags, s.eps ?? 0, s.factor ?? 0, s.varScale ?? 1, s.sumsCount ?? 0, s.renorm ? s.renorm.rmax : 1, s.renorm ? s.renorm.dmax : 0,
  );
}

/**
 * makeNorm with every scalar given as a number, in Scalar order (`flags` from Flag): no object per
 * call, for an op's hot path (lib/ops/batchnorm.ts).
 */
export function makeNormOf(
  phase: PhaseCode, dtype: number, samples: number, outer: number, stats: number, inner: number,
  affineGroups: number, affineSize: number, affineRun: number, flags: number,
  eps: number, factor: number, varScale: number, sumsCount: number, rmax: number, dmax: number,
): Norm {
  const n = spares.pop() ?? { scalars: new Float64Array(SCALAR_COUNT), tensors: Array.from({ length: SLOT_COUNT }, (): FloatArray | null => null) };
  const scalars = n.scalars;
  scalars[Scalar.phase] = phase;
  scalars[Scalar.dtype] = dtype;
  scalars[Scalar.samples] = samples;
  scalars[Scalar.outer] = outer;
  scalars[Scalar.stats] = stats;
  scalars[Scalar.inner] = inner;
  scalars[Scalar.affineGroups] = affineGroups;
  scalars[Scalar.affineSize] = affineSize;
  scalars[Scalar.affineRun] = affineRun;
  scalars[Scalar.flags] = flags;
  scalars[Scalar.eps] = eps;
  scalars[Scalar.factor] = factor;
  scalars[Scalar.varScale] = varScale;
  scalars[Scalar.sumsCount] = sumsCount;
  scalars[Scalar.rmax] = rmax;
  scalars[Scalar.dmax] = dmax;
  return n;
}

// Descriptors whose call has returned, reused by makeNorm: a call allocates none in the steady state.
const spares: Norm[] = [];

/**
 * Hands back a descriptor whose run has returned (or settled): its tensors are cleared (no caller
 * array is kept alive) and makeNorm reuses it. A descriptor must not be used after this.
 */
export function releaseNorm(n: Norm): void {
  const tensors = n.tensors;
  for (let slot = 0; slot < tensors.length; slot++) tensors[slot] = null; // a loop: fill() costs more at this size
  if (spares.length < 8) spares.push(n);
}

/** Elements of x: samples · outer · stats · inner. */
export function elementsOf(n: Norm): number {
  const s = n.scalars;
  return s[Scalar.samples] * s[Scalar.outer] * s[Scalar.stats] * s[Scalar.inner];
}

/**
 * The Error for a negative result of the C ABI (`-(code << 8 | argument)`): a plain
 * `internal error`, since the façade validates every call before a backend sees it.
 */
export function abiError(result: number, n: Norm | null): Error {
  const code = -result >> 8;
  const argument = -result & 0xff;
  const what = ERROR_NAMES[code] ?? `error ${code}`;
  if (what === 'noMemory') return new RangeError(`${PHASE_NAMES[n ? n.scalars[Scalar.phase] : 0] ?? '?'}: out of memory: the kernels' scratch memory could not be allocated; nothing was written`);
  const phase = n ? PHASE_NAMES[n.scalars[Scalar.phase]] ?? '?' : '?';
  let subject = '';
  if (argument > 0) {
    const scalarCodes = ['badScalar', 'tooLarge'];
    subject = scalarCodes.includes(what) ? ` (scalar ${SCALAR_NAMES[argument - 1]})` : ` (tensor ${SLOT_NAMES[argument - 1]})`;
  }
  return new Error(`internal error: ${phase}: ${what}${subject}`);
}
