/**
 * Folding a BatchNorm into the convolution or linear layer before it, for inference and
 * quantization (README "BatchNorm variants"). Per BatchNorm channel c (= output channel o of the
 * layer), in float64:
 *   scale[c] = γ[c]/sqrt(runningVar[c] + eps),  shift[c] = β[c] − runningMean[c]·scale[c],
 *   W'[o, …] = W[o, …]·scale[o],  bias'[o] = bias[o]·scale[o] + shift[o]   (bias absent: 0),
 * so conv(x; W', bias') = BN(conv(x; W, bias)) up to rounding.
 *
 * Weight layouts (only where the output channel sits matters, so groups change nothing):
 *   output channel first (PyTorch, ONNX): 'OI' (linear [out, in]), 'OIW', 'OIHW', 'OIDHW'
 *     (conv [out, in/groups, …kernel]; depthwise: [C·multiplier, 1, …kernel]);
 *   output channel last (TensorFlow.js): 'IO' (dense kernel [in, out]), 'WIO', 'HWIO', 'DHWIO'
 *     (conv filter [… kernel, in/groups, out]);
 *   'HWIM' (tfjs depthwiseConv2d's filter [H, W, inChannels, multiplier]): output channel
 *     i·multiplier + m, i.e. the last two axes together are the C output channels.
 */
import type { FloatArray } from '../core/descriptor.js';
import { floatKind, typedArrayLength } from '../intrinsics.js';
import { allocateFloat, checkFloatArray, checkObject, describe, parseOptions, readShape, type DType } from '../validate.js';
import type { FamilyOptions } from './batchnorm.js';

export type WeightLayout = 'OI' | 'OIW' | 'OIHW' | 'OIDHW' | 'IO' | 'WIO' | 'HWIO' | 'DHWIO' | 'HWIM';

const LAYOUTS: readonly WeightLayout[] = ['OI', 'OIW', 'OIHW', 'OIDHW', 'IO', 'WIO', 'HWIO', 'DHWIO', 'HWIM'];

export interface FoldLayer<T extends FloatArray = FloatArray> {
  /** the layer's weight, row-major in `layout` */
  weight: T;
  /** the layer's bias per output channel (absent: 0) */
  bias?: T | null;
  layout: WeightLayout;
  /** the weight's dims (checked against the layout and the BatchNorm's channels when given) */
  shape?: readonly number[];
}

/** A BatchNorm's inference parameters (Float32Array or Float64Array, length C each). */
export interface BatchNormParameters {
  runningMean: FloatArray;
  runningVar: FloatArray;
  /** absent: 1 */
  gamma?: FloatArray | null;
  /** absent: 0 */
  beta?: FloatArray | null;
}

export interface ScaleShift {
  /** γ/sqrt(runningVar + eps) per channel */
  scale: Float64Array;
  /** β − runningMean·scale per channel */
  shift: Float64Array;
}

/** Reads and checks the BatchNorm's parameters; returns C and the float64 scale/shift. */
function scaleShiftOf(bn: unknown, options: unknown, fn: string): ScaleShift {
  const opts = parseOptions(options, ['eps'], fn);
  const p = checkObject(bn, 'batchNorm');
  const runningMeanValue = p.runningMean;
  const runningVarValue = p.runningVar;
  const gammaValue = p.gamma;
  const betaValue = p.beta;
  const runningMean = checkFloatArray(runningMeanValue, 'batchNorm.runningMean');
  const C = typedArrayLength(runningMean);
  const runningVar = checkFloatArray(runningVarValue, 'batchNorm.runningVar', undefined, C);
  const gamma = gammaValue === undefined || gammaValue === null ? null : checkFloatArray(gammaValue, 'batchNorm.gamma', undefined, C);
  const beta = betaValue === undefined || betaValue === null ? null : checkFloatArray(betaValue, 'batchNorm.beta', undefined, C);
  const scale = new Float64Array(C);
  const shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(runningVar[c] + opts.eps);
    shift[c] = (beta ? beta[c] : 0) - runningMean[c] * scale[c];
  }
  return { scale, shift };
}

/**
 * The per-channel affine a BatchNorm applies in inference, y = x·scale + shift, in float64
 * (for quantizers): scale = γ/sqrt(runningVar + eps), shift = β − runningMean·scale.
 * `options.eps` defaults to 1e-5 (> 0).
 * @throws TypeError for a parameter that is not a Float32Array/Float64Array; RangeError for
 *   lengths that differ from runningMean's (naming the parameter) or a bad eps.
 */
export function batchNormScaleShift(bn: BatchNormParameters, options?: { eps?: number } & FamilyOptions): ScaleShift {
  return scaleShiftOf(bn, options, 'batchNormScaleShift');
}

/**
 * Folds a BatchNorm (its running statistics, γ, β, eps) into the preceding convolution or linear
 * layer: returns a new weight and bias of the weight's type (computed in float64, rounded once),
 * such that the folded layer computes BN(layer(x)). See the file comment for the layouts;
 * grouped and depthwise convolutions fold like any other (the output channels are the
 * BatchNorm's channels). Nothing given is modified.
 * @throws TypeError for wrong types (naming the argument); RangeError when the weight does not
 *   hold C output channels in its layout (naming layer.weight or layer.shape), for a bias that is
 *   not of length C, an unknown layout, or a bad eps.
 */
export function foldBatchNorm<T extends FloatArray>(
  layer: FoldLayer<T>,
  bn: BatchNormParameters,
  options?: { eps?: number } & FamilyOptions,
): { weight: T; bias: T } {
  const l = checkObject(layer, 'layer');
  const weightValue = l.weight;
  const biasValue = l.bias;
  const layoutValue = l.layout;
  const shapeValue = l.shape;
  const dims = shapeValue === undefined || shapeValue === null ? null : readShape(shapeValue, 'layer.shape', 2);
  const { scale, shift } = scaleShiftOf(bn, options, 'foldBatchNorm');
  if (typeof layoutValue !== 'string') throw new TypeError(`layer.layout must be a string (one of ${LAYOUTS.join(', ')}), received ${describe(layoutValue)}`);
  const layout = layoutValue as WeightLayout;
  if (!LAYOUTS.includes(layout)) throw new RangeError(`layer.layout must be one of ${LAYOUTS.join(', ')}, received '${layoutValue}'`);
  const weight = checkFloatArray(weightValue, 'layer.weight');
  const dtype = floatKind(weight) as DType;
  const C = scale.length;
  const length = typedArrayLength(weight);
  const outputFirst = layout.startsWith('O');
  if (dims !== null) {
    if (dims.length !== layout.length) {
      throw new RangeError(`layer.shape must have rank ${layout.length} for layout '${layout}', received [${dims.join(', ')}]`);
    }
    const product = dims.reduce((a, b) => a * b, 1);
    if (product !== length) {
      throw new RangeError(`layer.weight must have length ${product} (the product of layer.shape [${dims.join(', ')}]), received length ${length}`);
    }
    const channels = layout === 'HWIM' ? dims[2] * dims[3] : outputFirst ? dims[0] : dims[dims.length - 1];
    if (channels !== C) {
      const which = layout === 'HWIM' ? 'inChannels · multiplier (its last two dims)' : outputFirst ? 'its first dim' : 'its last dim';
      throw new RangeError(
        `layer.shape [${dims.join(', ')}] must have ${C} output channels (the BatchNorm's channels) in ${which} for layout '${layout}', received ${channels}`,
      );
    }
  } else if (C === 0 ? length !== 0 : length % C !== 0) {
    throw new RangeError(`layer.weight must have a multiple of ${C} elements (C output channels, the BatchNorm's channels), received length ${length}`);
  }
  const bias = biasValue === undefined || biasValue === null ? null : checkFloatArray(biasValue, 'layer.bias', dtype, C);
  const folded = allocateFloat(dtype, length, 'the folded weight', 'layer.weight') as T;
  const foldedBias = allocateFloat(dtype, C, 'the folded bias', 'batchNorm.runningMean') as T;
  // Output channel of element i: i / (length / C) when it comes first, i mod C when it comes last
  // (HWIM included: its last two axes flatten to i·multiplier + m).
  const per = C === 0 ? 0 : length / C;
  for (let i = 0; i < length; i++) folded[i] = weight[i] * scale[outputFirst ? Math.floor(i / per) : i % C];
  for (let c = 0; c < C; c++) foldedBias[c] = (bias ? bias[c] : 0) * scale[c] + shift[c];
  return { weight: folded, bias: foldedBias };
}
