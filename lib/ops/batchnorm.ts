/**
 * BatchNorm's functions: each reads what the caller gave it once, checks it (lib/validate.ts),
 * allocates what the caller did not provide, and builds one descriptor (lib/core/descriptor.ts)
 * that the backend runs; so every backend shares every line of argument handling, and a call
 * that throws has written nothing. (One check moves: on the native backend a sync call's outputs
 * overlapping another array are refused by the addon's sn_prepare before anything is written,
 * and checkNoOverlap then names them; see defersOverlap.)
 *
 * The descriptor of BatchNorm: x[outer][channels][inner] (channels-first: outer N, inner the
 * product of the spatial dims; channels-last: outer N·spatial, inner 1) is samples 1, stats =
 * channels, γ/β one per statistic (affine groups C, size 1).
 */
import { DType as DTypeCode, Flag, Phase, Slot } from '../core/abi.js';
import { checkAllFixed, checkOut, momentumFactor, nextCount, output, runAsync, unbiasedScale } from '../core/call.js';
import { makeNorm, makeNormOf, releaseNorm, type FloatArray, type Norm } from '../core/descriptor.js';
import { typedArrayFill, typedArrayLength } from '../intrinsics.js';
import type { Backend } from '../backend.js';
import { getBackend } from '../registry.js';
import { renormDgamma, renormScale } from './renorm.js';
import {
  allocateFloat,
  checkCount,
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  checkTensor,
  describe,
  dtypeOf,
  parseOptions,
  readShape,
  shapeOf,
  type Activation,
  type DType,
  type Layout,
  type ParsedOptions,
  type RenormClip,
  type Shape,
} from '../validate.js';

export type { FloatArray } from '../core/descriptor.js';
export type { Activation, Layout } from '../validate.js';

// ---------------------------------------------------------------------------------------------
// Types

export interface TrainInputs<T extends FloatArray = FloatArray> {
  /** the batch, laid out as `shape` says under `options.layout` */
  x: T;
  shape: readonly number[];
  /** per-channel scale (absent: 1) */
  gamma?: T | null;
  /** per-channel shift (absent: 0) */
  beta?: T | null;
  /** running statistics, updated in place when both are given */
  runningMean?: T | null;
  runningVar?: T | null;
  /** batches already folded into the running statistics (default 0) */
  numBatchesTracked?: number;
  /** z, added before the activation: y = act(BN(x) + z) (README "BatchNorm variants"); x's shape and type */
  residual?: T | null;
}

export interface TrainOptions {
  /** added to the variance before the square root; > 0, default 1e-5 */
  eps?: number;
  /** weight of the OLD running value, in [0, 1] (default 0.9 = PyTorch's momentum 0.1); null: cumulative average */
  momentum?: number | null;
  /** fold the unbiased batch variance σ²·M/(M−1) into runningVar (default true, as PyTorch) */
  unbiasedRunningVar?: boolean;
  /** where the channel axis is: 'channels-first' (axis 1, default) or 'channels-last' */
  layout?: Layout;
  /** fused activation applied to y: 'none' (default) or 'relu' */
  activation?: Activation;
  /** leave the running statistics untouched when the batch statistics are not finite */
  skipNonFiniteUpdate?: boolean;
  /**
   * Batch Renormalization (needs the running statistics): r = clip(σ_B/σ, 1/rmax, rmax),
   * d = clip((μ_B − runningMean)/σ, −dmax, dmax), y = γ·((x − μ_B)/σ_B·r + d) + β; null: off
   */
  renorm?: { rmax: number; dmax: number } | null;
  /** ghost BatchNorm: statistics per chunk of this many samples (must divide N); null: the whole batch */
  virtualBatchSize?: number | null;
}

export interface TrainOut<T extends FloatArray = FloatArray> {
  /** may be `x` or `residual` itself (in place) */
  y?: T;
  mean?: T;
  invStd?: T;
}

export interface TrainResult<T extends FloatArray = FloatArray> {
  y: T;
  /** batch mean per channel (what backward needs); with virtualBatchSize v, per (chunk, channel) at chunk·C + c */
  mean: T;
  /** 1/sqrt(batch variance + eps) per channel (what backward needs); per (chunk, channel) as mean */
  invStd: T;
  /** with renorm: r per channel (backward takes it back) */
  r?: T;
  /** with renorm: d per channel (backward takes it back) */
  d?: T;
  /** numBatchesTracked after this call: one more when the running statistics were updated */
  numBatchesTracked: number;
  /** whether the running statistics were written */
  updated: boolean;
}

export interface InferInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
  runningMean: T;
  runningVar: T;
  gamma?: T | null;
  beta?: T | null;
  /** z, added before the activation: y = act(BN(x) + z); x's shape and type */
  residual?: T | null;
}

export interface InferOptions {
  eps?: number;
  layout?: Layout;
  activation?: Activation;
}

export interface BackwardInputs<T extends FloatArray = FloatArray> {
  /** gradient of the loss with respect to y */
  dy: T;
  /** the forward input */
  x: T;
  shape: readonly number[];
  /** the statistics the forward pass normalised with (saved mean and invStd, or the running ones in eval mode) */
  mean: T;
  invStd: T;
  gamma?: T | null;
  /** the forward output, required with activation 'relu' (the gradient is masked by y > 0) */
  y?: T | null;
  /** Batch Renormalization's r and d of the forward call (constants of the gradient); both or neither */
  r?: T | null;
  d?: T | null;
  /**
   * the forward call's residual: given, the result adds dz (the gradient of the residual, dy masked
   * by y > 0 under 'relu'); its values are not read (the mask comes from y)
   */
  residual?: T | null;
}

export interface BackwardOptions {
  layout?: Layout;
  activation?: Activation;
  /** true (default): the statistics were the batch's own; false: they were constants (eval mode) */
  training?: boolean;
  /** ghost BatchNorm: the forward call's virtualBatchSize (mean, invStd per (chunk, channel)) */
  virtualBatchSize?: number | null;
}

export interface BackwardOut<T extends FloatArray = FloatArray> {
  /** may be `dy` itself (in place) */
  dx?: T;
  dgamma?: T;
  dbeta?: T;
  /** with inputs.residual: may be `dy` itself (in place; then dx may not) */
  dz?: T;
}

export interface BackwardResult<T extends FloatArray = FloatArray> {
  dx: T;
  dgamma: T;
  dbeta: T;
  /** with inputs.residual: the gradient of the residual, its own array (never dy unless out.dz is dy) */
  dz?: T;
}

export interface MomentsInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
}

export interface MomentsResult<T extends FloatArray = FloatArray> {
  mean: T;
  /** biased: Σ(x − mean)²/M */
  variance: T;
}

export interface UpdateRunningStatsInputs<T extends FloatArray = FloatArray> {
  runningMean: T;
  runningVar: T;
  /** the batch mean per channel */
  mean: T;
  /** the biased batch variance per channel */
  variance: T;
  /** values per channel the batch statistics came from (M); required with unbiasedRunningVar */
  count?: number;
  numBatchesTracked?: number;
}

export interface UpdateRunningStatsOptions {
  momentum?: number | null;
  unbiasedRunningVar?: boolean;
  skipNonFiniteUpdate?: boolean;
}

/**
 * Every option of the family. Each function accepts all of them: it applies the ones it uses (its
 * own options type) and ignores the others after checking their values, so one options object can
 * be shared by a layer's forward, inference and backward calls (README "Options").
 */
export interface FamilyOptions extends TrainOptions, BackwardOptions {
  /** InstanceNorm: normalise with the input's own statistics (default true) or the running ones */
  useInputStats?: boolean;
}

export interface UpdateRunningStatsResult {
  numBatchesTracked: number;
  updated: boolean;
}

// ---------------------------------------------------------------------------------------------
// How a call handles what the caller gave it
//
// 1. Read: every property of `inputs`, `options` and `out` is read exactly once (a getter or a
//    Proxy trap runs once), the shape's `length` once and each dim once, into locals. Caller code
//    may run during these reads (getters that detach, transfer or shrink another argument, define
//    properties, call simdnorm again); primitives are checked as they are read.
// 2. Check: only after every read, the arrays are checked through the engine's own getters
//    (lib/intrinsics.ts): kind, length (0 when detached or out of bounds, so a checked length
//    means the bytes are there now), overlap by memory. From here until the call returns no
//    caller code runs: nothing reads a property of a caller's object again, outputs the caller
//    did not give are allocated, and the backend receives the checked arrays, which it touches
//    only by element index and through the same intrinsics (lib/backend.ts). A call that throws
//    has written nothing.
// The backend is chosen before step 1 (the first choice reads the environment): a call runs on
// the backend current when it began, even if a getter calls useBackend meanwhile.

/**
 * BatchNorm's descriptor for `shape` (outer × channels × inner), γ/β one per channel; with
 * `chunks` > 1 (ghost BatchNorm) the samples are split into that many virtual batches of
 * N/chunks samples: samples = chunks, outer = outer/chunks (channels-first: N/chunks;
 * channels-last: N/chunks·spatial), statistics at chunk·C + c.
 */
function batchNormDescriptor(
  phase: (typeof Phase)[keyof typeof Phase],
  dtype: DType,
  shape: Shape,
  flags: number,
  eps = 0,
  factor = 0,
  varScale = 1,
  renorm: RenormClip | null = null,
  chunks = 1,
): Norm {
  const g = shape.geometry;
  const outer = chunks === 1 ? g.outer : chunks === 0 ? 0 : g.outer / chunks;
  // makeNormOf: the scalars as numbers, no objects on the hot path
  return makeNormOf(
    phase, dtype === 'float64' ? DTypeCode.f64 : DTypeCode.f32, chunks, outer, g.channels, g.inner, g.channels, 1, 1,
    renorm === null ? flags : flags | Flag.renorm, eps, factor, varScale, 0, renorm === null ? 1 : renorm.rmax, renorm === null ? 0 : renorm.dmax,
  );
}

/**
 * The number of virtual batches (1 without virtualBatchSize): virtualBatchSize must divide N
 * (`dims[0]`). RangeError naming options.virtualBatchSize.
 */
function virtualBatches(virtualBatchSize: number | null, dims: readonly number[]): number {
  if (virtualBatchSize === null) return 1;
  const N = dims[0];
  if (N % virtualBatchSize !== 0) {
    throw new RangeError(
      `options.virtualBatchSize must divide the batch size N = ${N} of shape [${dims.join(', ')}], received ${virtualBatchSize}`,
    );
  }
  return N / virtualBatchSize;
}

// Names of each call's arrays for the overlap check: outputs first.
// out.y may be x or residual; out.dx and out.dz may be dy (not both).
const TRAIN_NAMES = ['out.y', 'out.mean', 'out.invStd', 'runningMean', 'runningVar', 'x', 'gamma', 'beta', 'residual'] as const;
const INFER_NAMES = ['out.y', 'x', 'runningMean', 'runningVar', 'gamma', 'beta', 'residual'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dgamma', 'out.dbeta', 'out.dz', 'dy', 'x', 'mean', 'invStd', 'gamma', 'y', 'r', 'd'] as const;
// The slots of the names above in a descriptor (-1: not in it).
const TRAIN_SLOTS = [Slot.y, Slot.mean, Slot.invStd, Slot.runningMean, Slot.runningVar, Slot.x, Slot.gamma, Slot.beta, Slot.residual];
const INFER_SLOTS = [Slot.y, Slot.x, Slot.runningMean, Slot.runningVar, Slot.gamma, Slot.beta, Slot.residual];
const BACKWARD_SLOTS = [Slot.dx, Slot.dgamma, Slot.dbeta, Slot.dz, Slot.dy, Slot.x, Slot.mean, Slot.invStd, Slot.gamma, Slot.y, -1, -1];

/**
 * Whether a sync call on `b` may leave checkNoOverlap to the backend: the native addon's
 * sn_prepare refuses outputs that overlap another tensor by address (the exact aliases the ops
 * allow aside) before anything is written, so the JavaScript check, which reads every array's
 * buffer (a call into V8 per array: most of a small call's façade time), runs only after such a
 * refusal (runDeferred) to throw its RangeError naming the arguments. Every tensor the check
 * reads is then in the descriptor; calls where one is not (no elements; renorm's backward, whose
 * γ is a new array and r, d not in it) check first as before.
 */
function defersOverlap(b: Backend): boolean {
  return b.name === 'native';
}

/** b.run(n); when it throws, checkNoOverlap over the descriptor's tensors (`slots`, names) first. */
function runDeferred(
  b: Backend, n: Norm, names: readonly string[], slots: readonly number[],
  outputs: number, allowedOutput: number, allowedInput: number, otherOutput: number, otherInput: number,
): number {
  try {
    return b.run(n);
  } catch (e) {
    const arrays = slots.map((slot) => (slot < 0 ? null : n.tensors[slot]));
    releaseNorm(n);
    checkNoOverlap(names, arrays, outputs, allowedOutput, allowedInput, otherOutput, otherInput);
    throw e;
  }
}
const MOMENTS_NAMES = ['out.mean', 'out.variance', 'x'] as const;
const UPDATE_NAMES = ['runningMean', 'runningVar', 'mean', 'variance'] as const;

const TRAIN_OPTIONS = ['eps', 'momentum', 'unbiasedRunningVar', 'layout', 'activation', 'skipNonFiniteUpdate', 'renorm', 'virtualBatchSize'] as const;
const INFER_OPTIONS = ['eps', 'layout', 'activation'] as const;
const BACKWARD_OPTIONS = ['layout', 'activation', 'training', 'virtualBatchSize'] as const;
const MOMENTS_OPTIONS = ['layout'] as const;
const UPDATE_OPTIONS = ['momentum', 'unbiasedRunningVar', 'skipNonFiniteUpdate'] as const;

// ---------------------------------------------------------------------------------------------
// Training forward

interface PreparedTrain {
  norm: Norm;
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  numBatchesTracked: number;
  empty: boolean;
  /** Batch Renormalization: the r and d the train descriptor writes (flag renorm) */
  renorm: { r: FloatArray; d: FloatArray } | null;
}

function prepareTrain(inputs: unknown, options: unknown, outArg: unknown, async: boolean, defer = false): PreparedTrain {
  // 1. Read.
  const opts = parseOptions(options, TRAIN_OPTIONS, 'batchNormTrain');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const shapeValue = input.shape;
  const gammaValue = input.gamma;
  const betaValue = input.beta;
  const runningMeanValue = input.runningMean;
  const runningVarValue = input.runningVar;
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  const residualValue = input.residual;
  const dims = readShape(shapeValue);
  const out = checkOut(outArg);
  const yValue = out?.y;
  const meanValue = out?.mean;
  const invStdValue = out?.invStd;
  // 2. Check (no caller code runs from here on).
  return checkTrain(opts, xValue, shapeOf(dims, opts.layout), gammaValue, betaValue, runningMeanValue, runningVarValue, numBatchesTracked, yValue, meanValue, invStdValue, residualValue, async, defer);
}

/**
 * Step 2 of a training call: the values read in step 1 (`shape` from readShape's dims, the count
 * checked), checked, the outputs allocated, the descriptor built. Runs no caller code.
 */
function checkTrain(
  opts: Readonly<ParsedOptions>,
  xValue: unknown,
  shape: Shape,
  gammaValue: unknown,
  betaValue: unknown,
  runningMeanValue: unknown,
  runningVarValue: unknown,
  numBatchesTracked: number,
  yValue: unknown,
  meanValue: unknown,
  invStdValue: unknown,
  residualValue: unknown,
  async: boolean,
  defer = false,
): PreparedTrain {
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const C = shape.geometry.channels;
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, C);
  const beta = checkOptionalFloatArray(betaValue, 'beta', dtype, C);
  const runningMean = checkOptionalFloatArray(runningMeanValue, 'runningMean', dtype, C);
  const runningVar = checkOptionalFloatArray(runningVarValue, 'runningVar', dtype, C);
  const residual = checkOptionalFloatArray(residualValue, 'residual', dtype, shape.elements);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new TypeError(
      `runningMean and runningVar must be given together, received runningMean ${describe(runningMeanValue)} and runningVar ${describe(runningVarValue)}`,
    );
  }
  if (opts.renorm !== null && runningMean === null) {
    throw new TypeError('runningMean and runningVar are required with options.renorm (r and d compare the batch with them), received undefined');
  }
  if (opts.renorm !== null && opts.virtualBatchSize !== null) {
    throw new RangeError('options.renorm and options.virtualBatchSize cannot be combined: give one of them (the other null)');
  }
  const chunks = virtualBatches(opts.virtualBatchSize, shape.dims);
  const M = chunks === 1 ? shape.perChannel : chunks === 0 ? 0 : shape.perChannel / chunks;
  if (M === 1 && shape.elements > 0) {
    throw new RangeError(
      chunks === 1
        ? `x must have more than 1 value per channel when training, received shape [${shape.dims.join(', ')}] with 1 value per channel`
        : `x must have more than 1 value per channel in each virtual batch when training, received shape [${shape.dims.join(', ')}] with options.virtualBatchSize ${opts.virtualBatchSize} (1 value per channel per virtual batch)`,
    );
  }
  const statistics = chunks * C;
  const per = chunks === 1 ? 'its channel dim' : 'N / virtualBatchSize · C';
  const y = output(yValue, 'out.y', dtype, shape.elements, shape.dims, 'its product');
  const mean = output(meanValue, 'out.mean', dtype, statistics, shape.dims, per);
  const invStd = output(invStdValue, 'out.invStd', dtype, statistics, shape.dims, per);
  const empty = shape.elements === 0;
  if (!defer || empty) {
    const arrays = [y, mean, invStd, runningMean, runningVar, x, gamma, beta, residual];
    checkNoOverlap(TRAIN_NAMES, arrays, 5, 0, 5, 0, 8);
    if (async) checkAllFixed(TRAIN_NAMES, arrays);
  }
  if (empty) {
    typedArrayFill(mean, NaN);
    typedArrayFill(invStd, NaN);
  }
  const running = runningMean !== null && runningVar !== null && !empty;
  // Batch Renormalization is the train kernel's flag renorm (README "BatchNorm variants"): r and d
  // per channel between the statistics and the normalisation, in the same pass over x.
  let renorm: PreparedTrain['renorm'] = null;
  if (opts.renorm !== null) {
    const r = allocateFloat(dtype, C, 'r', `shape [${shape.dims.join(', ')}] (its channel dim)`);
    const d = allocateFloat(dtype, C, 'd', `shape [${shape.dims.join(', ')}] (its channel dim)`);
    if (empty) {
      typedArrayFill(r, NaN);
      typedArrayFill(d, NaN);
    }
    renorm = { r, d };
  }
  const flags = (opts.activation === 'relu' ? Flag.relu : 0) | (opts.skipNonFiniteUpdate ? Flag.skipNonFinite : 0) | (residual !== null ? Flag.residual : 0);
  const factor = running ? momentumFactor(opts.momentum, numBatchesTracked) : 0;
  const varScale = running ? unbiasedScale(opts.unbiasedRunningVar, M) : 1;
  const norm = batchNormDescriptor(Phase.train, dtype, shape, flags, opts.eps, factor, varScale, opts.renorm, chunks);
  const t = norm.tensors;
  t[Slot.x] = x;
  t[Slot.gamma] = gamma;
  t[Slot.beta] = beta;
  t[Slot.y] = y;
  t[Slot.mean] = mean;
  t[Slot.invStd] = invStd;
  if (running) {
    t[Slot.runningMean] = runningMean;
    t[Slot.runningVar] = runningVar;
  }
  if (renorm) {
    t[Slot.r] = renorm.r;
    t[Slot.d] = renorm.d;
  }
  t[Slot.residual] = residual;
  return { norm, y, mean, invStd, numBatchesTracked, empty, renorm };
}

function trainResult(p: PreparedTrain, updated: boolean): TrainResult {
  const result: TrainResult = { y: p.y, mean: p.mean, invStd: p.invStd, updated, numBatchesTracked: nextCount(p.numBatchesTracked, updated) };
  if (p.renorm) {
    result.r = p.renorm.r;
    result.d = p.renorm.d;
  }
  return result;
}

/**
 * Training forward with batch statistics, per channel:
 *   μ = Σx/M, σ² = Σ(x−μ)²/M, invStd = 1/sqrt(σ² + eps), y = gamma·(x−μ)·invStd + beta (then ReLU).
 * When `runningMean`/`runningVar` are given they are updated in place:
 *   running = momentum·running + (1−momentum)·batch, with σ²·M/(M−1) entering runningVar by default;
 *   momentum null: the cumulative average, the new batch weighted 1/(numBatchesTracked+1).
 * Shapes: x has `shape` (rank >= 2); every parameter has length C. Returns y with the saved
 * mean and invStd that {@link batchNormBackward} needs.
 * Variants (README "BatchNorm variants"): `renorm: { rmax, dmax }` (Batch Renormalization, needs
 * the running statistics): y = γ·((x−μ)·invStd·r + d) + β with r = clip(σ_B/σ, 1/rmax, rmax),
 * d = clip((μ − runningMean)/σ, −dmax, dmax), σ = sqrt(runningVar + eps) before the update; the
 * result adds r and d. `virtualBatchSize: v` (ghost BatchNorm, v divides N): statistics per chunk
 * of v samples, mean/invStd of length N/v·C at chunk·C + c, the running statistics updated once
 * with the chunks' mean statistics (each chunk's variance unbiased over its own v·spatial values).
 * `residual` z (x's shape and type; BatchNorm + residual add + ReLU, README "BatchNorm variants"):
 * y = act(BN(x) + z), BN(x) rounded to x's type before the add; out.y may be x or z itself.
 * @throws TypeError for wrong types; RangeError for wrong lengths, shapes or options, and for
 *   M = 1 (one value per channel cannot be normalised with batch statistics).
 */
export function batchNormTrain<T extends FloatArray>(
  inputs: TrainInputs<T>,
  options?: TrainOptions & FamilyOptions,
  out?: TrainOut<T>,
): TrainResult<T> {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = prepareTrain(inputs, options, out, false, defer);
  if (p.empty) return trainResult(p, false) as TrainResult<T>;
  const ran = defer ? runDeferred(b, p.norm, TRAIN_NAMES, TRAIN_SLOTS, 5, 0, 5, 0, 8) : b.run(p.norm);
  releaseNorm(p.norm);
  return trainResult(p, ran === 1) as TrainResult<T>;
}

/** {@link batchNormTrain} off the calling thread where the backend can (native); same result. */
export async function batchNormTrainAsync<T extends FloatArray>(
  inputs: TrainInputs<T>,
  options?: TrainOptions & FamilyOptions,
  out?: TrainOut<T>,
): Promise<TrainResult<T>> {
  const b = getBackend();
  const p = prepareTrain(inputs, options, out, true);
  if (p.empty) return trainResult(p, false) as TrainResult<T>;
  const ran = await runAsync(b, p.norm);
  releaseNorm(p.norm);
  return trainResult(p, ran === 1) as TrainResult<T>;
}

// ---------------------------------------------------------------------------------------------
// Inference

/** The descriptor, or null when x is empty (nothing to compute), and y. */
function prepareInfer(inputs: unknown, options: unknown, outArg: unknown, async: boolean, defer = false): { norm: Norm | null; y: FloatArray } {
  const opts = parseOptions(options, INFER_OPTIONS, 'batchNormInfer');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const shapeValue = input.shape;
  const runningMeanValue = input.runningMean;
  const runningVarValue = input.runningVar;
  const gammaValue = input.gamma;
  const betaValue = input.beta;
  const residualValue = input.residual;
  const dims = readShape(shapeValue);
  const yValue = checkOut(outArg)?.y;
  // no caller code runs from here on
  return checkInfer(opts, xValue, shapeOf(dims, opts.layout), runningMeanValue, runningVarValue, gammaValue, betaValue, yValue, residualValue, async, defer);
}

/** Step 2 of an inference call (see checkTrain). */
function checkInfer(
  opts: Readonly<ParsedOptions>,
  xValue: unknown,
  shape: Shape,
  runningMeanValue: unknown,
  runningVarValue: unknown,
  gammaValue: unknown,
  betaValue: unknown,
  yValue: unknown,
  residualValue: unknown,
  async: boolean,
  defer = false,
): { norm: Norm | null; y: FloatArray } {
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const C = shape.geometry.channels;
  const runningMean = checkFloatArray(runningMeanValue, 'runningMean', dtype, C);
  const runningVar = checkFloatArray(runningVarValue, 'runningVar', dtype, C);
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, C);
  const beta = checkOptionalFloatArray(betaValue, 'beta', dtype, C);
  const residual = checkOptionalFloatArray(residualValue, 'residual', dtype, shape.elements);
  const y = output(yValue, 'out.y', dtype, shape.elements, shape.dims, 'its product');
  if (!defer || shape.elements === 0) {
    const arrays = [y, x, runningMean, runningVar, gamma, beta, residual];
    checkNoOverlap(INFER_NAMES, arrays, 1, 0, 1, 0, 6);
    if (async) checkAllFixed(INFER_NAMES, arrays);
  }
  if (shape.elements === 0) return { norm: null, y };
  const flags = (opts.activation === 'relu' ? Flag.relu : 0) | (residual !== null ? Flag.residual : 0);
  const norm = batchNormDescriptor(Phase.infer, dtype, shape, flags, opts.eps);
  const t = norm.tensors;
  t[Slot.x] = x;
  t[Slot.runningMean] = runningMean;
  t[Slot.runningVar] = runningVar;
  t[Slot.gamma] = gamma;
  t[Slot.beta] = beta;
  t[Slot.y] = y;
  t[Slot.residual] = residual;
  return { norm, y };
}

/**
 * Inference with the running statistics, per channel:
 *   y = gamma·(x − runningMean)/sqrt(runningVar + eps) + beta (then ReLU),
 * computed as one fused multiply-add per element, plus `residual` z before the activation when
 * given (y = act(BN(x) + z), as {@link batchNormTrain}). Nothing but y is written.
 * @throws TypeError / RangeError as {@link batchNormTrain}.
 */
export function batchNormInfer<T extends FloatArray>(
  inputs: InferInputs<T>,
  options?: InferOptions & FamilyOptions,
  out?: { y?: T },
): { y: T } {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = prepareInfer(inputs, options, out, false, defer);
  if (p.norm) {
    if (defer) runDeferred(b, p.norm, INFER_NAMES, INFER_SLOTS, 1, 0, 1, 0, 6);
    else b.run(p.norm);
    releaseNorm(p.norm);
  }
  return { y: p.y as T };
}

/** {@link batchNormInfer} off the calling thread where the backend can (native). */
export async function batchNormInferAsync<T extends FloatArray>(
  inputs: InferInputs<T>,
  options?: InferOptions & FamilyOptions,
  out?: { y?: T },
): Promise<{ y: T }> {
  const b = getBackend();
  const p = prepareInfer(inputs, options, out, true);
  if (p.norm) {
    await runAsync(b, p.norm);
    releaseNorm(p.norm);
  }
  return { y: p.y as T };
}

// ---------------------------------------------------------------------------------------------
// Backward

/** The descriptor, or null when x is empty (dgamma and dbeta are then 0), and the outputs. */
function prepareBackward(
  inputs: unknown,
  options: unknown,
  outArg: unknown,
  async: boolean,
  defer = false,
): PreparedBackward {
  const opts = parseOptions(options, BACKWARD_OPTIONS, 'batchNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const shapeValue = input.shape;
  const meanValue = input.mean;
  const invStdValue = input.invStd;
  const gammaValue = input.gamma;
  const yValue = input.y;
  const rValue = input.r;
  const dValue = input.d;
  const residualValue = input.residual;
  const dims = readShape(shapeValue);
  const out = checkOut(outArg);
  const dxValue = out?.dx;
  const dgammaValue = out?.dgamma;
  const dbetaValue = out?.dbeta;
  const dzValue = out?.dz;
  // no caller code runs from here on
  return checkBackward(opts, dyValue, xValue, shapeOf(dims, opts.layout), meanValue, invStdValue, gammaValue, yValue, rValue, dValue, dxValue, dgammaValue, dbetaValue, residualValue, dzValue, async, defer);
}

type PreparedBackward = { norm: Norm | null; result: BackwardResult; renorm: { r: FloatArray; d: FloatArray } | null };

/** Step 2 of a backward call (see checkTrain). */
function checkBackward(
  opts: Readonly<ParsedOptions>,
  dyValue: unknown,
  xValue: unknown,
  shape: Shape,
  meanValue: unknown,
  invStdValue: unknown,
  gammaValue: unknown,
  yValue: unknown,
  rValue: unknown,
  dValue: unknown,
  dxValue: unknown,
  dgammaValue: unknown,
  dbetaValue: unknown,
  residualValue: unknown,
  dzValue: unknown,
  async: boolean,
  defer = false,
): PreparedBackward {
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const dy = checkFloatArray(dyValue, 'dy', dtype, shape.elements);
  const C = shape.geometry.channels;
  const chunks = virtualBatches(opts.virtualBatchSize, shape.dims);
  const mean = checkFloatArray(meanValue, 'mean', dtype, chunks * C);
  const invStd = checkFloatArray(invStdValue, 'invStd', dtype, chunks * C);
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, C);
  const r = checkOptionalFloatArray(rValue, 'r', dtype, C);
  const d = checkOptionalFloatArray(dValue, 'd', dtype, C);
  if ((r === null) !== (d === null)) {
    throw new TypeError(`r and d (Batch Renormalization) must be given together, received r ${describe(rValue)} and d ${describe(dValue)}`);
  }
  if (r !== null && chunks !== 1) {
    throw new RangeError('r and d (Batch Renormalization) cannot be combined with options.virtualBatchSize');
  }
  const y = checkOptionalFloatArray(yValue, 'y', dtype, shape.elements);
  if (opts.activation === 'relu' && y === null) {
    throw new TypeError(`y (the forward output) is required with activation 'relu', received ${describe(yValue)}`);
  }
  if (opts.activation === 'none' && y !== null) {
    throw new RangeError(`y is only used with activation 'relu', received it with activation 'none'`);
  }
  const dx = output(dxValue, 'out.dx', dtype, shape.elements, shape.dims, 'its product');
  const dgamma = output(dgammaValue, 'out.dgamma', dtype, C, shape.dims, 'its channel dim');
  const dbeta = output(dbetaValue, 'out.dbeta', dtype, C, shape.dims, 'its channel dim');
  // The residual only says that the forward had one (its values are not read: the mask is y's).
  const residual = checkOptionalFloatArray(residualValue, 'residual', dtype, shape.elements);
  if (residual === null && dzValue !== undefined && dzValue !== null) {
    throw new RangeError(`out.dz is only written with inputs.residual (the forward call's residual), received out.dz without it`);
  }
  const dz = residual === null ? null : output(dzValue, 'out.dz', dtype, shape.elements, shape.dims, 'its product');
  if (!defer || shape.elements === 0 || r !== null) {
    const arrays = [dx, dgamma, dbeta, dz, dy, x, mean, invStd, gamma, y, r, d];
    checkNoOverlap(BACKWARD_NAMES, arrays, 4, 0, 4, 3, 4);
    if (async) checkAllFixed(BACKWARD_NAMES, arrays);
  }
  const result: BackwardResult = dz === null ? { dx, dgamma, dbeta } : { dx, dgamma, dbeta, dz };
  if (shape.elements === 0) {
    typedArrayFill(dgamma, 0);
    typedArrayFill(dbeta, 0);
    return { norm: null, result, renorm: null };
  }
  const flags = (opts.activation === 'relu' ? Flag.relu : 0) | (opts.training ? Flag.training : 0) | (dz !== null ? Flag.residual : 0);
  const norm = batchNormDescriptor(Phase.backward, dtype, shape, flags, 0, 0, 1, null, chunks);
  const t = norm.tensors;
  t[Slot.dy] = dy;
  t[Slot.x] = x;
  t[Slot.mean] = mean;
  t[Slot.invStd] = invStd;
  t[Slot.gamma] = r === null ? gamma : renormScale(gamma, r, dtype);
  t[Slot.y] = y;
  t[Slot.dx] = dx;
  t[Slot.dgamma] = dgamma;
  t[Slot.dbeta] = dbeta;
  t[Slot.dz] = dz;
  return { norm, result, renorm: r === null ? null : { r, d: d! } };
}

/**
 * Backward of batch normalisation. With x̂ = (x − mean)·invStd (and dy masked by y > 0 under
 * activation 'relu'), per channel:
 *   dbeta = Σdy, dgamma = Σdy·x̂,
 *   training (default): dx = gamma·invStd/M · (M·dy − dbeta − x̂·dgamma);
 *   training: false (the statistics were constants): dx = dy·gamma·invStd.
 * Batch Renormalization (inputs `r`, `d` from the forward result, constants): dx as above with
 * gamma·r for gamma, dgamma = Σdy·(x̂·r + d). Ghost BatchNorm (`virtualBatchSize` as in the
 * forward call): mean/invStd per (chunk, channel), dx per chunk, dgamma/dbeta summed over chunks.
 * With the forward call's `residual` (not read: the mask is y's), the result adds dz = the masked
 * dy (the gradient of the residual), written in the dx pass into out.dz or a new array (never dy
 * itself unless out.dz is dy; out.dx and out.dz may not both be dy).
 * @throws TypeError / RangeError as {@link batchNormTrain}; `y` is required exactly with 'relu'.
 */
export function batchNormBackward<T extends FloatArray>(
  inputs: BackwardInputs<T>,
  options?: BackwardOptions & FamilyOptions,
  out?: BackwardOut<T>,
): BackwardResult<T> {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = prepareBackward(inputs, options, out, false, defer);
  if (p.norm) {
    if (defer) runDeferred(b, p.norm, BACKWARD_NAMES, BACKWARD_SLOTS, 4, 0, 4, 3, 4);
    else b.run(p.norm);
    releaseNorm(p.norm);
  }
  if (p.norm && p.renorm) renormDgamma(p.result.dgamma, p.result.dbeta, p.renorm.r, p.renorm.d);
  return p.result as BackwardResult<T>;
}

/** {@link batchNormBackward} off the calling thread where the backend can (native). */
export async function batchNormBackwardAsync<T extends FloatArray>(
  inputs: BackwardInputs<T>,
  options?: BackwardOptions & FamilyOptions,
  out?: BackwardOut<T>,
): Promise<BackwardResult<T>> {
  const b = getBackend();
  const p = prepareBackward(inputs, options, out, true);
  if (p.norm) {
    await runAsync(b, p.norm);
    releaseNorm(p.norm);
  }
  if (p.norm && p.renorm) renormDgamma(p.result.dgamma, p.result.dbeta, p.renorm.r, p.renorm.d);
  return p.result as BackwardResult<T>;
}

// ---------------------------------------------------------------------------------------------
// The layer's calls (lib/layer.ts)
//
// A layer's options are its own, checked once when it was made: it passes them parsed, and its
// own arrays and the caller's x, shape (read by readShape; the Shape it derived, kept for the
// backward and for the next step of the same dims), dy and out values positionally, so a step
// skips parseOptions, the reads of the argument objects and re-deriving the shape. Every check
// of step 2 runs as in the public functions, on every call.

/** @internal batchNormTrain for the BatchNorm layer: `opts` as parseOptions returns them for TRAIN_OPTIONS. */
export function layerTrain(
  opts: Readonly<ParsedOptions>,
  x: unknown,
  shape: Shape,
  gamma: FloatArray | null,
  beta: FloatArray | null,
  runningMean: FloatArray | null,
  runningVar: FloatArray | null,
  numBatchesTracked: number,
  y: unknown,
  mean: FloatArray | undefined,
  invStd: FloatArray | undefined,
  residual: unknown = null,
): TrainResult {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = checkTrain(opts, x, shape, gamma, beta, runningMean, runningVar, numBatchesTracked, y, mean, invStd, residual, false, defer);
  if (p.empty) return trainResult(p, false);
  const ran = defer ? runDeferred(b, p.norm, TRAIN_NAMES, TRAIN_SLOTS, 5, 0, 5, 0, 8) : b.run(p.norm);
  releaseNorm(p.norm);
  return trainResult(p, ran === 1);
}

/** @internal batchNormInfer for the BatchNorm layer (opts for INFER_OPTIONS). */
export function layerInfer(
  opts: Readonly<ParsedOptions>,
  x: unknown,
  shape: Shape,
  runningMean: FloatArray,
  runningVar: FloatArray,
  gamma: FloatArray | null,
  beta: FloatArray | null,
  y: unknown,
  residual: unknown = null,
): FloatArray {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = checkInfer(opts, x, shape, runningMean, runningVar, gamma, beta, y, residual, false, defer);
  if (p.norm) {
    if (defer) runDeferred(b, p.norm, INFER_NAMES, INFER_SLOTS, 1, 0, 1, 0, 6);
    else b.run(p.norm);
    releaseNorm(p.norm);
  }
  return p.y;
}

/** @internal batchNormBackward for the BatchNorm layer (opts for BACKWARD_OPTIONS). */
export function layerBackward(
  opts: Readonly<ParsedOptions>,
  dy: unknown,
  x: FloatArray,
  shape: Shape,
  mean: FloatArray,
  invStd: FloatArray,
  gamma: FloatArray | null,
  y: FloatArray | null,
  r: FloatArray | null,
  d: FloatArray | null,
  dx: unknown,
  dgamma: FloatArray | undefined,
  dbeta: FloatArray | undefined,
  residual: unknown = null,
  dz: unknown = undefined,
): BackwardResult {
  const b = getBackend();
  const defer = defersOverlap(b);
  const p = checkBackward(opts, dy, x, shape, mean, invStd, gamma, y, r, d, dx, dgamma, dbeta, residual, dz, false, defer);
  if (p.norm) {
    if (defer) runDeferred(b, p.norm, BACKWARD_NAMES, BACKWARD_SLOTS, 4, 0, 4, 3, 4);
    else b.run(p.norm);
    releaseNorm(p.norm);
  }
  if (p.norm && p.renorm) renormDgamma(p.result.dgamma, p.result.dbeta, p.renorm.r, p.renorm.d);
  return p.result;
}

// ---------------------------------------------------------------------------------------------
// Statistics and the running update on their own

/**
 * Per-channel statistics: mean = Σx/M and the biased variance Σ(x − mean)²/M.
 * Zero values per channel give NaN.
 */
export function moments<T extends FloatArray>(
  inputs: MomentsInputs<T>,
  options?: { layout?: Layout } & FamilyOptions,
  out?: { mean?: T; variance?: T },
): MomentsResult<T> {
  const backend = getBackend();
  const opts = parseOptions(options, MOMENTS_OPTIONS, 'moments');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const dims = readShape(input.shape);
  const o = checkOut(out);
  const meanValue = o?.mean;
  const varianceValue = o?.variance;
  // no caller code runs from here on
  const shape = shapeOf(dims, opts.layout);
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const C = shape.geometry.channels;
  const mean = output(meanValue, 'out.mean', dtype, C, shape.dims, 'its channel dim');
  const variance = output(varianceValue, 'out.variance', dtype, C, shape.dims, 'its channel dim');
  checkNoOverlap(MOMENTS_NAMES, [mean, variance, x], 2);
  if (shape.elements === 0) {
    typedArrayFill(mean, NaN);
    typedArrayFill(variance, NaN);
  } else {
    const norm = batchNormDescriptor(Phase.moments, dtype, shape, 0);
    norm.tensors[Slot.x] = x;
    norm.tensors[Slot.mean] = mean;
    norm.tensors[Slot.variance] = variance;
    backend.run(norm);
    releaseNorm(norm);
  }
  return { mean, variance } as MomentsResult<T>;
}

/**
 * Folds batch statistics computed elsewhere (e.g. synchronised across workers) into the
 * running ones, in place: running = momentum·running + (1−momentum)·batch, the variance
 * scaled by count/(count−1) when unbiasedRunningVar (default). count = 0 updates nothing.
 */
export function updateRunningStats<T extends FloatArray>(
  inputs: UpdateRunningStatsInputs<T>,
  options?: UpdateRunningStatsOptions & FamilyOptions,
): UpdateRunningStatsResult {
  const backend = getBackend();
  const opts = parseOptions(options, UPDATE_OPTIONS, 'updateRunningStats');
  const input = checkObject(inputs, 'inputs');
  const runningMeanValue = input.runningMean;
  const runningVarValue = input.runningVar;
  const meanValue = input.mean;
  const varianceValue = input.variance;
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  const countValue = input.count; // read once
  if (opts.unbiasedRunningVar && countValue === undefined) {
    throw new TypeError('count (values per channel) is required with unbiasedRunningVar, received undefined');
  }
  const count = countValue === undefined ? 2 : checkCount(countValue, 'count');
  if (opts.unbiasedRunningVar && count === 1) {
    throw new RangeError('count must be 0 or > 1 for the unbiased running variance, received 1');
  }
  // no caller code runs from here on
  const runningMean = checkFloatArray(runningMeanValue, 'runningMean');
  const dtype = dtypeOf(runningMean)!;
  const C = typedArrayLength(runningMean);
  const runningVar = checkFloatArray(runningVarValue, 'runningVar', dtype, C);
  const batchMean = checkFloatArray(meanValue, 'mean', dtype, C);
  const batchVar = checkFloatArray(varianceValue, 'variance', dtype, C);
  checkNoOverlap(UPDATE_NAMES, [runningMean, runningVar, batchMean, batchVar], 2);
  if (count === 0) return { numBatchesTracked, updated: false };
  const norm = makeNorm(Phase.update, runningMean, { samples: 1, outer: 0, stats: C, inner: 0 }, { groups: C, size: 1, run: 1 }, {
    factor: momentumFactor(opts.momentum, numBatchesTracked),
    varScale: unbiasedScale(opts.unbiasedRunningVar, count),
    skipNonFinite: opts.skipNonFiniteUpdate,
  });
  const t = norm.tensors;
  t[Slot.runningMean] = runningMean;
  t[Slot.runningVar] = runningVar;
  t[Slot.mean] = batchMean;
  t[Slot.variance] = batchVar;
  const updated = backend.run(norm) === 1;
  releaseNorm(norm);
  return { numBatchesTracked: nextCount(numBatchesTracked, updated), updated };
}
