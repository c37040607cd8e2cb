/**
 * The public functions. Each one validates its whole call (lib/validate.ts), allocates what the
 * caller did not provide, and hands the backend one kernel call; so every backend shares every
 * line of argument handling, and a call that throws has written nothing.
 */
import type { Backend, BackwardArgs, FloatArray, InferArgs, MomentsArgs, TrainArgs } from './backend.js';
import { getBackend } from './registry.js';
import {
  checkCount,
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  checkTensor,
  describe,
  dtypeOf,
  parseOptions,
  type Activation,
  type DType,
  type Layout,
} from './validate.js';

export type { FloatArray } from './backend.js';
export type { Activation, Layout } from './validate.js';

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
}

export interface TrainOut<T extends FloatArray = FloatArray> {
  /** may be `x` itself (in place) */
  y?: T;
  mean?: T;
  invStd?: T;
}

export interface TrainResult<T extends FloatArray = FloatArray> {
  y: T;
  /** batch mean per channel (what backward needs) */
  mean: T;
  /** 1/sqrt(batch variance + eps) per channel (what backward needs) */
  invStd: T;
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
}

export interface BackwardOptions {
  layout?: Layout;
  activation?: Activation;
  /** true (default): the statistics were the batch's own; false: they were constants (eval mode) */
  training?: boolean;
}

export interface BackwardOut<T extends FloatArray = FloatArray> {
  /** may be `dy` itself (in place) */
  dx?: T;
  dgamma?: T;
  dbeta?: T;
}

export interface BackwardResult<T extends FloatArray = FloatArray> {
  dx: T;
  dgamma: T;
  dbeta: T;
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

export interface UpdateRunningStatsResult {
  numBatchesTracked: number;
  updated: boolean;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function allocate(dtype: DType, length: number): FloatArray {
  return dtype === 'float32' ? new Float32Array(length) : new Float64Array(length);
}

/** The caller's `out[name]` checked, or a new array. */
function output(out: Record<string, unknown> | undefined, name: string, dtype: DType, length: number): FloatArray {
  const given = out?.[name];
  return given === undefined || given === null
    ? allocate(dtype, length)
    : checkFloatArray(given, `out.${name}`, dtype, length);
}

function checkOut(out: unknown): Record<string, unknown> | undefined {
  return out === undefined || out === null ? undefined : checkObject(out, 'out');
}

type Named = { name: string; array: FloatArray };
function named(record: Record<string, FloatArray | null>): Named[] {
  return Object.entries(record)
    .filter((e): e is [string, FloatArray] => e[1] !== null)
    .map(([name, array]) => ({ name, array }));
}

function momentumFactor(momentum: number | null, numBatchesTracked: number): number {
  return momentum === null ? 1 / (numBatchesTracked + 1) : 1 - momentum;
}

function unbiasedScale(unbiased: boolean, count: number): number {
  return unbiased ? count / (count - 1) : 1;
}

// ---------------------------------------------------------------------------------------------
// Training forward

interface Prepared<A, R> {
  args: A;
  /** builds the result from the backend's return value */
  result: (value: unknown) => R;
  /** nothing to compute (zero elements): the result is ready */
  empty: boolean;
}

function prepareTrain(inputs: unknown, options: unknown, outArg: unknown): Prepared<TrainArgs, TrainResult> {
  const opts = parseOptions(
    options,
    ['eps', 'momentum', 'unbiasedRunningVar', 'layout', 'activation', 'skipNonFiniteUpdate'],
    'batchNormTrain',
  );
  const input = checkObject(inputs, 'inputs');
  const { x, dtype, shape } = checkTensor(input.x, 'x', input.shape, opts.layout);
  const C = shape.geometry.channels;
  const gamma = checkOptionalFloatArray(input.gamma, 'gamma', dtype, C);
  const beta = checkOptionalFloatArray(input.beta, 'beta', dtype, C);
  const runningMean = checkOptionalFloatArray(input.runningMean, 'runningMean', dtype, C);
  const runningVar = checkOptionalFloatArray(input.runningVar, 'runningVar', dtype, C);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new TypeError(
      `runningMean and runningVar must be given together, received runningMean ${describe(input.runningMean)} and runningVar ${describe(input.runningVar)}`,
    );
  }
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  const M = shape.perChannel;
  if (M === 1 && shape.elements > 0) {
    throw new RangeError(
      `x must have more than 1 value per channel when training, received shape [${shape.dims.join(', ')}] with 1 value per channel`,
    );
  }
  const out = checkOut(outArg);
  const y = output(out, 'y', dtype, shape.elements);
  const mean = output(out, 'mean', dtype, C);
  const invStd = output(out, 'invStd', dtype, C);
  checkNoOverlap(
    named({ 'out.y': y, 'out.mean': mean, 'out.invStd': invStd, runningMean, runningVar }),
    named({ x, gamma, beta }),
    [['out.y', 'x']],
  );
  const empty = shape.elements === 0;
  if (empty) {
    mean.fill(NaN);
    invStd.fill(NaN);
  }
  const running =
    runningMean && runningVar && !empty
      ? {
          runningMean,
          runningVar,
          factor: momentumFactor(opts.momentum, numBatchesTracked),
          varScale: unbiasedScale(opts.unbiasedRunningVar, M),
          skipNonFinite: opts.skipNonFiniteUpdate,
        }
      : null;
  return {
    args: { x, geometry: shape.geometry, gamma, beta, eps: opts.eps, relu: opts.activation === 'relu', y, mean, invStd, running },
    empty,
    result: (updated) => ({
      y,
      mean,
      invStd,
      updated: updated === true,
      numBatchesTracked: numBatchesTracked + (updated === true ? 1 : 0),
    }),
  };
}

/**
 * Training forward with batch statistics, per channel:
 *   μ = Σx/M, σ² = Σ(x−μ)²/M, invStd = 1/sqrt(σ² + eps), y = gamma·(x−μ)·invStd + beta (then ReLU).
 * When `runningMean`/`runningVar` are given they are updated in place:
 *   running = momentum·running + (1−momentum)·batch, with σ²·M/(M−1) entering runningVar by default;
 *   momentum null: the cumulative average, the new batch weighted 1/(numBatchesTracked+1).
 * Shapes: x has `shape` (rank >= 2); every parameter has length C. Returns y with the saved
 * mean and invStd that {@link batchNormBackward} needs.
 * @throws TypeError for wrong types; RangeError for wrong lengths, shapes or options, and for
 *   M = 1 (one value per channel cannot be normalised with batch statistics).
 */
export function batchNormTrain<T extends FloatArray>(
  inputs: TrainInputs<T>,
  options?: TrainOptions,
  out?: TrainOut<T>,
): TrainResult<T> {
  return run(prepareTrain(inputs, options, out), (b, a) => b.train(a)) as TrainResult<T>;
}

/** {@link batchNormTrain} off the calling thread where the backend can (native); same result. */
export async function batchNormTrainAsync<T extends FloatArray>(
  inputs: TrainInputs<T>,
  options?: TrainOptions,
  out?: TrainOut<T>,
): Promise<TrainResult<T>> {
  return (await runAsync(prepareTrain(inputs, options, out), (b, a) =>
    b.trainAsync ? b.trainAsync(a) : b.train(a),
  )) as TrainResult<T>;
}

// ---------------------------------------------------------------------------------------------
// Inference

function prepareInfer(inputs: unknown, options: unknown, outArg: unknown): Prepared<InferArgs, { y: FloatArray }> {
  const opts = parseOptions(options, ['eps', 'layout', 'activation'], 'batchNormInfer');
  const input = checkObject(inputs, 'inputs');
  const { x, dtype, shape } = checkTensor(input.x, 'x', input.shape, opts.layout);
  const C = shape.geometry.channels;
  const runningMean = checkFloatArray(input.runningMean, 'runningMean', dtype, C);
  const runningVar = checkFloatArray(input.runningVar, 'runningVar', dtype, C);
  const gamma = checkOptionalFloatArray(input.gamma, 'gamma', dtype, C);
  const beta = checkOptionalFloatArray(input.beta, 'beta', dtype, C);
  const y = output(checkOut(outArg), 'y', dtype, shape.elements);
  checkNoOverlap(named({ 'out.y': y }), named({ x, runningMean, runningVar, gamma, beta }), [['out.y', 'x']]);
  return {
    args: { x, geometry: shape.geometry, runningMean, runningVar, gamma, beta, eps: opts.eps, relu: opts.activation === 'relu', y },
    empty: shape.elements === 0,
    result: () => ({ y }),
  };
}

/**
 * Inference with the running statistics, per channel:
 *   y = gamma·(x − runningMean)/sqrt(runningVar + eps) + beta (then ReLU),
 * computed as one fused multiply-add per element. Nothing but y is written.
 * @throws TypeError / RangeError as {@link batchNormTrain}.
 */
export function batchNormInfer<T extends FloatArray>(
  inputs: InferInputs<T>,
  options?: InferOptions,
  out?: { y?: T },
): { y: T } {
  return run(prepareInfer(inputs, options, out), (b, a) => b.infer(a)) as { y: T };
}

/** {@link batchNormInfer} off the calling thread where the backend can (native). */
export async function batchNormInferAsync<T extends FloatArray>(
  inputs: InferInputs<T>,
  options?: InferOptions,
  out?: { y?: T },
): Promise<{ y: T }> {
  return (await runAsync(prepareInfer(inputs, options, out), (b, a) =>
    b.inferAsync ? b.inferAsync(a) : b.infer(a),
  )) as { y: T };
}

// ---------------------------------------------------------------------------------------------
// Backward

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown): Prepared<BackwardArgs, BackwardResult> {
  const opts = parseOptions(options, ['layout', 'activation', 'training'], 'batchNormBackward');
  const input = checkObject(inputs, 'inputs');
  const { x, dtype, shape } = checkTensor(input.x, 'x', input.shape, opts.layout);
  const dy = checkFloatArray(input.dy, 'dy', dtype, shape.elements);
  const C = shape.geometry.channels;
  const mean = checkFloatArray(input.mean, 'mean', dtype, C);
  const invStd = checkFloatArray(input.invStd, 'invStd', dtype, C);
  const gamma = checkOptionalFloatArray(input.gamma, 'gamma', dtype, C);
  const y = checkOptionalFloatArray(input.y, 'y', dtype, shape.elements);
  if (opts.activation === 'relu' && y === null) {
    throw new TypeError(`y (the forward output) is required with activation 'relu', received ${describe(input.y)}`);
  }
  if (opts.activation === 'none' && y !== null) {
    throw new RangeError(`y is only used with activation 'relu', received it with activation 'none'`);
  }
  const out = checkOut(outArg);
  const dx = output(out, 'dx', dtype, shape.elements);
  const dgamma = output(out, 'dgamma', dtype, C);
  const dbeta = output(out, 'dbeta', dtype, C);
  checkNoOverlap(
    named({ 'out.dx': dx, 'out.dgamma': dgamma, 'out.dbeta': dbeta }),
    named({ dy, x, mean, invStd, gamma, y }),
    [['out.dx', 'dy']],
  );
  const empty = shape.elements === 0;
  if (empty) {
    dgamma.fill(0);
    dbeta.fill(0);
  }
  return {
    args: { dy, x, geometry: shape.geometry, mean, invStd, gamma, y, training: opts.training, dx, dgamma, dbeta },
    empty,
    result: () => ({ dx, dgamma, dbeta }),
  };
}

/**
 * Backward of batch normalisation. With x̂ = (x − mean)·invStd (and dy masked by y > 0 under
 * activation 'relu'), per channel:
 *   dbeta = Σdy, dgamma = Σdy·x̂,
 *   training (default): dx = gamma·invStd/M · (M·dy − dbeta − x̂·dgamma);
 *   training: false (the statistics were constants): dx = dy·gamma·invStd.
 * @throws TypeError / RangeError as {@link batchNormTrain}; `y` is required exactly with 'relu'.
 */
export function batchNormBackward<T extends FloatArray>(
  inputs: BackwardInputs<T>,
  options?: BackwardOptions,
  out?: BackwardOut<T>,
): BackwardResult<T> {
  return run(prepareBackward(inputs, options, out), (b, a) => b.backward(a)) as BackwardResult<T>;
}

/** {@link batchNormBackward} off the calling thread where the backend can (native). */
export async function batchNormBackwardAsync<T extends FloatArray>(
  inputs: BackwardInputs<T>,
  options?: BackwardOptions,
  out?: BackwardOut<T>,
): Promise<BackwardResult<T>> {
  return (await runAsync(prepareBackward(inputs, options, out), (b, a) =>
    b.backwardAsync ? b.backwardAsync(a) : b.backward(a),
  )) as BackwardResult<T>;
}

// ---------------------------------------------------------------------------------------------
// Statistics and the running update on their own

/**
 * Per-channel statistics: mean = Σx/M and the biased variance Σ(x − mean)²/M.
 * Zero values per channel give NaN.
 */
export function moments<T extends FloatArray>(
  inputs: MomentsInputs<T>,
  options?: { layout?: Layout },
  out?: { mean?: T; variance?: T },
): MomentsResult<T> {
  const opts = parseOptions(options, ['layout'], 'moments');
  const input = checkObject(inputs, 'inputs');
  const { x, dtype, shape } = checkTensor(input.x, 'x', input.shape, opts.layout);
  const o = checkOut(out);
  const C = shape.geometry.channels;
  const mean = output(o, 'mean', dtype, C);
  const variance = output(o, 'variance', dtype, C);
  checkNoOverlap(named({ 'out.mean': mean, 'out.variance': variance }), named({ x }));
  const args: MomentsArgs = { x, geometry: shape.geometry, mean, variance };
  if (shape.elements === 0) {
    mean.fill(NaN);
    variance.fill(NaN);
  } else {
    getBackend().moments(args);
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
  options?: UpdateRunningStatsOptions,
): UpdateRunningStatsResult {
  const opts = parseOptions(options, ['momentum', 'unbiasedRunningVar', 'skipNonFiniteUpdate'], 'updateRunningStats');
  const input = checkObject(inputs, 'inputs');
  const runningMean = checkFloatArray(input.runningMean, 'runningMean');
  const dtype = dtypeOf(runningMean)!;
  const C = runningMean.length;
  const runningVar = checkFloatArray(input.runningVar, 'runningVar', dtype, C);
  const batchMean = checkFloatArray(input.mean, 'mean', dtype, C);
  const batchVar = checkFloatArray(input.variance, 'variance', dtype, C);
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  if (opts.unbiasedRunningVar && input.count === undefined) {
    throw new TypeError('count (values per channel) is required with unbiasedRunningVar, received undefined');
  }
  const count = input.count === undefined ? 2 : checkCount(input.count, 'count');
  if (opts.unbiasedRunningVar && count === 1) {
    throw new RangeError('count must be 0 or > 1 for the unbiased running variance, received 1');
  }
  checkNoOverlap(named({ runningMean, runningVar }), named({ mean: batchMean, variance: batchVar }));
  if (count === 0) return { numBatchesTracked, updated: false };
  const updated = getBackend().updateRunningStats({
    runningMean,
    runningVar,
    batchMean,
    batchVar,
    factor: momentumFactor(opts.momentum, numBatchesTracked),
    varScale: unbiasedScale(opts.unbiasedRunningVar, count),
    skipNonFinite: opts.skipNonFiniteUpdate,
  });
  return { numBatchesTracked: numBatchesTracked + (updated ? 1 : 0), updated };
}

// ---------------------------------------------------------------------------------------------

function run<A, R>(p: Prepared<A, R>, kernel: (backend: Backend, args: A) => unknown): R {
  return p.result(p.empty ? false : kernel(getBackend(), p.args));
}

async function runAsync<A, R>(p: Prepared<A, R>, kernel: (backend: Backend, args: A) => unknown): Promise<R> {
  return p.result(p.empty ? false : await kernel(getBackend(), p.args));
}
