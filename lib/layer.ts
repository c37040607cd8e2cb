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
import { checkCount, checkFloatArray, checkObject, checkShape, describe, parseOptions, type DType } from './validate.js';

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

export class BatchNorm<T extends FloatArray = Float32Array> {
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
    const make = (fill: number): T => this.allocate(this.numFeatures).fill(fill) as T;
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
    checkFloatArray(x, 'x', this.dtype);
    const C = checkShape(shape, this.layout).geometry.channels;
    if (C !== this.numFeatures) {
      throw new RangeError(`shape's channel dim must be numFeatures = ${this.numFeatures}, received ${C} in [${shape.join(', ')}]`);
    }
    const options = { eps: this.eps, layout: this.layout, activation: this.activation };
    const useBatchStats = this.training || !this.trackRunningStats;
    let saved: Saved;
    if (useBatchStats) {
      const r = batchNormTrain(
        {
          x,
          shape,
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
        { y: out?.y, mean: this.saved?.mean as T, invStd: this.saved?.invStd as T },
      );
      this.numBatchesTracked = r.numBatchesTracked;
      saved = { x, shape, y: r.y, mean: r.mean, invStd: r.invStd, training: true };
    } else {
      const { y } = batchNormInfer(
        { x, shape, runningMean: this.runningMean!, runningVar: this.runningVar!, gamma: this.gamma, beta: this.beta },
        options,
        out,
      );
      // Eval-mode backward treats the running statistics as the constants they are.
      const mean = this.allocate(this.numFeatures);
      const invStd = this.allocate(this.numFeatures);
      for (let c = 0; c < this.numFeatures; c++) {
        mean[c] = this.runningMean![c];
        invStd[c] = 1 / Math.sqrt(this.runningVar![c] + this.eps);
      }
      saved = { x, shape, y, mean, invStd, training: false };
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
      { dx: out?.dx, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined },
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
    const copy = (a: T | null): T | undefined => (a ? (a.slice() as T) : undefined);
    const state = {
      weight: copy(this.gamma),
      bias: copy(this.beta),
      running_mean: copy(this.runningMean),
      running_var: copy(this.runningVar),
      num_batches_tracked: this.numBatchesTracked,
    };
    for (const key of Object.keys(state) as (keyof typeof state)[]) if (state[key] === undefined) delete state[key];
    return state;
  }

  /**
   * Loads numbers saved by {@link state} or by PyTorch (state_dict() with tensors turned into
   * arrays). Every entry the layer has must be present with numFeatures values; all are checked
   * before any is written.
   */
  loadState(state: BatchNormState): void {
    const s = checkObject(state, 'state');
    const pairs: [string, T | null][] = [
      ['weight', this.gamma],
      ['bias', this.beta],
      ['running_mean', this.runningMean],
      ['running_var', this.runningVar],
    ];
    const checked = pairs
      .filter(([, target]) => target !== null)
      .map(([name, target]) => {
        const value = s[name] as ArrayLike<number> | undefined;
        if (value === undefined || value === null || typeof value !== 'object' || typeof value.length !== 'number') {
          throw new TypeError(`state.${name} must be an array of ${this.numFeatures} numbers, received ${describe(value)}`);
        }
        if (value.length !== this.numFeatures) {
          throw new RangeError(`state.${name} must have length ${this.numFeatures}, received length ${value.length}`);
        }
        return [target!, value] as const;
      });
    let count = this.numBatchesTracked;
    if (this.trackRunningStats && s.num_batches_tracked !== undefined) {
      const n = s.num_batches_tracked;
      count = checkCount(typeof n === 'bigint' ? Number(n) : n, 'state.num_batches_tracked');
    }
    for (const [target, value] of checked) {
      for (let c = 0; c < this.numFeatures; c++) target[c] = Number(value[c]);
    }
    this.numBatchesTracked = count;
  }
}
