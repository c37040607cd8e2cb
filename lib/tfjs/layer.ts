/**
 * The training path of `tf.layers.batchNormalization` on simdnorm in one kernel.
 *
 * In training mode tfjs-layers' BatchNormalization computes the batch statistics with
 * `tf.moments` (Mean, Sub, Square, Mean) and normalises with `tf.batchNorm` (FusedBatchNorm);
 * the gradient of the statistics is tfjs's own chain of broadcast multiplies and reductions,
 * several times the cost of BatchNorm itself. Taking over FusedBatchNorm alone (plugin.ts) leaves
 * that chain in tfjs. So, when asked (the default of `register`), the layer class's `call` is
 * wrapped: in training mode, for a float32 input on a backend simdnorm serves, with scale and
 * center (tfjs's own training path needs both), it runs one kernel, `SimdnormBatchNormTrain`
 * (simdnorm's batchNormTrain: y, batch mean, biased variance, invStd), whose gradient is
 * simdnorm's batchNormBackward with the batch statistics (dx through the statistics, dgamma,
 * dbeta), and updates the moving statistics as tfjs-layers does
 * (v ← v − (v − batch)·(1 − momentum), the biased batch variance). Anything else, and inference,
 * goes to the layer's own `call` (inference reaches FusedBatchNorm, on simdnorm too).
 *
 * The layer class is found through tfjs-core's serialization registry (tfjs-layers registers
 * `BatchNormalization` there when it loads), so this module does not import tfjs-layers.
 */
import {
  engine,
  getGradient,
  getKernel,
  registerGradient,
  registerKernel,
  serialization,
  sub,
  mul,
  tidy,
  unregisterGradient,
  unregisterKernel,
  reshape,
  add,
  type GradConfig,
  type KernelConfig,
  type NamedAttrMap,
  type Tensor,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { batchNormBackward, batchNormTrain } from '../api.js';
import { ioFor, type SupportedBackend } from './io.js';

/** The kernel of the fused training path: outputs y, mean, variance (biased), invStd. */
export const SIMDNORM_BATCH_NORM_TRAIN = 'SimdnormBatchNormTrain';
/** Its gradient's kernel: outputs dx, dscale, doffset. */
export const SIMDNORM_BATCH_NORM_TRAIN_GRAD = 'SimdnormBatchNormTrainGrad';

interface TrainAttrs {
  varianceEpsilon: number;
  axis: number;
}

type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];

function geometry(shape: readonly number[], axis: number): { outer: number; channels: number; inner: number } {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return { outer, channels: shape[axis], inner };
}

function trainKernel(backendName: SupportedBackend): KernelConfig['kernelFunc'] {
  return (args: KernelArgs) => {
    const { x, scale, offset } = args.inputs as { x: TensorInfo; scale: TensorInfo; offset: TensorInfo };
    const { varianceEpsilon: eps, axis } = args.attrs as unknown as TrainAttrs;
    const io = ioFor(backendName, args.backend);
    const g = geometry(x.shape, axis);
    const C = g.channels;
    const outs = [io.make(x.shape.slice()), io.make([C]), io.make([C]), io.make([C])];
    const [y, mean, variance, invStd] = outs.map((t) => io.view(t));
    batchNormTrain(
      { x: io.read(x)!, shape: [g.outer, C, g.inner], gamma: io.read(scale)!, beta: io.read(offset)! },
      { eps, layout: 'channels-first' },
      { y, mean, invStd },
    );
    for (let c = 0; c < C; c++) variance[c] = Math.max(0, 1 / (invStd[c] * invStd[c]) - eps);
    return outs.map((t, i) => io.finish(t, [y, mean, variance, invStd][i]));
  };
}

function trainGradKernel(backendName: SupportedBackend): KernelConfig['kernelFunc'] {
  return (args: KernelArgs) => {
    const { dy, x, scale, mean, invStd } = args.inputs as Record<string, TensorInfo>;
    const { axis } = args.attrs as unknown as TrainAttrs;
    const io = ioFor(backendName, args.backend);
    const g = geometry(x.shape, axis);
    const C = g.channels;
    const outs = [io.make(x.shape.slice()), io.make([C]), io.make([C])];
    const [dx, dgamma, dbeta] = outs.map((t) => io.view(t));
    batchNormBackward(
      { dy: io.read(dy)!, x: io.read(x)!, shape: [g.outer, C, g.inner], mean: io.read(mean)!, invStd: io.read(invStd)!, gamma: io.read(scale)! },
      { layout: 'channels-first', training: true },
      { dx, dgamma, dbeta },
    );
    return outs.map((t, i) => io.finish(t, [dx, dgamma, dbeta][i]));
  };
}

function allZero(t: Tensor): boolean {
  const v = t.dataSync();
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) return false;
  return true;
}

const trainGradConfig: GradConfig = {
  kernelName: SIMDNORM_BATCH_NORM_TRAIN,
  inputsToSave: ['x', 'scale'],
  outputsToSave: [false, true, false, true],
  gradFunc: (dys: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => {
    const [dy, dmean, dvariance] = dys as Tensor[];
    const [x, scale, mean, invStd] = saved;
    const { axis } = attrs as unknown as TrainAttrs;
    const [dx, dscale, doffset] = engine().runKernel(SIMDNORM_BATCH_NORM_TRAIN_GRAD, { dy, x, scale, mean, invStd }, { axis }) as Tensor[];
    // The statistics are outputs too; when something downstream used them (the layer does not:
    // its moving-average update is not differentiated), their gradients reach x as well:
    // ∂mean/∂x = 1/M, ∂variance/∂x = 2(x − mean)/M.
    let dxTotal = dx;
    const meanUsed = !allZero(dmean);
    const varianceUsed = !allZero(dvariance);
    if (meanUsed || varianceUsed) {
      const g = geometry(x.shape, axis);
      const M = g.outer * g.inner;
      const b = x.shape.map((d, i) => (i === axis ? d : 1));
      if (meanUsed) dxTotal = add(dxTotal, mul(reshape(dmean, b), 1 / M));
      if (varianceUsed) dxTotal = add(dxTotal, mul(mul(sub(x, reshape(mean, b)), reshape(dvariance, b)), 2 / M));
    }
    return { x: () => dxTotal, scale: () => dscale, offset: () => doffset };
  },
};

// ---------------------------------------------------------------------------------------------
// The layer's call

interface LayerVariableLike {
  read(): Tensor;
  write(t: Tensor): unknown;
}

interface BatchNormalizationLike {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma?: LayerVariableLike;
  beta?: LayerVariableLike;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
  call(inputs: Tensor | Tensor[], kwargs: Record<string, unknown>): Tensor | Tensor[];
}

type Call = BatchNormalizationLike['call'];

let patched: { proto: BatchNormalizationLike; original: Call } | null = null;
let fusedCalls = 0;

/** How many training-mode layer calls ran the fused kernel (for tests and the benchmark). */
export function fusedLayerCalls(): number {
  return fusedCalls;
}

export function resetFusedLayerCalls(): void {
  fusedCalls = 0;
}

function layerClass(): { prototype: BatchNormalizationLike } | null {
  const map = serialization.SerializationMap.getMap().classNameMap as Record<string, [unknown, unknown] | undefined>;
  const entry = map.BatchNormalization;
  const cls = entry?.[0] as { prototype?: BatchNormalizationLike } | undefined;
  return cls?.prototype && typeof cls.prototype.call === 'function' ? (cls as { prototype: BatchNormalizationLike }) : null;
}

function fusedTraining(layer: BatchNormalizationLike, inputs: Tensor | Tensor[], kwargs: Record<string, unknown> | undefined, backends: () => readonly SupportedBackend[]): Tensor | null {
  if (kwargs == null || !kwargs.training) return null;
  // Inside a gradient of a gradient (two tapes recording) the layer's own path, whose gradient is
  // made of differentiable ops, is the one that can be differentiated twice.
  if (engine().state.gradientDepth > 1) return null;
  const x = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
  if (x == null || x.dtype !== 'float32' || x.rank < 2) return null;
  if (!layer.center || !layer.scale || layer.gamma == null || layer.beta == null) return null;
  const eps = layer.epsilon;
  if (!(typeof eps === 'number' && Number.isFinite(eps) && eps > 0)) return null;
  const backendName = engine().backendName as SupportedBackend;
  if (!backends().includes(backendName) || getKernel(SIMDNORM_BATCH_NORM_TRAIN, backendName) === undefined) return null;
  const axis = layer.axis >= 0 ? layer.axis : layer.axis + x.rank;
  if (!(axis >= 0 && axis < x.rank)) return null;
  const g = geometry(x.shape, axis);
  if (g.outer * g.inner < 2 || g.channels === 0) return null;
  const gamma = layer.gamma.read();
  const beta = layer.beta.read();
  if (gamma.dtype !== 'float32' || beta.dtype !== 'float32' || gamma.size !== g.channels || beta.size !== g.channels) return null;
  fusedCalls++;
  return tidy(() => {
    const [y, mean, variance] = engine().runKernel(SIMDNORM_BATCH_NORM_TRAIN, { x, scale: gamma, offset: beta }, { varianceEpsilon: eps, axis }) as Tensor[];
    const decay = 1 - layer.momentum;
    for (const [variable, value] of [[layer.movingMean, mean], [layer.movingVariance, variance]] as const) {
      tidy(() => {
        const old = variable.read();
        variable.write(sub(old, mul(sub(old, value), decay)));
      });
    }
    return y;
  });
}

/** Registers the fused kernels on `backendName` (with the gradient) if not yet there. */
export function registerTrainKernels(backendName: SupportedBackend): void {
  if (getKernel(SIMDNORM_BATCH_NORM_TRAIN, backendName) === undefined) {
    registerKernel({ kernelName: SIMDNORM_BATCH_NORM_TRAIN, backendName, kernelFunc: trainKernel(backendName) });
  }
  if (getKernel(SIMDNORM_BATCH_NORM_TRAIN_GRAD, backendName) === undefined) {
    registerKernel({ kernelName: SIMDNORM_BATCH_NORM_TRAIN_GRAD, backendName, kernelFunc: trainGradKernel(backendName) });
  }
  // Our own kernel name: no gradient of anyone else's to replace.
  if (getGradient(SIMDNORM_BATCH_NORM_TRAIN) !== trainGradConfig) {
    if (getGradient(SIMDNORM_BATCH_NORM_TRAIN) !== undefined) unregisterGradient(SIMDNORM_BATCH_NORM_TRAIN);
    registerGradient(trainGradConfig);
  }
}

/**
 * Wraps BatchNormalization.prototype.call (once); returns whether the class was found (tfjs-layers
 * loaded). `backends` says, at each call, where the fused path may run.
 */
export function patchLayer(backends: () => readonly SupportedBackend[]): boolean {
  if (patched !== null) return true;
  const cls = layerClass();
  if (cls === null) return false;
  const proto = cls.prototype;
  const original = proto.call;
  proto.call = function (this: BatchNormalizationLike, inputs, kwargs) {
    return fusedTraining(this, inputs, kwargs, backends) ?? original.call(this, inputs, kwargs);
  };
  patched = { proto, original };
  return true;
}

/** Puts the layer's own call back and removes the fused kernels. */
export function unpatchLayer(backendNames: readonly SupportedBackend[]): void {
  if (patched !== null) {
    patched.proto.call = patched.original;
    patched = null;
  }
  for (const name of backendNames) {
    for (const k of [SIMDNORM_BATCH_NORM_TRAIN, SIMDNORM_BATCH_NORM_TRAIN_GRAD]) {
      if (getKernel(k, name) !== undefined) unregisterKernel(k, name);
    }
  }
  if (getGradient(SIMDNORM_BATCH_NORM_TRAIN) !== undefined) unregisterGradient(SIMDNORM_BATCH_NORM_TRAIN);
}

export function layerPatched(): boolean {
  return patched !== null;
}
