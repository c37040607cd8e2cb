/**
 * An instance-normalisation layer in the shape of PyTorch's nn.InstanceNorm{1,2,3}d: optional
 * gamma/beta per channel (affine), optional running statistics (trackRunningStats) used in eval
 * mode; state-dict names weight, bias, running_mean, running_var, num_batches_tracked.
 */
import { instanceNorm, instanceNormBackward, type Activation, type FloatArray, type Layout } from '../api.js';
import { checkCount, readShape, shapeOf, type DType } from '../validate.js';
import {
  backwardFirst,
  checkInput,
  copyState,
  layerOptions,
  loadEntries,
  Module,
  outArray,
  type ArrayOfDType,
  type OptionsFor,
  type OptionsWithDType,
  type StateEntry,
} from './common.js';
import { arrayOf, type Pinned, type Slot } from './home.js';
import { typedArrayLength } from '../intrinsics.js';

export interface InstanceNormLayerOptions {
  /** default 1e-5 */
  eps?: number;
  /** weight of the old running value (default 0.9 = PyTorch's 0.1); null: cumulative average */
  momentum?: number | null;
  /** learnable gamma and beta (default false, as PyTorch) */
  affine?: boolean;
  /** keep running statistics and use them in eval mode (default false, as PyTorch) */
  trackRunningStats?: boolean;
  unbiasedRunningVar?: boolean;
  skipNonFiniteUpdate?: boolean;
  layout?: Layout;
  activation?: Activation;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** PyTorch's state-dict names (arrays of numFeatures numbers; the count a number or bigint). */
export interface InstanceNormState {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  running_mean?: ArrayLike<number>;
  running_var?: ArrayLike<number>;
  num_batches_tracked?: number | bigint;
}

/** The constructor, typed by `dtype` like {@link BatchNormConstructor}. */
export interface InstanceNormConstructor {
  new <T extends FloatArray = Float32Array>(numFeatures: number, options?: OptionsFor<InstanceNormLayerOptions, T>): InstanceNorm<T>;
  new <D extends DType, _D>(numFeatures: number, options: OptionsWithDType<InstanceNormLayerOptions, D>): InstanceNorm<ArrayOfDType<D>>;
  new <_A, _B>(numFeatures: number, options?: InstanceNormLayerOptions): InstanceNorm<FloatArray>;
  readonly prototype: InstanceNorm<FloatArray>;
}

export type InstanceNorm<T extends FloatArray = Float32Array> = InstanceNormLayer<T>;

/** What {@link InstanceNorm.state} returns: the entries the layer has. */
export interface InstanceNormStateOf<T extends FloatArray> {
  weight?: T;
  bias?: T;
  running_mean?: T;
  running_var?: T;
  num_batches_tracked?: number;
}

/** What backward needs, pinned (lib/layers/home.ts). */
interface Saved {
  x: Pinned;
  shape: number[];
  y: Pinned;
  mean: Pinned;
  invStd: Pinned;
  /** false: normalised with the running statistics (constants for backward) */
  training: boolean;
}

class InstanceNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly unbiasedRunningVar: boolean;
  readonly skipNonFiniteUpdate: boolean;
  readonly layout: Layout;
  readonly activation: Activation;
  private gammaSlot: Slot | null;
  private betaSlot: Slot | null;
  private dgammaSlot: Slot | null;
  private dbetaSlot: Slot | null;
  private runningMeanSlot: Slot | null;
  private runningVarSlot: Slot | null;
  /** scale (PyTorch's weight), ones at first; null without affine */
  get gamma(): T | null {
    return arrayOf<T>(this.gammaSlot);
  }
  /** shift (PyTorch's bias), zeros at first; null without affine */
  get beta(): T | null {
    return arrayOf<T>(this.betaSlot);
  }
  /** gradients of the last backward (overwritten, not accumulated); null without affine */
  get dgamma(): T | null {
    return arrayOf<T>(this.dgammaSlot);
  }
  get dbeta(): T | null {
    return arrayOf<T>(this.dbetaSlot);
  }
  /** zeros and ones at first; null without trackRunningStats */
  get runningMean(): T | null {
    return arrayOf<T>(this.runningMeanSlot);
  }
  get runningVar(): T | null {
    return arrayOf<T>(this.runningVarSlot);
  }
  numBatchesTracked = 0;
  private saved: Saved | null = null;

  constructor(numFeatures: number, options: InstanceNormLayerOptions = {}) {
    const n = checkCount(numFeatures, 'numFeatures', 1);
    const o = layerOptions(options, 'InstanceNorm', { affine: false, trackRunningStats: false }, [
      'eps',
      'momentum',
      'unbiasedRunningVar',
      'layout',
      'activation',
      'skipNonFiniteUpdate',
    ]);
    super(o.dtype);
    const p = o.parsed;
    this.numFeatures = n;
    this.eps = p.eps;
    this.momentum = p.momentum;
    this.unbiasedRunningVar = p.unbiasedRunningVar;
    this.skipNonFiniteUpdate = p.skipNonFiniteUpdate;
    this.layout = p.layout;
    this.activation = p.activation;
    this.affine = o.flags.affine;
    this.trackRunningStats = o.flags.trackRunningStats;
    const make = (present: boolean, fill: number) => (present ? this.home.param(n, fill, 'numFeatures') : null);
    this.gammaSlot = make(this.affine, 1);
    this.betaSlot = make(this.affine, 0);
    this.dgammaSlot = make(this.affine, 0);
    this.dbetaSlot = make(this.affine, 0);
    this.runningMeanSlot = make(this.trackRunningStats, 0);
    this.runningVarSlot = make(this.trackRunningStats, 1);
  }

  /**
   * Normalises x (of `shape`, channel axis per `layout`) per (sample, channel) and keeps x, the
   * statistics and y for {@link backward}. In training mode the input's statistics, updating the
   * running ones when tracked; in eval mode the running ones when tracked, else the input's.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T }): T {
    const dims = readShape(shape);
    const y = outArray<T>(out, 'y');
    checkInput(x, 'x', this.dtype, 'InstanceNorm');
    const C = shapeOf(dims, this.layout).geometry.channels;
    if (C !== this.numFeatures) {
      throw new RangeError(`shape's channel dim must be numFeatures = ${this.numFeatures}, received ${C} in [${dims.join(', ')}]`);
    }
    const useInputStats = this.training || !this.trackRunningStats;
    const stats = dims[0] * C;
    const home = this.home;
    const xPin = home.pin(x);
    const yPin = home.out('y', typedArrayLength(x), y, [xPin]);
    const meanPin = home.out('mean', stats, undefined, [], this.saved?.mean);
    const invStdPin = home.out('invStd', stats, undefined, [], this.saved?.invStd);
    const r = instanceNorm(
      {
        x: home.arg<T>(xPin)!,
        shape: dims,
        gamma: this.gamma,
        beta: this.beta,
        runningMean: this.runningMean, // updated in training mode, used in eval mode
        runningVar: this.runningVar,
        numBatchesTracked: this.numBatchesTracked,
      },
      {
        eps: this.eps,
        momentum: this.momentum,
        unbiasedRunningVar: this.unbiasedRunningVar,
        skipNonFiniteUpdate: this.skipNonFiniteUpdate,
        layout: this.layout,
        activation: this.activation,
        useInputStats,
      },
      { y: home.arg<T>(yPin), mean: home.arg<T>(meanPin), invStd: home.arg<T>(invStdPin) },
    );
    this.numBatchesTracked = r.numBatchesTracked;
    this.saved = { x: xPin, shape: dims, y: home.keep('y', yPin, r.y), mean: home.keep('mean', meanPin, r.mean), invStd: home.keep('invStd', invStdPin, r.invStd), training: useInputStats };
    return home.resolve(this.saved.y) as T;
  }

  /** Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('InstanceNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'InstanceNorm');
    const home = this.home;
    const dyPin = home.pin(dy);
    const dxPin = home.out('dx', typedArrayLength(dy), dx, [dyPin, s.x, s.y]);
    return home.backward(dxPin, (dxArg) =>
      instanceNormBackward(
        {
          dy: home.arg<T>(dyPin)!,
          x: home.arg<T>(s.x)!,
          shape: s.shape,
          mean: home.arg<T>(s.mean)!,
          invStd: home.arg<T>(s.invStd)!,
          gamma: this.gamma,
          y: this.activation === 'relu' ? home.arg<T>(s.y)! : null,
        },
        { layout: this.layout, activation: this.activation, training: s.training },
        { dx: dxArg, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined },
      ).dx,
    ) as T;
  }

  /**
   * Moves the layer out of the wasm module memory (see BatchNorm.dispose): parameters copied into
   * ordinary arrays, what backward needed dropped, blocks freed once nothing handed out is reachable.
   */
  dispose(): void {
    if (!this.home.inModuleMemory) return;
    [this.gammaSlot, this.betaSlot, this.dgammaSlot, this.dbetaSlot, this.runningMeanSlot, this.runningVarSlot] = this.home.leave([this.gammaSlot, this.betaSlot, this.dgammaSlot, this.dbetaSlot, this.runningMeanSlot, this.runningVarSlot]);
    this.saved = null;
  }

  private entries(): StateEntry[] {
    return [
      ['weight', 'gamma', this.gamma],
      ['bias', 'beta', this.beta],
      ['running_mean', 'runningMean', this.runningMean],
      ['running_var', 'runningVar', this.runningVar],
    ];
  }

  /** The layer's numbers under PyTorch's state-dict names (copies); the count with running statistics. */
  state(): InstanceNormStateOf<T> {
    const state = copyState(this.entries()) as InstanceNormStateOf<T>;
    if (this.trackRunningStats) state.num_batches_tracked = this.numBatchesTracked;
    return state;
  }

  /** Loads {@link state} or PyTorch's state_dict(), all or nothing (see BatchNorm.loadState). */
  loadState(state: InstanceNormState): void {
    this.numBatchesTracked = loadEntries(state, this.entries(), this.numFeatures, this.trackRunningStats, this.numBatchesTracked);
  }
}

Object.defineProperty(InstanceNormLayer, 'name', { value: 'InstanceNorm' });

/** An instance-normalisation layer (PyTorch's nn.InstanceNorm{1,2,3}d), typed by its `dtype`. */
export const InstanceNorm = InstanceNormLayer as InstanceNormConstructor;
