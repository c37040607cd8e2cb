/**
 * LayerNorm (PyTorch's F.layer_norm): per leading row of x, the mean μ and biased variance σ²
 * over the last k dims (`normalizedShape`), then y = (x − μ)·invStd·weight + bias with
 * invStd = 1/sqrt(σ² + eps), weight and bias elementwise over `normalizedShape`.
 *
 * Descriptor: x as [rows][D] is samples 1, outer 1, stats = rows, inner = D; γ/β indexed by the
 * position in the row (affine groups 1, size D, run 1). RMSNorm (lib/ops/rmsnorm.ts) is the same
 * descriptor with the rms flag.
 */
import { Phase } from '../core/abi.js';
import { bind, callAsync, callSync, checkAllFixed, checkOut, output, type Prepared } from '../core/call.js';
import type { FloatArray } from '../core/descriptor.js';
import { typedArrayFill } from '../intrinsics.js';
import {
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  dtypeOf,
  parseOptions,
  readShape,
  type Activation,
} from '../validate.js';
import type { FamilyOptions } from './batchnorm.js';
import { checkReluOutput, rowsDescriptor, rowsOf } from './shapes.js';

export interface LayerNormInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
  /** the last k dims of `shape`, normalised together (k >= 1) */
  normalizedShape: readonly number[];
  /** elementwise scale over normalizedShape (absent: 1) */
  weight?: T | null;
  /** elementwise shift over normalizedShape (absent: 0) */
  bias?: T | null;
}

export interface LayerNormOptions {
  /** added to the variance; > 0, default 1e-5 (PyTorch) */
  eps?: number;
  /** fused activation applied to y: 'none' (default) or 'relu' */
  activation?: Activation;
}

export interface LayerNormResult<T extends FloatArray = FloatArray> {
  /** may be `x` itself (out.y = x: in place) */
  y: T;
  /** per leading row, row-major over the leading dims */
  mean: T;
  /** 1/sqrt(σ² + eps) per leading row */
  invStd: T;
}

export interface LayerNormBackwardInputs<T extends FloatArray = FloatArray> {
  dy: T;
  x: T;
  shape: readonly number[];
  normalizedShape: readonly number[];
  /** what the forward returned */
  mean: T;
  invStd: T;
  weight?: T | null;
  /** the forward output, required with activation 'relu' (dy is masked by y > 0) */
  y?: T | null;
}

export interface LayerNormBackwardResult<T extends FloatArray = FloatArray> {
  /** may be `dy` itself (out.dx = dy) */
  dx: T;
  /** Σ over rows of dy·x̂, length = product(normalizedShape) */
  dweight: T;
  /** Σ over rows of dy */
  dbias: T;
}

const FORWARD_NAMES = ['out.y', 'out.mean', 'out.invStd', 'x', 'weight', 'bias'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dweight', 'out.dbias', 'dy', 'x', 'mean', 'invStd', 'weight', 'y'] as const;


function prepareForward(
  inputs: unknown,
  options: unknown,
  outArg: unknown,
  async: boolean,
): Prepared<LayerNormResult> {
  // 1. Read every caller value once.
  const opts = parseOptions(options, ['eps', 'activation'], 'layerNorm');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const dims = readShape(input.shape, 'shape', 1);
  const normalized = readShape(input.normalizedShape, 'normalizedShape', 1);
  const weightValue = input.weight;
  const biasValue = input.bias;
  const out = checkOut(outArg);
  const yValue = out?.y;
  const meanValue = out?.mean;
  const invStdValue = out?.invStd;
  // 2. Check (no caller code runs from here on).
  const r = rowsOf(dims, normalized);
  const x = checkFloatArray(xValue, 'x', undefined, r.elements);
  const dtype = dtypeOf(x)!;
  const weight = checkOptionalFloatArray(weightValue, 'weight', dtype, r.size);
  const bias = checkOptionalFloatArray(biasValue, 'bias', dtype, r.size);
  const y = output(yValue, 'out.y', dtype, r.elements, dims, 'its product');
  const mean = output(meanValue, 'out.mean', dtype, r.rows, dims, 'its leading dims');
  const invStd = output(invStdValue, 'out.invStd', dtype, r.rows, dims, 'its leading dims');
  const arrays = [y, mean, invStd, x, weight, bias];
  checkNoOverlap(FORWARD_NAMES, arrays, 3, 0, 3);
  if (async) checkAllFixed(FORWARD_NAMES, arrays);
  const result = { y, mean, invStd };
  if (r.elements === 0) {
    typedArrayFill(mean, NaN);
    typedArrayFill(invStd, NaN);
    return { norm: null, result };
  }
  const norm = rowsDescriptor(Phase.train, x, r, { eps: opts.eps, relu: opts.activation === 'relu' });
  bind(norm, { x, gamma: weight, beta: bias, y, mean, invStd });
  return { norm, result };
}

function prepareBackward(
  inputs: unknown,
  options: unknown,
  outArg: unknown,
  async: boolean,
): Prepared<LayerNormBackwardResult> {
  const opts = parseOptions(options, ['activation'], 'layerNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const dims = readShape(input.shape, 'shape', 1);
  const normalized = readShape(input.normalizedShape, 'normalizedShape', 1);
  const meanValue = input.mean;
  const invStdValue = input.invStd;
  const weightValue = input.weight;
  const yValue = input.y;
  const out = checkOut(outArg);
  const dxValue = out?.dx;
  const dweightValue = out?.dweight;
  const dbiasValue = out?.dbias;
  // no caller code runs from here on
  const r = rowsOf(dims, normalized);
  const x = checkFloatArray(xValue, 'x', undefined, r.elements);
  const dtype = dtypeOf(x)!;
  const dy = checkFloatArray(dyValue, 'dy', dtype, r.elements);
  const mean = checkFloatArray(meanValue, 'mean', dtype, r.rows);
  const invStd = checkFloatArray(invStdValue, 'invStd', dtype, r.rows);
  const weight = checkOptionalFloatArray(weightValue, 'weight', dtype, r.size);
  const y = checkReluOutput(yValue, opts.activation, dtype, r.elements);
  const dx = output(dxValue, 'out.dx', dtype, r.elements, dims, 'its product');
  const dweight = output(dweightValue, 'out.dweight', dtype, r.size, dims, 'its normalized dims');
  const dbias = output(dbiasValue, 'out.dbias', dtype, r.size, dims, 'its normalized dims');
  const arrays = [dx, dweight, dbias, dy, x, mean, invStd, weight, y];
  checkNoOverlap(BACKWARD_NAMES, arrays, 3, 0, 3);
  if (async) checkAllFixed(BACKWARD_NAMES, arrays);
  const result = { dx, dweight, dbias };
  if (r.elements === 0) {
    typedArrayFill(dweight, 0);
    typedArrayFill(dbias, 0);
    return { norm: null, result };
  }
  const norm = rowsDescriptor(Phase.backward, x, r, { relu: opts.activation === 'relu', training: true });
  bind(norm, { dy, x, mean, invStd, gamma: weight, y, dx, dgamma: dweight, dbeta: dbias });
  return { norm, result };
}

/**
 * LayerNorm forward: per leading row, μ = Σx/D, σ² = Σ(x − μ)²/D over the last
 * `normalizedShape.length` dims, y = (x − μ)·invStd·weight + bias (then ReLU). Returns the mean
 * and invStd that {@link layerNormBackward} needs.
 * @throws TypeError for wrong types; RangeError for wrong lengths, a normalizedShape that is not
 *   the end of shape, or bad options.
 */
export function layerNorm<T extends FloatArray>(
  inputs: LayerNormInputs<T>,
  options?: LayerNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): LayerNormResult<T> {
  return callSync(prepareForward, inputs, options, out) as LayerNormResult<T>;
}

/** {@link layerNorm} off the calling thread where the backend can (native). */
export function layerNormAsync<T extends FloatArray>(
  inputs: LayerNormInputs<T>,
  options?: LayerNormOptions & FamilyOptions,
  out?: { y?: T; mean?: T; invStd?: T },
): Promise<LayerNormResult<T>> {
  return callAsync(prepareForward, inputs, options, out) as Promise<LayerNormResult<T>>;
}

/**
 * LayerNorm backward. With x̂ = (x − mean)·invStd and g = dy·weight (dy masked by y > 0 under
 * 'relu'), per row: dx = invStd/D·(D·g − Σg − x̂·Σg·x̂); over rows: dweight = Σdy·x̂, dbias = Σdy.
 */
export function layerNormBackward<T extends FloatArray>(
  inputs: LayerNormBackwardInputs<T>,
  options?: { activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dweight?: T; dbias?: T },
): LayerNormBackwardResult<T> {
  return callSync(prepareBackward, inputs, options, out) as LayerNormBackwardResult<T>;
}

/** {@link layerNormBackward} off the calling thread where the backend can (native). */
export function layerNormBackwardAsync<T extends FloatArray>(
  inputs: LayerNormBackwardInputs<T>,
  options?: { activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dweight?: T; dbias?: T },
): Promise<LayerNormBackwardResult<T>> {
  return callAsync(prepareBackward, inputs, options, out) as Promise<LayerNormBackwardResult<T>>;
}
