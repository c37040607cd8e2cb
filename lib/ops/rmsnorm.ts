/**
 * RMSNorm (PyTorch's nn.RMSNorm, ONNX RMSNormalization): per leading row, over the last k dims,
 * invRms = 1/sqrt(mean(x²) + eps) and y = x·invRms·weight.
 *
 * Descriptor: LayerNorm's (lib/ops/layernorm.ts) with the rms flag (statistics about zero); its
 * mean slot holds zeros, kept internally.
 */
import { Phase, Slot } from '../core/abi.js';
import { checkAllFixed, checkOut, output, run, runAsync } from '../core/call.js';
import type { FloatArray, Norm } from '../core/descriptor.js';
import { Float32, Float64, typedArrayFill } from '../intrinsics.js';
import { getBackend } from '../registry.js';
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

function prepareForward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): { norm: Norm | null; result: RMSNormResult } {
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
  const t = norm.tensors;
  t[Slot.x] = x;
  t[Slot.gamma] = weight;
  t[Slot.y] = y;
  t[Slot.mean] = zeros(dtype, r.rows);
  t[Slot.invStd] = invRms;
  return { norm, result };
}

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown, async: boolean): { norm: Norm | null; result: RMSNormBackwardResult } {
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
  const t = norm.tensors;
  t[Slot.dy] = dy;
  t[Slot.x] = x;
  t[Slot.mean] = zeros(dtype, r.rows);
  t[Slot.invStd] = invRms;
  t[Slot.gamma] = weight;
  t[Slot.y] = y;
  t[Slot.dx] = dx;
  t[Slot.dgamma] = dweight;
  t[Slot.dbeta] = zeros(dtype, r.size);
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
  const b = getBackend();
  const p = prepareForward(inputs, options, out, false);
  if (p.norm) run(b, p.norm);
  return p.result as RMSNormResult<T>;
}

/** {@link rmsNorm} off the calling thread where the backend can (native). */
export async function rmsNormAsync<T extends FloatArray>(
  inputs: RMSNormInputs<T>,
  options?: RMSNormOptions & FamilyOptions,
  out?: { y?: T; invRms?: T },
): Promise<RMSNormResult<T>> {
  const b = getBackend();
  const p = prepareForward(inputs, options, out, true);
  if (p.norm) await runAsync(b, p.norm);
  return p.result as RMSNormResult<T>;
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
  const b = getBackend();
  const p = prepareBackward(inputs, options, out, false);
  if (p.norm) run(b, p.norm);
  return p.result as RMSNormBackwardResult<T>;
}

/** {@link rmsNormBackward} off the calling thread where the backend can (native). */
export async function rmsNormBackwardAsync<T extends FloatArray>(
  inputs: RMSNormBackwardInputs<T>,
  options?: { activation?: Activation } & FamilyOptions,
  out?: { dx?: T; dweight?: T },
): Promise<RMSNormBackwardResult<T>> {
  const b = getBackend();
  const p = prepareBackward(inputs, options, out, true);
  if (p.norm) await runAsync(b, p.norm);
  return p.result as RMSNormBackwardResult<T>;
}
