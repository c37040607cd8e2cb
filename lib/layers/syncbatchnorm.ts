/**
 * The SyncBatchNorm layer: BatchNorm (lib/layer.ts) whose training statistics come from every
 * rank's shard of the batch through a Collective (lib/ops/syncbatchnorm.ts), like PyTorch's
 * nn.SyncBatchNorm. Same state-dict names as BatchNorm; SyncBatchNorm.fromBatchNorm and
 * toBatchNorm convert between them (PyTorch's convert_sync_batchnorm). forward and backward are
 * async: in training they exchange with the other ranks; in eval mode they run locally with the
 * running statistics, as PyTorch's does.
 */
import { batchNormBackwardAsync, batchNormInferAsync, batchNormTrainAsync, type Activation, type FloatArray, type Layout } from '../api.js';
import { BatchNorm, type BatchNormState } from '../layer.js';
import { syncBatchNormBackward, syncBatchNormTrain } from '../ops/syncbatchnorm.js';
import { readCollective, type Collective } from '../sync/collective.js';
import { checkCount, checkFloatArray, checkObject, describe, parseOptions, readShape, shapeOf, type DType } from '../validate.js';
import { backwardFirst, copyState, filled, loadEntries, outArray, reuse, type StateEntry } from './common.js';

export interface SyncBatchNormOptions {
  eps?: number;
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
  unbiasedRunningVar?: boolean;
  layout?: Layout;
  activation?: Activation;
  skipNonFiniteUpdate?: boolean;
  dtype?: DType;
}

interface Saved {
  x: FloatArray;
  shape: readonly number[];
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  /** the statistics were the batch's (synchronised in training) */
  batchStats: boolean;
  synced: boolean;
}

/** SyncBatchNorm over arrays T; one instance per rank, each with the same options and state. */
export class SyncBatchNorm<T extends FloatArray = Float32Array> {
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
  /** this rank's end of the exchange */
  readonly collective: Collective;
  readonly gamma: T | null;
  readonly beta: T | null;
  readonly runningMean: T | null;
  readonly runningVar: T | null;
  numBatchesTracked = 0;
  /** gradients of the last backward: the whole batch's, the same on every rank; null without affine */
  readonly dgamma: T | null;
  readonly dbeta: T | null;
  training = true;
  private saved: Saved | null = null;

  /**
   * @param collective this rank's Collective (createLocalCollectives, sharedCollective,
   *   channelCollective, or your own)
   * @throws TypeError / RangeError naming the option, as BatchNorm's constructor; renorm and
   *   virtualBatchSize are not supported.
   */
  constructor(numFeatures: number, collective: Collective, options: SyncBatchNormOptions = {}) {
    this.numFeatures = checkCount(numFeatures, 'numFeatures', 1);
    this.collective = readCollective(collective);
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
      'SyncBatchNorm',
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
    const n = this.numFeatures;
    this.gamma = affine ? filled<T>(dtype, n, 1, 'numFeatures') : null;
    this.beta = affine ? filled<T>(dtype, n, 0, 'numFeatures') : null;
    this.dgamma = affine ? filled<T>(dtype, n, 0, 'numFeatures') : null;
    this.dbeta = affine ? filled<T>(dtype, n, 0, 'numFeatures') : null;
    this.runningMean = trackRunningStats ? filled<T>(dtype, n, 0, 'numFeatures') : null;
    this.runningVar = trackRunningStats ? filled<T>(dtype, n, 1, 'numFeatures') : null;
  }

  /**
   * A SyncBatchNorm with a BatchNorm's options and a copy of its state (its mode too), on this
   * rank's collective (PyTorch's convert_sync_batchnorm). RangeError when the BatchNorm uses
   * renorm or virtualBatchSize.
   */
  static fromBatchNorm<T extends FloatArray>(bn: BatchNorm<T>, collective: Collective): SyncBatchNorm<T> {
    if (!(bn instanceof BatchNorm)) throw new TypeError(`bn must be a BatchNorm, received ${describe(bn)}`);
    if (bn.renorm !== null) throw new RangeError('a BatchNorm with renorm cannot be converted to SyncBatchNorm');
    if (bn.virtualBatchSize !== null) throw new RangeError('a BatchNorm with virtualBatchSize cannot be converted to SyncBatchNorm');
    const s = new SyncBatchNorm<T>(bn.numFeatures, collective, {
      eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats,
      unbiasedRunningVar: bn.unbiasedRunningVar, layout: bn.layout, activation: bn.activation,
      skipNonFiniteUpdate: bn.skipNonFiniteUpdate, dtype: bn.dtype,
    });
    s.loadState(bn.state());
    s.training = bn.training;
    return s;
  }

  /** A BatchNorm with this layer's options and a copy of its state and mode. */
  toBatchNorm(): BatchNorm<T> {
    const bn = new BatchNorm<FloatArray>(this.numFeatures, {
      eps: this.eps, momentum: this.momentum, affine: this.affine, trackRunningStats: this.trackRunningStats,
      unbiasedRunningVar: this.unbiasedRunningVar, layout: this.layout, activation: this.activation,
      skipNonFiniteUpdate: this.skipNonFiniteUpdate, dtype: this.dtype,
    }) as unknown as BatchNorm<T>;
    bn.loadState(this.state());
    bn.training = this.training;
    return bn;
  }

  train(mode = true): this {
    this.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Normalises this rank's shard x (of `shape`). Training: with the statistics of every rank's
   * shard (syncBatchNormTrain; every rank calls forward in step), the running statistics updated
   * once with the whole batch's. Eval: locally with the running statistics (without them, with
   * the shard's own statistics). Keeps what backward needs: do not modify x until then.
   * @throws (rejects) as syncBatchNormTrain; a rejected call leaves the layer as it was.
   */
  async forward(x: T, shape: readonly number[], out?: { y?: T }): Promise<T> {
    const dims = readShape(shape);
    const yOut = outArray<T>(out, 'y');
    checkFloatArray(x, 'x', this.dtype);
    const C = shapeOf(dims, this.layout).geometry.channels;
    if (C !== this.numFeatures) {
      throw new RangeError(`shape's channel dim must be numFeatures = ${this.numFeatures}, received ${C} in [${dims.join(', ')}]`);
    }
    const options = { eps: this.eps, layout: this.layout, activation: this.activation };
    const mean = reuse<T>(this.saved?.mean, C);
    const invStd = reuse<T>(this.saved?.invStd, C);
    if (this.training) {
      const r = await syncBatchNormTrain(
        { x, shape: dims, gamma: this.gamma, beta: this.beta, runningMean: this.runningMean, runningVar: this.runningVar, numBatchesTracked: this.numBatchesTracked },
        { ...options, momentum: this.momentum, unbiasedRunningVar: this.unbiasedRunningVar, skipNonFiniteUpdate: this.skipNonFiniteUpdate },
        this.collective,
        { y: yOut, mean, invStd },
      );
      this.numBatchesTracked = r.numBatchesTracked;
      this.saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd, batchStats: true, synced: true };
      return r.y as T;
    }
    if (!this.trackRunningStats) {
      const r = await batchNormTrainAsync({ x, shape: dims, gamma: this.gamma, beta: this.beta }, options, { y: yOut, mean, invStd });
      this.saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd, batchStats: true, synced: false };
      return r.y as T;
    }
    const { y } = await batchNormInferAsync(
      { x, shape: dims, runningMean: this.runningMean!, runningVar: this.runningVar!, gamma: this.gamma, beta: this.beta },
      options,
      { y: yOut },
    );
    const m = new (this.dtype === 'float32' ? Float32Array : Float64Array)(C);
    const s = new (this.dtype === 'float32' ? Float32Array : Float64Array)(C);
    for (let c = 0; c < C; c++) {
      m[c] = this.runningMean![c];
      s[c] = 1 / Math.sqrt(this.runningVar![c] + this.eps);
    }
    this.saved = { x, shape: dims, y, mean: m, invStd: s, batchStats: false, synced: false };
    return y as T;
  }

  /**
   * Gradient with respect to the last forward's input; sets dgamma and dbeta. After a training
   * forward every rank must call it in step (syncBatchNormBackward: the whole batch's sums).
   * @throws Error when no forward came before; rejects as syncBatchNormBackward.
   */
  async backward(dy: T, out?: { dx?: T }): Promise<T> {
    const s = this.saved;
    if (!s) throw backwardFirst('SyncBatchNorm');
    const dxOut = outArray<T>(out, 'dx');
    const inputs = { dy, x: s.x, shape: s.shape, mean: s.mean, invStd: s.invStd, gamma: this.gamma, y: this.activation === 'relu' ? s.y : null };
    const outs = { dx: dxOut, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined };
    const options = { layout: this.layout, activation: this.activation };
    const r = s.synced
      ? await syncBatchNormBackward(inputs, options, this.collective, outs)
      : await batchNormBackwardAsync(inputs, { ...options, training: s.batchStats }, outs);
    return r.dx as T;
  }

  /** The layer's numbers under PyTorch's state-dict names (copies), as BatchNorm's. */
  state(): BatchNormState & { num_batches_tracked: number } {
    return { ...copyState(this.entries()), num_batches_tracked: this.numBatchesTracked };
  }

  /** Loads a state as BatchNorm.loadState (all or nothing). */
  loadState(state: BatchNormState): void {
    this.numBatchesTracked = loadEntries(state, this.entries(), this.numFeatures, this.trackRunningStats, this.numBatchesTracked);
  }

  private entries(): StateEntry[] {
    return [
      ['weight', 'gamma', this.gamma],
      ['bias', 'beta', this.beta],
      ['running_mean', 'runningMean', this.runningMean],
      ['running_var', 'runningVar', this.runningVar],
    ];
  }
}
