/**
 * simdnorm as TensorFlow.js's BatchNorm: the `FusedBatchNorm` kernel (forward) of the `cpu` and
 * `wasm` backends and the kernel's gradient, so `tf.batchNorm` and `tf.layers.batchNormalization`
 * run on simdnorm without a change to the model.
 *
 * What tfjs sends to FusedBatchNorm: x reshaped to 4-D and mean, variance, offset (β), scale (γ)
 * as the caller gave them, y = offset + (x − mean)·scale/sqrt(variance + ε). The layer gives them
 * rank 1 ([C], channels last) or, for any other `axis`, rank of x with 1 everywhere but the
 * channel axis ([1, C, 1, 1] for channelsFirst). We read them with broadcasting semantics (the
 * semantics of tfjs's own gradient and of its webgl kernel): each parameter has one dimension
 * that is not 1 (the channel axis, equal to x's) or is a single value. The cpu and wasm
 * kernels of tfjs index the parameters modulo their length instead, which is right for [C] and
 * wrong for [1, C, 1, 1] (README "With TensorFlow.js").
 *
 * The gradient (tfjs's: x, mean, variance, scale, offset) comes from one simdnorm call
 * (batchNormBackward with the statistics as constants): dx = dy·γ·invStd, dscale = Σ dy·x̂,
 * doffset = Σ dy, and per channel dmean = −γ·invStd·doffset, dvariance = −½·γ·invStd²·dscale.
 * In training the layer computes mean and variance with tf.moments; their gradient (to x) is
 * tfjs's, from the dmean and dvariance given here.
 *
 * Anything else (a dtype other than float32, a parameter of another shape, ε ≤ 0, another
 * backend, a gradient of this gradient) runs on the kernel or gradient that was registered before.
 * The layer's training path, which reaches FusedBatchNorm only after tf.moments, is lib/tfjs/layer.ts.
 */
import {
  engine,
  getGradient,
  getKernel,
  registerGradient,
  registerKernel,
  unregisterGradient,
  unregisterKernel,
  type GradConfig,
  type KernelConfig,
  type NamedAttrMap,
  type NamedTensorMap,
  type Tensor,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { batchNormBackward, batchNormInfer } from '../api.js';
import { ioFor, sizeOf, SUPPORTED_BACKENDS, type SupportedBackend } from './io.js';
import { fusedLayerCalls, layerPatched, patchLayer, registerTrainKernels, resetFusedLayerCalls, unpatchLayer } from './layer.js';

export { SUPPORTED_BACKENDS, type SupportedBackend } from './io.js';

/** tfjs's kernel name for BatchNorm. */
export const FUSED_BATCH_NORM = 'FusedBatchNorm';
/** The kernel this plugin registers for its gradient (five outputs: dx, dmean, dvariance, dscale, doffset). */
export const SIMDNORM_BATCH_NORM_GRAD = 'SimdnormFusedBatchNormGrad';

export interface RegisterOptions {
  /** which tfjs backends to take over (default both: 'cpu' and 'wasm'); a backend whose package is not loaded is skipped */
  backends?: readonly SupportedBackend[];
  /**
   * run the training path of tf.layers.batchNormalization as one simdnorm kernel, the batch
   * statistics and their gradient included (default true; lib/tfjs/layer.ts). false: only
   * FusedBatchNorm and its gradient are simdnorm's, tf.moments and its gradient stay in tfjs.
   */
  layers?: boolean;
}

export interface RegisterResult {
  /** the backends whose FusedBatchNorm is now simdnorm's */
  backends: SupportedBackend[];
  /** whether the FusedBatchNorm gradient is now simdnorm's */
  gradient: boolean;
  /** whether BatchNormalization layers train through simdnorm's fused kernel (tfjs-layers loaded, `layers` not false) */
  layers: boolean;
}

/** How many calls ran on simdnorm and how many went to tfjs's own kernel or gradient. */
export interface PluginStats {
  forward: number;
  backward: number;
  fallbackForward: number;
  fallbackBackward: number;
  /** training-mode BatchNormalization layer calls that ran as one simdnorm kernel */
  fusedLayer: number;
}

const counters: Omit<PluginStats, 'fusedLayer'> = { forward: 0, backward: 0, fallbackForward: 0, fallbackBackward: 0 };

/** The forward kernel functions this module made (how `register` and `unregister` recognise them). */
const ourKernels = new WeakSet<KernelConfig['kernelFunc']>();

/** The forward kernels and the gradient that were registered before ours, to fall back on and to restore. */
const originalKernels = new Map<SupportedBackend, KernelConfig>();
let originalGradient: GradConfig | null = null;
let gradientRegistered = false;

// ---------------------------------------------------------------------------------------------
// Which calls simdnorm takes

/** x as simdnorm sees it: [outer, C, inner] channels-first, C at `axis` of x's shape. */
interface Geometry {
  outer: number;
  channels: number;
  inner: number;
}

/**
 * Where the channel axis is, from the parameters' shapes (right-aligned against x's, as
 * broadcasting aligns them): each has one dimension other than 1, equal to x's at that axis, or
 * is a single value; all that have one agree. Null for anything else (tfjs's kernel takes it).
 */
export function channelGeometry(xShape: readonly number[], params: readonly (readonly number[] | null | undefined)[]): Geometry | null {
  const rank = xShape.length;
  if (rank === 0 || sizeOf(xShape) === 0) return null;
  let axis = -1;
  for (const p of params) {
    if (p == null) continue;
    if (p.length > rank) return null;
    if (sizeOf(p) === 1) continue;
    let found = -1;
    for (let i = 0; i < p.length; i++) {
      if (p[i] === 1) continue;
      if (found !== -1) return null;
      found = rank - p.length + i;
      if (p[i] !== xShape[found]) return null;
    }
    if (found === -1) return null;
    if (axis !== -1 && axis !== found) return null;
    axis = found;
  }
  if (axis === -1) axis = rank - 1;
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= xShape[i];
  for (let i = axis + 1; i < rank; i++) inner *= xShape[i];
  return { outer, channels: xShape[axis], inner };
}

/** A parameter as C values (a single value repeated), or null when absent. */
function perChannel(values: Float32Array | null, channels: number): Float32Array | null {
  if (values === null) return null;
  if (values.length === channels) return values;
  return new Float32Array(channels).fill(values[0]);
}

function usableEpsilon(eps: unknown): eps is number {
  return typeof eps === 'number' && Number.isFinite(eps) && eps > 0;
}

interface Inputs {
  x?: TensorInfo;
  dy?: TensorInfo;
  mean?: TensorInfo;
  variance?: TensorInfo;
  scale?: TensorInfo;
  offset?: TensorInfo;
}

// ---------------------------------------------------------------------------------------------
// The forward kernel

type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];

function forwardKernel(backendName: SupportedBackend): KernelConfig['kernelFunc'] {
  const kernel = (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const result = simdnormForward(backendName, args);
    if (result !== null) {
      counters.forward++;
      return result;
    }
    const original = originalKernels.get(backendName);
    if (original === undefined) {
      throw new Error(`simdnorm/tfjs: no FusedBatchNorm kernel of tfjs's '${backendName}' backend to run this call on (x shape [${(args.inputs as Inputs).x?.shape.join(', ')}])`);
    }
    counters.fallbackForward++;
    return original.kernelFunc(args);
  };
  ourKernels.add(kernel);
  return kernel;
}

function simdnormForward(backendName: SupportedBackend, args: KernelArgs): TensorInfo | null {
  const { x, mean, variance, scale, offset } = args.inputs as Inputs;
  const eps = (args.attrs as { varianceEpsilon?: unknown } | undefined)?.varianceEpsilon ?? 0.001;
  if (x == null || mean == null || variance == null || !usableEpsilon(eps)) return null;
  const g = channelGeometry(x.shape, [mean.shape, variance.shape, scale?.shape, offset?.shape]);
  if (g === null) return null;
  const io = ioFor(backendName, args.backend);
  const present = [x, mean, variance, scale, offset].filter((t): t is TensorInfo => t != null);
  if (!present.every((t) => io.read(t) !== null)) return null;
  // Outputs first, then the views of the inputs (an allocation may move the wasm heap).
  const out = io.make(x.shape.slice());
  const xs = io.read(x)!;
  const m = io.read(mean)!;
  const v = io.read(variance)!;
  const s = scale == null ? null : io.read(scale);
  const o = offset == null ? null : io.read(offset);
  const C = g.channels;
  const y = io.view(out);
  batchNormInfer(
    {
      x: xs,
      shape: [g.outer, C, g.inner],
      runningMean: perChannel(m, C)!,
      runningVar: perChannel(v, C)!,
      gamma: perChannel(s, C),
      beta: perChannel(o, C),
    },
    { eps, layout: 'channels-first' },
    { y },
  );
  return io.finish(out, y);
}

// ---------------------------------------------------------------------------------------------
// The gradient kernel: dx, dmean, dvariance, dscale, doffset in one pass over dy and x

function gradientKernel(backendName: SupportedBackend): KernelConfig['kernelFunc'] {
  return (args: KernelArgs) => {
    const { dy, x, mean, variance, scale } = args.inputs as Inputs;
    const eps = (args.attrs as { varianceEpsilon: number }).varianceEpsilon;
    const offsetShape = (args.attrs as { offsetShape: number[] }).offsetShape;
    const g = channelGeometry(x!.shape, [mean!.shape, variance!.shape, scale?.shape]);
    const io = ioFor(backendName, args.backend);
    const shapes = [x!.shape, mean!.shape, variance!.shape, scale?.shape ?? mean!.shape, offsetShape];
    const outs = shapes.map((shape) => io.make(shape.slice()));
    const C = g!.channels;
    const dyv = io.read(dy!)!;
    const xv = io.read(x!)!;
    const m = perChannel(io.read(mean!)!, C)!;
    const v = perChannel(io.read(variance!)!, C)!;
    const gamma = scale == null ? null : perChannel(io.read(scale)!, C);
    const invStd = new Float32Array(C);
    for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(v[c] + eps);
    const views = outs.map((t) => io.view(t));
    const dgamma = new Float32Array(C);
    const dbeta = new Float32Array(C);
    batchNormBackward(
      { dy: dyv, x: xv, shape: [g!.outer, C, g!.inner], mean: m, invStd, gamma },
      { layout: 'channels-first', training: false },
      { dx: views[0], dgamma, dbeta },
    );
    const dmean = new Float64Array(C);
    const dvariance = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const k = (gamma === null ? 1 : gamma[c]) * invStd[c];
      dmean[c] = -k * dbeta[c];
      dvariance[c] = -0.5 * k * invStd[c] * dgamma[c];
    }
    writeParamGradient(views[1], dmean);
    writeParamGradient(views[2], dvariance);
    writeParamGradient(views[3], dgamma);
    writeParamGradient(views[4], dbeta);
    return outs.map((t, i) => io.finish(t, views[i]));
  };
}

/** A per-channel gradient into a parameter's gradient: C values, or their sum for a single value. */
function writeParamGradient(target: Float32Array, perC: Float32Array | Float64Array): void {
  if (target.length === perC.length) {
    target.set(perC);
    return;
  }
  let sum = 0;
  for (let c = 0; c < perC.length; c++) sum += perC[c];
  target[0] = sum;
}

const gradConfig: GradConfig = {
  kernelName: FUSED_BATCH_NORM,
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => {
    const [x, mean, variance, scale] = saved;
    const dyT = dy as Tensor;
    const eps = (attrs as { varianceEpsilon?: unknown }).varianceEpsilon ?? 0.001;
    const backendName = engine().backendName as SupportedBackend;
    // Under an outer tape (a gradient of this gradient being taken) tfjs's gradient, made of
    // differentiable ops, is the one that can be differentiated again.
    const ours =
      !engine().isTapeOn() &&
      originalKernels.has(backendName) &&
      getKernel(SIMDNORM_BATCH_NORM_GRAD, backendName) !== undefined &&
      usableEpsilon(eps) &&
      [dyT, x, mean, variance, scale].every((t) => t == null || t.dtype === 'float32') &&
      channelGeometry(x.shape, [mean.shape, variance.shape, scale?.shape]) !== null;
    if (!ours) {
      if (originalGradient === null) throw new Error('simdnorm/tfjs: no FusedBatchNorm gradient of tfjs to fall back on');
      counters.fallbackBackward++;
      return originalGradient.gradFunc(dy, saved, attrs);
    }
    counters.backward++;
    const inputs: NamedTensorMap = { dy: dyT, x, mean, variance };
    if (scale != null) inputs.scale = scale;
    // tfjs's gradient gives offset the shape of mean (offset is not saved); so do we.
    const outs = engine().runKernel(SIMDNORM_BATCH_NORM_GRAD, inputs, { varianceEpsilon: eps, offsetShape: mean.shape }) as Tensor[];
    return {
      x: () => outs[0],
      mean: () => outs[1],
      variance: () => outs[2],
      scale: () => outs[3],
      offset: () => outs[4],
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Registration

function checkOptions(options: unknown): { backends: SupportedBackend[]; layers: boolean } {
  if (options === undefined || options === null) return { backends: [...SUPPORTED_BACKENDS], layers: true };
  if (typeof options !== 'object') throw new TypeError(`options must be an object, received ${typeof options}`);
  const { backends, layers, ...rest } = options as RegisterOptions & Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new RangeError(`options.${unknown[0]} is not an option of simdnorm/tfjs register (known: backends, layers)`);
  if (layers !== undefined && typeof layers !== 'boolean') throw new TypeError(`options.layers must be a boolean, received ${typeof layers}`);
  if (backends === undefined) return { backends: [...SUPPORTED_BACKENDS], layers: layers ?? true };
  if (!Array.isArray(backends)) throw new TypeError(`options.backends must be an array of backend names, received ${typeof backends}`);
  for (const b of backends) {
    if (!(SUPPORTED_BACKENDS as readonly unknown[]).includes(b)) {
      throw new RangeError(`options.backends: '${String(b)}' is not a backend simdnorm/tfjs supports (${SUPPORTED_BACKENDS.join(', ')})`);
    }
  }
  return { backends: [...new Set(backends as SupportedBackend[])], layers: layers ?? true };
}

/**
 * Makes simdnorm the FusedBatchNorm kernel of the given tfjs backends (default cpu and wasm: those
 * whose package is loaded) and the FusedBatchNorm gradient. Importing `simdnorm/tfjs` calls it;
 * call it again after loading a backend package later (`@tensorflow/tfjs-backend-wasm`
 * registers its kernels when imported, replacing ours). Idempotent.
 * @throws TypeError / RangeError naming the option for a bad `options`.
 */
export function register(options?: RegisterOptions): RegisterResult {
  const { backends: wanted, layers } = checkOptions(options);
  for (const name of wanted) {
    const current = getKernel(FUSED_BATCH_NORM, name);
    if (current === undefined) continue; // the backend's package is not loaded
    if (!isOurs(current)) {
      originalKernels.set(name, current);
      unregisterKernel(FUSED_BATCH_NORM, name);
      // The original's setup (tfjs-backend-wasm binds its C function there) runs when the backend
      // initialises after this, with our kernel registered in its place.
      const config: KernelConfig = { kernelName: FUSED_BATCH_NORM, backendName: name, kernelFunc: forwardKernel(name) };
      if (current.setupFunc) config.setupFunc = current.setupFunc;
      if (current.disposeFunc) config.disposeFunc = current.disposeFunc;
      registerKernel(config);
    }
    if (getKernel(SIMDNORM_BATCH_NORM_GRAD, name) === undefined) {
      registerKernel({ kernelName: SIMDNORM_BATCH_NORM_GRAD, backendName: name, kernelFunc: gradientKernel(name) });
    }
    if (layers) registerTrainKernels(name);
  }
  if (originalKernels.size > 0) {
    const current = getGradient(FUSED_BATCH_NORM);
    if (current !== gradConfig) {
      originalGradient = current ?? null;
      if (current !== undefined) unregisterGradient(FUSED_BATCH_NORM);
      registerGradient(gradConfig);
    }
    gradientRegistered = true;
  }
  if (layers && originalKernels.size > 0) {
    patchLayer(registeredBackends);
  } else if (!layers && layerPatched()) {
    unpatchLayer(SUPPORTED_BACKENDS);
  }
  return { backends: registeredBackends(), gradient: gradientRegistered, layers: layerPatched() };
}

function isOurs(config: KernelConfig): boolean {
  return ourKernels.has(config.kernelFunc);
}

/** The backends whose FusedBatchNorm kernel is simdnorm's now. */
export function registeredBackends(): SupportedBackend[] {
  return SUPPORTED_BACKENDS.filter((name) => {
    const k = getKernel(FUSED_BATCH_NORM, name);
    return k !== undefined && isOurs(k);
  });
}

/**
 * Puts back the kernels and the gradient that were registered before `register` (tfjs's own),
 * and removes simdnorm's gradient kernel. Safe to call when not registered.
 */
export function unregister(): void {
  for (const [name, original] of originalKernels) {
    const current = getKernel(FUSED_BATCH_NORM, name);
    if (current !== undefined && isOurs(current)) {
      unregisterKernel(FUSED_BATCH_NORM, name);
      registerKernel(original);
    }
  }
  originalKernels.clear();
  for (const name of SUPPORTED_BACKENDS) {
    if (getKernel(SIMDNORM_BATCH_NORM_GRAD, name) !== undefined) unregisterKernel(SIMDNORM_BATCH_NORM_GRAD, name);
  }
  if (getGradient(FUSED_BATCH_NORM) === gradConfig) {
    unregisterGradient(FUSED_BATCH_NORM);
    if (originalGradient !== null) registerGradient(originalGradient);
  }
  originalGradient = null;
  gradientRegistered = false;
  unpatchLayer(SUPPORTED_BACKENDS);
}

/** Counts of the calls that ran on simdnorm and of those that fell back to tfjs (a copy). */
export function pluginStats(): PluginStats {
  return { ...counters, fusedLayer: fusedLayerCalls() };
}

/** Sets the counts of {@link pluginStats} to 0. */
export function resetPluginStats(): void {
  counters.forward = counters.backward = counters.fallbackForward = counters.fallbackBackward = 0;
  resetFusedLayerCalls();
}
