/**
 * GroupNorm (PyTorch's F.group_norm): C divided into `groups`; per (sample, group) the mean and
 * biased variance over the group's C/G channels and every spatial position; y = (x − μ)·invStd·γ + β
 * with γ, β per channel. Channels-first (N, C, ...spatial) and channels-last (N, ...spatial, C).
 *
 * Descriptor (S = product of the spatial dims, K = C/G):
 *   channels-first: samples N, outer 1, stats G, inner K·S; γ/β groups G, size K, run S;
 *   channels-last:  samples N, outer S, stats G, inner K;   γ/β groups G, size K, run 1.
 */
import { Phase } from '../core/abi.js';
import { bind, callAsync, callSync, checkAllFixed, checkOut, output, type Prepared } from '../core/call.js';
import { makeNorm, type FloatArray, type Norm, type NormScalars } from '../core/descriptor.js';
import { typedArrayFill } from '../intrinsics.js';
import {
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

export interface GroupNormInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
  /** G: a positive divisor of C */
  groups: number;
  /** per-channel scale (absent: 1) */
  gamma?: T | null;
  /** per-channel shift (absent: 0) */
  beta?: T | null;
}

export interface GroupNormOptions {
  /** default 1e-5 */
  eps?: number;
  layout?: Layout;
  activation?: Activation;
}

export interface GroupNormResult<T extends FloatArray = FloatArray> {
  y: T;
  /** length N·G, index n·G + g */
  mean: T;
  invStd: T;
}

export interface GroupNormBackwardInputs<T extends FloatArray = FloatArray> {
  dy: T;
  x: T;
  shape: readonly number[];
  groups: number;
  mean: T;
  invStd: T;
  gamma?: T | null;
  /** the forward output, required with activation 'relu' */
  y?: T | null;
}

export interface GroupNormBackwardResult<T extends FloatArray = FloatArray> {
  dx: T;
  dgamma: T;
  dbeta: T;
}

/** A group count: a positive integer dividing C (TypeError/RangeError naming groups). */
function checkGroups(value: unknown, c: number): number {
  if (typeof value !== 'number') throw new TypeError(`groups must be a number, received ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`groups must be an integer >= 1, received ${value}`);
  if (c % value !== 0) throw new RangeError(`groups must divide the channel count ${c}, received ${value}`);
  return value;
}

function groupDescriptor(phase: (typeof Phase)[keyof typeof Phase], x: FloatArray, p: Samples, groups: number, s: NormScalars): Norm {
  const k = p.c / groups;
  return p.layout === 'channels-first'
    ? makeNorm(phase, x, { samples: p.n, outer: 1, stats: groups, inner: k * p.s }, { groups, size: k, run: Math.max(1, p.s) }, s)
    : makeNorm(phase, x, { samples: p.n, outer: p.s, stats: groups, inner: k }, { groups, size: k, run: 1 }, s);
}

const FORWARD_NAMES = ['out.y', 'out.mean', 'out.invStd', 'x', 'gamma', 'beta'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dgamma', 'out.dbeta', 'dy', 'x', 'mean', 'invStd', 'gamma', 'y'] as const;

function prepareForward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<GroupNormResult> {
  const opts = parseOptions(options, ['eps', 'layout', 'activation'], 'groupNorm');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const dims = readShape(input.shape);
  const groupsValue = input.groups;
  const gammaValue = input.gamma;
  const betaValue = input.beta;
  const out = checkOut(outArg);
  const yValue = out?.y;
  const meanValue = out?.mean;
  const invStdValue = out?.invStd;
  // no caller code runs from here on
  const p = samplesOf(dims, opts.layout);
  const groups = checkGroups(groupsValue, p.c);
  const x = checkFloatArray(xValue, 'x', undefined, p.elements);
  const dtype = dtypeOf(x)!;
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, p.c);
  const beta = checkOptionalFloatArray(betaValue, 'beta', dtype, p.c);
  const y = output(yValue, 'out.y', dtype, p.elements, dims, 'its product');
  const mean = output(meanValue, 'out.mean', dtype, p.n * groups, dims, 'N · groups');
  const invStd = output(invStdValue, 'out.invStd', dtype, p.n * groups, dims, 'N · groups');
  const arrays = [y, mean, invStd, x, gamma, beta];
  checkNoOverlap(FORWARD_NAMES, arrays, 3, 0, 3);
  if (async) checkAllFixed(FORWARD_NAMES, arrays);
  const result = { y, mean, invStd };
  if (p.elements === 0) {
    typedArrayFill(mean, NaN);
    typedArrayFill(invStd, NaN);
    return { norm: null, result };
  }
  const norm = groupDescriptor(Phase.train, x, p, groups, { eps: opts.eps, relu: opts.activation === 'relu' });
  bind(norm, { x, gamma, beta, y, mean, invStd });
  return { norm, result };
}

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<GroupNormBackwardResult> {
  const opts = parseOptions(options, ['layout', 'activation'], 'groupNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const dims = readShape(input.shape);
  const groupsValue = input.groups;
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
  const groups = checkGroups(groupsValue, p.c);
  const x = checkFloatArray(xValue, 'x', undefined, p.elements);
  const dtype = dtypeOf(x)!;
  const dy = checkFloatArray(dyValue, 'dy', dtype, p.elements);
  const mean = checkFloatArray(meanValue, 'mean', dtype, p.n * groups);
  const invStd = checkFloatArray(invStdValue, 'invStd', dtype, p.n * groups);
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, p.c);
  const y = checkReluOutput(yValue, opts.activation, dtype, p.elements);
  const dx = output(dxValue, 'out.dx', dtype, p.elements, dims, 'its product');
  const dgamma = output(dgammaValue, 'out.dgamma', dtype, p.c, dims, 'its channel dim');
  const dbeta = output(dbetaValue, 'out.dbeta', dtype, p.c, dims, 'its channel dim');
  const arrays = [dx, dgamma, dbeta, dy, x, mean, invStd, gamma, y];
  checkNoOverlap(BACKWARD_NAMES, arrays, 3, 0, 3);
  if (async) checkAllFixed(BACKWARD_NAMES, arrays);
  const result = { dx, dgamma, dbeta };
  if (p.elements === 0) {
    typedArrayFill(dgamma, 0);
    typedArrayFill(dbeta, 0);
    return { norm: null, result };
  }
  const norm = groupDescriptor(Phase.backward, x, p, groups, { relu: opts.activation === 'relu', training: true });
  bind(norm, { dy, x, mean, invStd, gamma, y, dx, dgamma, dbeta });
  return { norm, result };
}

/**
 * GroupNorm forward: per (n, g), μ and σ² over the group's C/G channels and all spatial
 * positions; y = (x − μ)·invStd·γ + β per channel (then ReLU). mean/invStd: N·G, index n·G + g.
 */
export function groupNorm<T extends FloatArray>(
  inputs: GroupNormInputs<T>,
  options?: GroupNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): GroupNormResult<T> {
  return callSync(prepareForward, inputs, options, out) as GroupNormResult<T>;
}

/** {@link groupNorm} off the calling thread where the backend can (native). */
export function groupNormAsync<T extends FloatArray>(
  inputs: GroupNormInputs<T>,
  options?: GroupNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): Promise<GroupNormResult<T>> {
  return callAsync(prepareForward, inputs, options, out) as Promise<GroupNormResult<T>>;
}

/**
 * GroupNorm backward. With x̂ = (x − μ)·invStd and h = dy·γ, per (n, g) over its M values:
 * dx = invStd/M·(M·h − Σh − x̂·Σh·x̂); per channel: dgamma = Σdy·x̂, dbeta = Σdy.
 */
export function groupNormBackward<T extends FloatArray>(
  inputs: GroupNormBackwardInputs<T>,
  options?: { layout?: Layout; activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dgamma?: T; dbeta?: T },
): GroupNormBackwardResult<T> {
  return callSync(prepareBackward, inputs, options, out) as GroupNormBackwardResult<T>;
}

/** {@link groupNormBackward} off the calling thread where the backend can (native). */
export function groupNormBackwardAsync<T extends FloatArray>(
  inputs: GroupNormBackwardInputs<T>,
  options?: { layout?: Layout; activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dgamma?: T; dbeta?: T },
): Promise<GroupNormBackwardResult<T>> {
  return callAsync(prepareBackward, inputs, options, out) as Promise<GroupNormBackwardResult<T>>;
}
