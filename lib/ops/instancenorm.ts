/**
 * InstanceNorm (PyTorch's F.instance_norm): per (sample, channel) the mean and biased variance over
 * the spatial positions; y = (x − μ)·invStd·γ + β with optional per-channel γ, β. Optional running
 * statistics, PyTorch's rule: the running update uses the mean over the batch of the per-instance
 * means and (unbiased) variances; `useInputStats: false` normalises with them instead (eval).
 *
 * Descriptor (S = product of the spatial dims): samples N, stats C, γ/β one per channel
 * (groups C, size 1); channels-first outer 1, inner S; channels-last outer S, inner 1.
 */
import { Phase } from '../core/abi.js';
import { bind, callAsync, callSync, checkAllFixed, checkOut, momentumFactor, nextCount, output, type Prepared, unbiasedScale } from '../core/call.js';
import { makeNorm, type FloatArray, type Norm, type NormScalars } from '../core/descriptor.js';
import { typedArrayFill } from '../intrinsics.js';
import {
  checkCount,
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  describe,
  dtypeOf,
  parseOptions,
  readShape,
  type Activation,
  type Layout,
} from '../validate.js';
import type { FamilyOptions } from './batchnorm.js';
import { checkReluOutput, samplesOf, type Samples } from './shapes.js';

export interface InstanceNormInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
  gamma?: T | null;
  beta?: T | null;
  /** running statistics per channel, updated in place when both are given (and useInputStats) */
  runningMean?: T | null;
  runningVar?: T | null;
  numBatchesTracked?: number;
}

export interface InstanceNormOptions {
  /** default 1e-5 */
  eps?: number;
  /** weight of the OLD running value (default 0.9 = PyTorch's momentum 0.1); null: cumulative average */
  momentum?: number | null;
  layout?: Layout;
  activation?: Activation;
  /** true (default): the input's statistics; false: the running ones (required then) */
  useInputStats?: boolean;
  unbiasedRunningVar?: boolean;
  skipNonFiniteUpdate?: boolean;
}

export interface InstanceNormResult<T extends FloatArray = FloatArray> {
  y: T;
  /** the statistics y was normalised with, length N·C, index n·C + c */
  mean: T;
  invStd: T;
  numBatchesTracked: number;
  /** whether the running statistics were written */
  updated: boolean;
}

export interface InstanceNormBackwardInputs<T extends FloatArray = FloatArray> {
  dy: T;
  x: T;
  shape: readonly number[];
  mean: T;
  invStd: T;
  gamma?: T | null;
  y?: T | null;
}

export interface InstanceNormBackwardResult<T extends FloatArray = FloatArray> {
  dx: T;
  dgamma: T;
  dbeta: T;
}

function instanceDescriptor(phase: (typeof Phase)[keyof typeof Phase], x: FloatArray, p: Samples, s: NormScalars): Norm {
  return p.layout === 'channels-first'
    ? makeNorm(phase, x, { samples: p.n, outer: 1, stats: p.c, inner: p.s }, { groups: p.c, size: 1, run: 1 }, s)
    : makeNorm(phase, x, { samples: p.n, outer: p.s, stats: p.c, inner: 1 }, { groups: p.c, size: 1, run: 1 }, s);
}

const FORWARD_NAMES = ['out.y', 'out.mean', 'out.invStd', 'runningMean', 'runningVar', 'x', 'gamma', 'beta'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dgamma', 'out.dbeta', 'dy', 'x', 'mean', 'invStd', 'gamma', 'y'] as const;
const FORWARD_OPTIONS = ['eps', 'momentum', 'layout', 'activation', 'useInputStats', 'unbiasedRunningVar', 'skipNonFiniteUpdate'] as const;

function prepareForward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<InstanceNormResult> {
  const opts = parseOptions(options, FORWARD_OPTIONS, 'instanceNorm');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const dims = readShape(input.shape);
  const gammaValue = input.gamma;
  const betaValue = input.beta;
  const runningMeanValue = input.runningMean;
  const runningVarValue = input.runningVar;
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  const out = checkOut(outArg);
  const yValue = out?.y;
  const meanValue = out?.mean;
  const invStdValue = out?.invStd;
  // no caller code runs from here on
  const p = samplesOf(dims, opts.layout);
  const x = checkFloatArray(xValue, 'x', undefined, p.elements);
  const dtype = dtypeOf(x)!;
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, p.c);
  const beta = checkOptionalFloatArray(betaValue, 'beta', dtype, p.c);
  const runningMean = checkOptionalFloatArray(runningMeanValue, 'runningMean', dtype, p.c);
  const runningVar = checkOptionalFloatArray(runningVarValue, 'runningVar', dtype, p.c);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new TypeError(
      `runningMean and runningVar must be given together, received runningMean ${describe(runningMeanValue)} and runningVar ${describe(runningVarValue)}`,
    );
  }
  if (!opts.useInputStats && runningMean === null) {
    throw new TypeError('runningMean and runningVar are required with useInputStats: false, received undefined');
  }
  if (opts.useInputStats && p.s === 1 && p.elements > 0) {
    throw new RangeError(
      `x must have more than 1 spatial position per instance when normalising with its own statistics, received shape [${dims.join(', ')}]`,
    );
  }
  const statistics = p.n * p.c;
  const y = output(yValue, 'out.y', dtype, p.elements, dims, 'its product');
  const mean = output(meanValue, 'out.mean', dtype, statistics, dims, 'N · C');
  const invStd = output(invStdValue, 'out.invStd', dtype, statistics, dims, 'N · C');
  const arrays = [y, mean, invStd, runningMean, runningVar, x, gamma, beta];
  checkNoOverlap(FORWARD_NAMES, arrays, 5, 0, 5);
  if (async) checkAllFixed(FORWARD_NAMES, arrays);
  const result: InstanceNormResult = { y, mean, invStd, numBatchesTracked, updated: false };
  const prepared: Prepared<InstanceNormResult> = { norm: null, result };
  const relu = opts.activation === 'relu';
  if (!opts.useInputStats) {
    // The statistics used, per (n, c), for backward (training: false).
    for (let c = 0; c < p.c; c++) {
      const inv = 1 / Math.sqrt(runningVar![c] + opts.eps);
      for (let n = 0; n < p.n; n++) {
        mean[n * p.c + c] = runningMean![c];
        invStd[n * p.c + c] = inv;
      }
    }
    if (p.elements === 0) return prepared;
    const norm = instanceDescriptor(Phase.infer, x, p, { eps: opts.eps, relu });
    bind(norm, { x, runningMean, runningVar, gamma, beta, y });
    prepared.norm = norm;
    return prepared;
  }
  if (p.elements === 0) {
    typedArrayFill(mean, NaN);
    typedArrayFill(invStd, NaN);
    return prepared;
  }
  const running = runningMean !== null;
  const norm = instanceDescriptor(Phase.train, x, p, {
    eps: opts.eps,
    relu,
    factor: running ? momentumFactor(opts.momentum, numBatchesTracked) : 0,
    varScale: running ? unbiasedScale(opts.unbiasedRunningVar, p.s) : 1,
    skipNonFinite: opts.skipNonFiniteUpdate,
  });
  bind(norm, { x, gamma, beta, y, mean, invStd });
  if (running) {
    bind(norm, { runningMean, runningVar });
    // the train phase returns 1 when it wrote the running statistics
    prepared.settle = (ran) => {
      result.updated = ran === 1;
      result.numBatchesTracked = nextCount(numBatchesTracked, ran === 1);
    };
  }
  prepared.norm = norm;
  return prepared;
}

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<InstanceNormBackwardResult> {
  const opts = parseOptions(options, ['layout', 'activation', 'training'], 'instanceNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const dims = readShape(input.shape);
  const meanValue = input.mean;
  const invStdValue = input.invStd;
  const gammaValue = input.gamma;
  const yValue = input.y;
  const out = checkOut(outArg);
  const dxValue = out?.dx;
  const dgammaValue = out?.dgamma;
  const dbetaValue = out?.dbeta;
  // no caller code runs from here on
  const p = samplesOf(dims, opts.layout);
  const x = checkFloatArray(xValue, 'x', undefined, p.elements);
  const dtype = dtypeOf(x)!;
  const dy = checkFloatArray(dyValue, 'dy', dtype, p.elements);
  const mean = checkFloatArray(meanValue, 'mean', dtype, p.n * p.c);
  const invStd = checkFloatArray(invStdValue, 'invStd', dtype, p.n * p.c);
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, p.c);
  const y = checkReluOutput(yValue, opts.activation, dtype, p.elements);
  const dx = output(dxValue, 'out.dx', dtype, p.elements, dims, 'its product');
  const dgamma = output(dgammaValue, 'out.dgamma', dtype, p.c, dims, 'its channel dim');
  const dbeta = output(dbetaValue, 'out.dbeta', dtype, p.c, dims, 'its channel dim');
  const arrays = [dx, dgamma, dbeta, dy, x, mean, invStd, gamma, y];
  checkNoOverlap(BACKWARD_NAMES, arrays, 3, 0, 3);
  if (async) checkAllFixed(BACKWARD_NAMES, arrays);
  const res = { dx, dgamma, dbeta };
  if (p.elements === 0) {
    typedArrayFill(dgamma, 0);
    typedArrayFill(dbeta, 0);
    return { norm: null, result: res };
  }
  const norm = instanceDescriptor(Phase.backward, x, p, { relu: opts.activation === 'relu', training: opts.training });
  bind(norm, { dy, x, mean, invStd, gamma, y, dx, dgamma, dbeta });
  return { norm, result: res };
}

/**
 * InstanceNorm forward: per (n, c), μ and σ² over the spatial positions, y = (x − μ)·invStd·γ + β
 * (then ReLU). With running statistics (both given) they are updated in place from the batch's
 * mean instance statistics (the variance unbiased by default); with `useInputStats: false` y uses
 * them instead and nothing is updated.
 */
export function instanceNorm<T extends FloatArray>(
  inputs: InstanceNormInputs<T>,
  options?: InstanceNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): InstanceNormResult<T> {
  return callSync(prepareForward, inputs, options, out) as InstanceNormResult<T>;
}

/** {@link instanceNorm} off the calling thread where the backend can (native). */
export function instanceNormAsync<T extends FloatArray>(
  inputs: InstanceNormInputs<T>,
  options?: InstanceNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): Promise<InstanceNormResult<T>> {
  return callAsync(prepareForward, inputs, options, out) as Promise<InstanceNormResult<T>>;
}

/**
 * InstanceNorm backward, per (n, c) over its S values (BatchNorm's formula per instance):
 * training: dx = γ·invStd/S·(S·dy − Σdy − x̂·Σdy·x̂); `training: false` (running statistics):
 * dx = dy·γ·invStd. Per channel: dgamma = Σdy·x̂, dbeta = Σdy over samples and positions.
 */
export function instanceNormBackward<T extends FloatArray>(
  inputs: InstanceNormBackwardInputs<T>,
  options?: { layout?: Layout; activation?: Activation; training?: boolean } & FamilyOptions,
  out?: { dx?: T; dgamma?: T; dbeta?: T },
): InstanceNormBackwardResult<T> {
  return callSync(prepareBackward, inputs, options, out) as InstanceNormBackwardResult<T>;
}

/** {@link instanceNormBackward} off the calling thread where the backend can (native). */
export function instanceNormBackwardAsync<T extends FloatArray>(
  inputs: InstanceNormBackwardInputs<T>,
  options?: { layout?: Layout; activation?: Activation; training?: boolean } & FamilyOptions,
  out?: { dx?: T; dgamma?: T; dbeta?: T },
): Promise<InstanceNormBackwardResult<T>> {
  return callAsync(prepareBackward, inputs, options, out) as Promise<InstanceNormBackwardResult<T>>;
}
