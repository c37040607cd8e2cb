/**
 * RMSNorm (PyTorch's nn.RMSNorm, ONNX RMSNormalization): per leading row, over the last k dims,
 * invRms = 1/sqrt(mean(x²) + eps) and y = x·invRms·weight.
 *
 * Descriptor: LayerNorm's (lib/ops/layernorm.ts) with the rms flag (statistics about zero); its
 * mean slot holds zeros, kept internally.
 */
import { Phase } from '../core/abi.js';
import { bind, callAsync, callSync, checkAllFixed, checkOut, output, type Prepared } from '../core/call.js';
import type { FloatArray } from '../core/descriptor.js';
import { Float32, Float64, typedArrayFill } from '../intrinsics.js';
import {
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  dtypeOf,
  parseOptions,
  readShape,
  type Activation,
  type DType,
} from '../validate.js';
import type { FamilyOptions } from './batchnorm.js';
import { checkReluOutput, rmsDefaultEps, rowsDescriptor, rowsOf } from './shapes.js';

export interface RMSNormInputs<T extends FloatArray = FloatArray> {
  x: T;
  shape: readonly number[];
  /** the last k dims of `shape`, normalised together (k >= 1) */
  normalizedShape: readonly number[];
  /** elementwise scale over normalizedShape (absent: 1) */
  weight?: T | null;
}

export interface RMSNormOptions {
  /** added to mean(x²); > 0; default: the dtype's machine epsilon (PyTorch's eps=None) */
  eps?: number;
  activation?: Activation;
}

export interface RMSNormResult<T extends FloatArray = FloatArray> {
  y: T;
  /** 1/sqrt(mean(x²) + eps) per leading row */
  invRms: T;
}

export interface RMSNormBackwardInputs<T extends FloatArray = FloatArray> {
  dy: T;
  x: T;
  shape: readonly number[];
  normalizedShape: readonly number[];
  invRms: T;
  weight?: T | null;
  /** the forward output, required with activation 'relu' */
  y?: T | null;
}

export interface RMSNormBackwardResult<T extends FloatArray = FloatArray> {
  dx: T;
  /** Σ over rows of dy·x·invRms */
  dweight: T;
}

function zeros(dtype: DType, length: number): FloatArray {
  return dtype === 'float32' ? new Float32(length) : new Float64(length);
}

const FORWARD_NAMES = ['out.y', 'out.invRms', 'x', 'weight'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dweight', 'dy', 'x', 'invRms', 'weight', 'y'] as const;

function prepareForward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<RMSNormResult> {
  const opts = parseOptions(options, ['eps', 'activation'], 'rmsNorm');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const dims = readShape(input.shape, 'shape', 1);
  const normalized = readShape(input.normalizedShape, 'normalizedShape', 1);
  const weightValue = input.weight;
  const out = checkOut(outArg);
  const yValue = out?.y;
  const invRmsValue = out?.invRms;
  // no caller code runs from here on
  const r = rowsOf(dims, normalized);
  const x = checkFloatArray(xValue, 'x', undefined, r.elements);
  const dtype = dtypeOf(x)!;
  const weight = checkOptionalFloatArray(weightValue, 'weight', dtype, r.size);
  const y = output(yValue, 'out.y', dtype, r.elements, dims, 'its product');
  const invRms = output(invRmsValue, 'out.invRms', dtype, r.rows, dims, 'its leading dims');
  const arrays = [y, invRms, x, weight];
  checkNoOverlap(FORWARD_NAMES, arrays, 2, 0, 2);
  if (async) checkAllFixed(FORWARD_NAMES, arrays);
  const result = { y, invRms };
  if (r.elements === 0) {
    typedArrayFill(invRms, NaN);
    return { norm: null, result };
  }
  const eps = opts.epsGiven ? opts.eps : rmsDefaultEps(dtype);
  const norm = rowsDescriptor(Phase.train, x, r, { eps, relu: opts.activation === 'relu', rms: true });
  bind(norm, { x, gamma: weight, y, mean: zeros(dtype, r.rows), invStd: invRms });
  return { norm, result };
}

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): Prepared<RMSNormBackwardResult> {
  const opts = parseOptions(options, ['activation'], 'rmsNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const dims = readShape(input.shape, 'shape', 1);
  const normalized = readShape(input.normalizedShape, 'normalizedShape', 1);
  const invRmsValue = input.invRms;
  const weightValue = input.weight;
  const yValue = input.y;
  const out = checkOut(outArg);
  const dxValue = out?.dx;
  const dweightValue = out?.dweight;
  // no caller code runs from here on
  const r = rowsOf(dims, normalized);
  const x = checkFloatArray(xValue, 'x', undefined, r.elements);
  const dtype = dtypeOf(x)!;
  const dy = checkFloatArray(dyValue, 'dy', dtype, r.elements);
  const invRms = checkFloatArray(invRmsValue, 'invRms', dtype, r.rows);
  const weight = checkOptionalFloatArray(weightValue, 'weight', dtype, r.size);
  const y = checkReluOutput(yValue, opts.activation, dtype, r.elements);
  const dx = output(dxValue, 'out.dx', dtype, r.elements, dims, 'its product');
  const dweight = output(dweightValue, 'out.dweight', dtype, r.size, dims, 'its normalized dims');
  const arrays = [dx, dweight, dy, x, invRms, weight, y];
  checkNoOverlap(BACKWARD_NAMES, arrays, 2, 0, 2);
  if (async) checkAllFixed(BACKWARD_NAMES, arrays);
  const result = { dx, dweight };
  if (r.elements === 0) {
    typedArrayFill(dweight, 0);
    return { norm: null, result };
  }
  const norm = rowsDescriptor(Phase.backward, x, r, { relu: opts.activation === 'relu', training: true, rms: true });
  bind(norm, { dy, x, mean: zeros(dtype, r.rows), invStd: invRms, gamma: weight, y, dx, dgamma: dweight, dbeta: zeros(dtype, r.size) });
  return { norm, result };
}

/**
 * RMSNorm forward: per leading row, invRms = 1/sqrt(Σx²/D + eps) over the last
 * `normalizedShape.length` dims, y = x·invRms·weight (then ReLU).
 */
export function rmsNorm<T extends FloatArray>(
  inputs: RMSNormInputs<T>,
  options?: RMSNormOptions & FamilyOptions,
  out?: { y?: T; invRms?: T },
): RMSNormResult<T> {
  return callSync(prepareForward, inputs, options, out) as RMSNormResult<T>;
}

/** {@link rmsNorm} off the calling thread where the backend can (native). */
export function rmsNormAsync<T extends FloatArray>(
  inputs: RMSNormInputs<T>,
  options?: RMSNormOptions & FamilyOptions,
  out?: { y?: T; invRms?: T },
): Promise<RMSNormResult<T>> {
  return callAsync(prepareForward, inputs, options, out) as Promise<RMSNormResult<T>>;
}

/**
 * RMSNorm backward. With x̂ = x·invRms and g = dy·weight, per row:
 * dx = invRms·(g − x̂·Σ(g·x̂)/D); over rows: dweight = Σdy·x̂.
 */
export function rmsNormBackward<T extends FloatArray>(
  inputs: RMSNormBackwardInputs<T>,
  options?: { activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dweight?: T },
): RMSNormBackwardResult<T> {
  return callSync(prepareBackward, inputs, options, out) as RMSNormBackwardResult<T>;
}

/** {@link rmsNormBackward} off the calling thread where the backend can (native). */
export function rmsNormBackwardAsync<T extends FloatArray>(
  inputs: RMSNormBackwardInputs<T>,
  options?: { activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dweight?: T },
): Promise<RMSNormBackwardResult<T>> {
  return callAsync(prepareBackward, inputs, options, out) as Promise<RMSNormBackwardResult<T>>;
}
