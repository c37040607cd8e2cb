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
  filled,
  layerOptions,
  loadEntries,
  Module,
  outArray,
  reuse,
  type ArrayOfDType,
  type OptionsFor,
  type OptionsWithDType,
  type StateEntry,
} from './common.js';

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

interface Saved {
  x: FloatArray;
  shape: number[];
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
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
  /** scale (PyTorch's weight), ones at first; null without affine */
  readonly gamma: T | null;
  /** shift (PyTorch's bias), zeros at first; null without affine */
  readonly beta: T | null;
  /** gradients of the last backward (overwritten, not accumulated); null without affine */
  readonly dgamma: T | null;
  readonly dbeta: T | null;
  /** zeros and ones at first; null without trackRunningStats */
  readonly runningMean: T | null;
  readonly runningVar: T | null;
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
    const make = (present: boolean, fill: number) => (present ? filled<T>(o.dtype, n, fill, 'numFeatures') : null);
    this.gamma = make(this.affine, 1);
    this.beta = make(this.affine, 0);
    this.dgamma = make(this.affine, 0);
    this.dbeta = make(this.affine, 0);
    this.runningMean = make(this.trackRunningStats, 0);
    this.runningVar = make(this.trackRunningStats, 1);
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
    const r = instanceNorm(
      {
        x,
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
      { y, mean: reuse<T>(this.saved?.mean, stats), invStd: reuse<T>(this.saved?.invStd, stats) },
    );
    this.numBatchesTracked = r.numBatchesTracked;
    this.saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd, training: useInputStats };
    return r.y;
  }

  /** Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('InstanceNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'InstanceNorm');
    const r = instanceNormBackward(
      {
        dy,
        x: s.x as T,
        shape: s.shape,
        mean: s.mean as T,
        invStd: s.invStd as T,
        gamma: this.gamma,
        y: this.activation === 'relu' ? (s.y as T) : null,
      },
      { layout: this.layout, activation: this.activation, training: s.training },
      { dx, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined },
    );
    return r.dx;
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
