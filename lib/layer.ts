/**
 * A batch-normalisation layer in the shape of PyTorch's nn.BatchNorm{1,2,3}d: it owns gamma,
 * beta and the running statistics, switches between training and evaluation, keeps what
 * backward needs, and reads and writes PyTorch's state-dict names.
 */
import {
  batchNormBackward,
  batchNormInfer,
  batchNormTrain,
  type Activation,
  type FloatArray,
  type Layout,
} from './api.js';
import { copyState, loadEntries, type ArrayOfDType, type DTypeOf, type StateEntry } from './layers/common.js';
import {
  allocateFloat,
  checkCount,
  checkFloatArray,
  checkObject,
  describe,
  parseOptions,
  readShape,
  shapeOf,
  type DType,
} from './validate.js';

export interface BatchNormOptions {
  /** default 1e-5 */
  eps?: number;
  /** weight of the old running value (default 0.9 = PyTorch's 0.1); null: cumulative average */
  momentum?: number | null;
  /** learnable gamma and beta (default true) */
  affine?: boolean;
  /** keep running statistics and use them in eval mode (default true) */
  trackRunningStats?: boolean;
  unbiasedRunningVar?: boolean;
  layout?: Layout;
  activation?: Activation;
  skipNonFiniteUpdate?: boolean;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** PyTorch's state-dict names; numbers may be typed arrays, plain arrays or (the count) a number/bigint. */
export interface BatchNormState {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  running_mean?: ArrayLike<number>;
  running_var?: ArrayLike<number>;
  num_batches_tracked?: number | bigint;
}

interface Saved {
  x: FloatArray;
  shape: readonly number[];
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  training: boolean;
}

export type { ArrayOfDType, DTypeOf } from './layers/common.js';

/** {@link BatchNormOptions} for a layer of arrays T: `dtype` must name T's element type. */
export type BatchNormOptionsFor<T extends FloatArray> = Omit<BatchNormOptions, 'dtype'> & { dtype?: DTypeOf<T> };

/**
 * The layer's constructor, typed by `dtype`: `new BatchNorm(3)` is a `BatchNorm<Float32Array>`,
 * `new BatchNorm(3, { dtype: 'float64' })` a `BatchNorm<Float64Array>` (its forward and backward
 * take and return Float64Array, and refuse Float32Array at compile time, and the reverse), a
 * dtype known only at run time a `BatchNorm<FloatArray>`. `new BatchNorm<Float64Array>(…)` and
 * `class MyNorm extends BatchNorm<Float64Array>` work as with any generic class.
 */
export interface BatchNormConstructor {
  new <T extends FloatArray = Float32Array>(numFeatures: number, options?: BatchNormOptionsFor<T>): BatchNorm<T>;
  // D is inferred from options.dtype; _D (never given) keeps this signature out of `new
  // BatchNorm<T>(…)` and `extends BatchNorm<T>`, which pass one type argument.
  new <D extends DType, _D>(numFeatures: number, options: Omit<BatchNormOptions, 'dtype'> & { dtype: D }): BatchNorm<ArrayOfDType<D>>;
  // A BatchNormOptions value whose dtype the compiler does not know (_A, _B as _D above).
  new <_A, _B>(numFeatures: number, options?: BatchNormOptions): BatchNorm<FloatArray>;
  readonly prototype: BatchNorm<FloatArray>;
}

/** A batch-normalisation layer over arrays of type T (see {@link BatchNormConstructor}). */
export type BatchNorm<T extends FloatArray = Float32Array> = BatchNormLayer<T>;

class BatchNormLayer<T extends FloatArray = Float32Array> {
  readonly numFeatures: number;
  readonly dtype: DType;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly unbiasedRunningVar: boolean;
  readonly layout: Layout;
  readonly activation: Activation;
  readonly skipNonFiniteUpdate: boolean;

  /** scale (PyTorch's weight), ones at first; null without affine */
  readonly gamma: T | null;
  /** shift (PyTorch's bias), zeros at first; null without affine */
  readonly beta: T | null;
  /** null without trackRunningStats */
  readonly runningMean: T | null;
  readonly runningVar: T | null;
  numBatchesTracked = 0;
  /** gradients of the last backward (overwritten, not accumulated); null without affine */
  readonly dgamma: T | null;
  readonly dbeta: T | null;
  /** true after train(), false after eval() */
  training = true;

  private saved: Saved | null = null;

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    this.numFeatures = checkCount(numFeatures, 'numFeatures', 1);
    const o = checkObject(options, 'options');
    const { affine = true, trackRunningStats = true, dtype = 'float32', ...rest } = o;
    for (const [name, value] of Object.entries({ affine, trackRunningStats })) {
      if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be a boolean, received ${describe(value)}`);
    }
    if (dtype !== 'float32' && dtype !== 'float64') {
      throw new RangeError(`options.dtype must be 'float32' or 'float64', received ${describe(dtype)}`);
    }
    const parsed = parseOptions(
      rest,
      ['eps', 'momentum', 'unbiasedRunningVar', 'layout', 'activation', 'skipNonFiniteUpdate'],
      'BatchNorm',
      false,
      ['affine', 'trackRunningStats', 'dtype'],
    );
    this.dtype = dtype;
    this.affine = affine as boolean;
    this.trackRunningStats = trackRunningStats as boolean;
    this.eps = parsed.eps;
    this.momentum = parsed.momentum;
    this.unbiasedRunningVar = parsed.unbiasedRunningVar;
    this.layout = parsed.layout;
    this.activation = parsed.activation;
    this.skipNonFiniteUpdate = parsed.skipNonFiniteUpdate;
    const make = (fill: number): T => {
      const a = allocateFloat(dtype, this.numFeatures, "the layer's parameters", 'numFeatures') as T;
      if (fill !== 0) a.fill(fill);
      return a;
    };
    this.gamma = affine ? make(1) : null;
    this.beta = affine ? make(0) : null;
    this.dgamma = affine ? make(0) : null;
    this.dbeta = affine ? make(0) : null;
    this.runningMean = trackRunningStats ? make(0) : null;
    this.runningVar = trackRunningStats ? make(1) : null;
  }

  private allocate(length: number): FloatArray {
    return this.dtype === 'float32' ? new Float32Array(length) : new Float64Array(length);
  }

  /** Training mode (batch statistics, running stats updated); returns this. */
  train(mode = true): this {
    this.training = mode;
    return this;
  }

  /** Evaluation mode (running statistics); returns this. */
  eval(): this {
    return this.train(false);
  }

  /**
   * Normalises x (of `shape`, channel axis per `layout`) and keeps x, y and the statistics
   * for {@link backward}: do not modify x between forward and backward. In training mode (or
   * without running statistics) it uses the batch statistics and updates the running ones.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T }): T {
    // Each caller value is read once: the shape into a plain array of dims (what the call and
    // backward then use), out.y once; x is only ever read through intrinsics.
    const dims = readShape(shape);
    const yOut = out === undefined || out === null ? undefined : (out as { y?: T }).y;
    checkFloatArray(x, 'x', this.dtype);
    const C = shapeOf(dims, this.layout).geometry.channels;
    if (C !== this.numFeatures) {
      throw new RangeError(`shape's channel dim must be numFeatures = ${this.numFeatures}, received ${C} in [${dims.join(', ')}]`);
    }
    const options = { eps: this.eps, layout: this.layout, activation: this.activation };
    const useBatchStats = this.training || !this.trackRunningStats;
    let saved: Saved;
    if (useBatchStats) {
      const r = batchNormTrain(
        {
          x,
          shape: dims,
          gamma: this.gamma,
          beta: this.beta,
          runningMean: this.training ? this.runningMean : null,
          runningVar: this.training ? this.runningVar : null,
          numBatchesTracked: this.numBatchesTracked,
        },
        {
          ...options,
          momentum: this.momentum,
          unbiasedRunningVar: this.unbiasedRunningVar,
          skipNonFiniteUpdate: this.skipNonFiniteUpdate,
        },
        { y: yOut, mean: this.saved?.mean as T, invStd: this.saved?.invStd as T },
      );
      this.numBatchesTracked = r.numBatchesTracked;
      saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd, training: true };
    } else {
      const { y } = batchNormInfer(
        { x, shape: dims, runningMean: this.runningMean!, runningVar: this.runningVar!, gamma: this.gamma, beta: this.beta },
        options,
        { y: yOut },
      );
      // Eval-mode backward treats the running statistics as the constants they are.
      const mean = this.allocate(this.numFeatures);
      const invStd = this.allocate(this.numFeatures);
      for (let c = 0; c < this.numFeatures; c++) {
        mean[c] = this.runningMean![c];
        invStd[c] = 1 / Math.sqrt(this.runningVar![c] + this.eps);
      }
      saved = { x, shape: dims, y, mean, invStd, training: false };
    }
    this.saved = saved;
    return saved.y as T;
  }

  /**
   * Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}.
   * @throws Error when no forward came before.
   */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw new Error('BatchNorm.backward needs a forward() first');
    const dxOut = out === undefined || out === null ? undefined : (out as { dx?: T }).dx; // read once
    const { dx } = batchNormBackward(
      {
        dy,
        x: s.x,
        shape: s.shape,
        mean: s.mean,
        invStd: s.invStd,
        gamma: this.gamma,
        y: this.activation === 'relu' ? s.y : null,
      },
      { layout: this.layout, activation: this.activation, training: s.training },
      { dx: dxOut, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined },
    );
    return dx as T;
  }

  /** The layer's numbers under PyTorch's state-dict names (copies). */
  state(): Required<Omit<BatchNormState, 'weight' | 'bias' | 'running_mean' | 'running_var'>> & {
    weight?: T;
    bias?: T;
    running_mean?: T;
    running_var?: T;
  } {
    return { ...copyState(entriesOf(this)), num_batches_tracked: this.numBatchesTracked } as ReturnType<BatchNormLayer<T>['state']>;
  }

  /**
   * Loads numbers saved by {@link state} or by PyTorch (state_dict() with tensors turned into
   * arrays). Every entry the layer has must be present with numFeatures numbers (a plain array or
   * array-like of numbers, or a typed array other than a BigInt one); num_batches_tracked, when
   * given, a non-negative safe integer as a number or a bigint. All or nothing: every entry is
   * read once (each element once) into a copy and checked, and only then is anything written.
   * @throws TypeError for a wrong type (an element that is not a number included), RangeError for
   *   a wrong length or count, naming the entry.
   */
  loadState(state: BatchNormState): void {
    this.numBatchesTracked = loadEntries(state, entriesOf(this), this.numFeatures, this.trackRunningStats, this.numBatchesTracked);
  }
}

Object.defineProperty(BatchNormLayer, 'name', { value: 'BatchNorm' });

/**
 * A batch-normalisation layer in the shape of PyTorch's nn.BatchNorm{1,2,3}d, typed by its
 * `dtype` (see {@link BatchNormConstructor}).
 */
export const BatchNorm = BatchNormLayer as BatchNormConstructor;

/** The layer's state-dict entries: PyTorch's name, the layer's property, the array (null: absent). */
function entriesOf(bn: BatchNormLayer<FloatArray>): StateEntry[] {
  return [
    ['weight', 'gamma', bn.gamma],
    ['bias', 'beta', bn.beta],
    ['running_mean', 'runningMean', bn.runningMean],
    ['running_var', 'runningVar', bn.runningVar],
  ];
}
