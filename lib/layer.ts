/**
 * A batch-normalisation layer in the shape of PyTorch's nn.BatchNorm{1,2,3}d: it owns gamma,
 * beta and the running statistics, switches between training and evaluation, keeps what
 * backward needs, and reads and writes PyTorch's state-dict names.
 */
import type { Activation, FloatArray, Layout } from './api.js';
import { typedArrayLength } from './intrinsics.js';
import { layerBackward, layerInfer, layerTrain } from './ops/batchnorm.js';
import { copyState, loadEntries, reuse, type ArrayOfDType, type DTypeOf, type StateEntry } from './layers/common.js';
import { arrayOf, Home, type Pinned, type Slot } from './layers/home.js';
import {
  checkRenorm,
  checkCount,
  checkFloatArray,
  checkObject,
  DEFAULT_OPTIONS,
  describe,
  parseOptions,
  readShape,
  shapeOf,
  type DType,
  type ParsedOptions,
  type Shape,
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
  /**
   * Batch Renormalization in training (needs trackRunningStats): a fixed `{ rmax, dmax }`, or a
   * schedule `(step) => ({ rmax, dmax })` called once per training forward with step =
   * numBatchesTracked before the call (the paper ramps rmax 1 → 3 and dmax 0 → 5); null: off
   */
  renorm?: RenormClip | ((step: number) => RenormClip) | null;
  /** ghost BatchNorm in training: statistics per chunk of this many samples (must divide N); null: off */
  virtualBatchSize?: number | null;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** Batch Renormalization's limits: r in [1/rmax, rmax], d in [−dmax, dmax]. */
export interface RenormClip {
  rmax: number;
  dmax: number;
}

/** PyTorch's state-dict names; numbers may be typed arrays, plain arrays or (the count) a number/bigint. */
export interface BatchNormState {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  running_mean?: ArrayLike<number>;
  running_var?: ArrayLike<number>;
  num_batches_tracked?: number | bigint;
}

/** What backward needs; arrays pinned (lib/layers/home.ts: a view of module memory is re-made after growth). */
interface Saved {
  x: Pinned;
  /** the forward's shape under the layer's layout (backward's too) */
  shape: Shape;
  y: Pinned;
  mean: Pinned;
  invStd: Pinned;
  training: boolean;
  r: FloatArray | null;
  d: FloatArray | null;
  virtualBatchSize: number | null;
  /** the forward's residual (backward then returns dz; its values are not read again) */
  residual: Pinned | null;
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
  /** Batch Renormalization's fixed limits or schedule (null: off) */
  readonly renorm: RenormClip | ((step: number) => RenormClip) | null;
  /** ghost BatchNorm's samples per virtual batch in training (null: the whole batch) */
  readonly virtualBatchSize: number | null;
  /** r and d of the last training forward with renorm (null otherwise) */
  r: T | null = null;
  d: T | null = null;

  // The layer's arrays: blocks of module memory when it was made on the wasm backend (README
  // "Layers on WASM"), else ordinary arrays; the getters below give a current view of each.
  private readonly home: Home;
  private gammaSlot: Slot | null;
  private betaSlot: Slot | null;
  private runningMeanSlot: Slot | null;
  private runningVarSlot: Slot | null;
  private dgammaSlot: Slot | null;
  private dbetaSlot: Slot | null;
  private dzRef: Pinned | null = null;

  /** scale (PyTorch's weight), ones at first; null without affine */
  get gamma(): T | null {
    return arrayOf<T>(this.gammaSlot);
  }
  /** shift (PyTorch's bias), zeros at first; null without affine */
  get beta(): T | null {
    return arrayOf<T>(this.betaSlot);
  }
  /** null without trackRunningStats */
  get runningMean(): T | null {
    return arrayOf<T>(this.runningMeanSlot);
  }
  get runningVar(): T | null {
    return arrayOf<T>(this.runningVarSlot);
  }
  numBatchesTracked = 0;
  /** gradients of the last backward (overwritten, not accumulated); null without affine */
  get dgamma(): T | null {
    return arrayOf<T>(this.dgammaSlot);
  }
  get dbeta(): T | null {
    return arrayOf<T>(this.dbetaSlot);
  }
  /** the last backward's gradient of the forward's residual (overwritten by the next one); null without a residual */
  get dz(): T | null {
    return this.dzRef === null ? null : (this.home.resolve(this.dzRef) as T);
  }
  set dz(value: T | null) {
    this.dzRef = value;
  }
  /** Whether the layer keeps its arrays in the wasm module memory (made on the wasm backend, not disposed). */
  get inWasmMemory(): boolean {
    return this.home.inModuleMemory;
  }
  /** the array the layer writes dz into when backward gets no out.dz (never a caller's out.dz) */
  private ownDz: FloatArray | undefined = undefined;
  /** true after train(), false after eval() */
  training = true;

  private saved: Saved | null = null;
  // The options of each call, as parseOptions would return them for its function, made once
  // from the layer's checked options (a step does not parse them again).
  private readonly trainOptions: Readonly<ParsedOptions>;
  private readonly inferOptions: Readonly<ParsedOptions>;

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    this.numFeatures = checkCount(numFeatures, 'numFeatures', 1);
    const o = checkObject(options, 'options');
    const { affine = true, trackRunningStats = true, dtype = 'float32', renorm = null, ...rest } = o;
    for (const [name, value] of Object.entries({ affine, trackRunningStats })) {
      if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be a boolean, received ${describe(value)}`);
    }
    if (dtype !== 'float32' && dtype !== 'float64') {
      throw new RangeError(`options.dtype must be 'float32' or 'float64', received ${describe(dtype)}`);
    }
    const parsed = parseOptions(
      rest,
      ['eps', 'momentum', 'unbiasedRunningVar', 'layout', 'activation', 'skipNonFiniteUpdate', 'virtualBatchSize'],
      'BatchNorm',
      false,
      ['affine', 'trackRunningStats', 'dtype', 'renorm'],
    );
    const schedule = typeof renorm === 'function' ? (renorm as (step: number) => RenormClip) : null;
    const fixed = schedule === null && renorm !== null && renorm !== undefined ? checkRenorm(renorm, 'options.renorm') : null;
    if ((schedule !== null || fixed !== null) && trackRunningStats === false) {
      throw new RangeError('options.renorm needs the running statistics: it cannot be combined with trackRunningStats: false');
    }
    if ((schedule !== null || fixed !== null) && parsed.virtualBatchSize !== null) {
      throw new RangeError('options.renorm and options.virtualBatchSize cannot be combined: give one of them (the other null)');
    }
    this.renorm = schedule ?? fixed;
    this.virtualBatchSize = parsed.virtualBatchSize;
    this.dtype = dtype;
    this.affine = affine as boolean;
    this.trackRunningStats = trackRunningStats as boolean;
    this.eps = parsed.eps;
    this.momentum = parsed.momentum;
    this.unbiasedRunningVar = parsed.unbiasedRunningVar;
    this.layout = parsed.layout;
    this.activation = parsed.activation;
    this.skipNonFiniteUpdate = parsed.skipNonFiniteUpdate;
    this.home = new Home(dtype);
    const make = (fill: number): Slot => this.home.param(this.numFeatures, fill, 'numFeatures');
    this.gammaSlot = affine ? make(1) : null;
    this.betaSlot = affine ? make(0) : null;
    this.dgammaSlot = affine ? make(0) : null;
    this.dbetaSlot = affine ? make(0) : null;
    this.runningMeanSlot = trackRunningStats ? make(0) : null;
    this.runningVarSlot = trackRunningStats ? make(1) : null;
    this.inferOptions = Object.freeze({ ...DEFAULT_OPTIONS, eps: this.eps, epsGiven: true, layout: this.layout, activation: this.activation });
    this.trainOptions = Object.freeze({
      ...this.inferOptions,
      momentum: this.momentum,
      unbiasedRunningVar: this.unbiasedRunningVar,
      skipNonFiniteUpdate: this.skipNonFiniteUpdate,
    });
  }

  // The last forward's shape: a step of the same dims reuses it instead of deriving it again.
  private lastShape: Shape | null = null;
  /** shapeOf(dims, layout), the last one again when `dims` (read by readShape) are the same. */
  private shapeFor(dims: readonly number[]): Shape {
    const last = this.lastShape;
    if (last !== null && last.dims.length === dims.length) {
      let same = true;
      for (let i = 0; i < dims.length; i++) same = same && last.dims[i] === dims[i];
      if (same) return last;
    }
    return (this.lastShape = shapeOf(dims, this.layout));
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
   * `out.residual` (x's shape and type): z added before the activation, y = act(BN(x) + z)
   * (README "BatchNorm variants"); {@link backward} then also sets {@link dz}. `out.y` may be x or z.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T; residual?: T | null }): T {
    // Each caller value is read once: the shape into a plain array of dims (what the call and
    // backward then use), out.y and out.residual once; x is only ever read through intrinsics.
    const dims = readShape(shape);
    const yOut = out === undefined || out === null ? undefined : (out as { y?: T }).y;
    const residualValue = out === undefined || out === null ? undefined : (out as { residual?: T | null }).residual;
    const residualGiven = residualValue === undefined || residualValue === null ? null : residualValue;
    checkFloatArray(x, 'x', this.dtype);
    const shapeOfX = this.shapeFor(dims);
    const C = shapeOfX.geometry.channels;
    if (C !== this.numFeatures) {
      throw new RangeError(`shape's channel dim must be numFeatures = ${this.numFeatures}, received ${C} in [${dims.join(', ')}]`);
    }
    const home = this.home;
    // Where the inputs lie, before the layer's outputs are allocated (which may grow the module
    // memory and detach views of it); re-viewed after.
    const xPin = home.pin(x);
    const zPin = residualGiven === null ? null : home.pin(residualGiven);
    const yPin = home.out('y', typedArrayLength(x), yOut, [xPin, zPin]);
    const useBatchStats = this.training || !this.trackRunningStats;
    let saved: Saved;
    if (useBatchStats) {
      // The variants apply in training only (eval without running statistics: plain batch statistics).
      const virtualBatchSize = this.training ? this.virtualBatchSize : null;
      const renorm = this.training && this.renorm !== null ? this.renormAt(this.numBatchesTracked) : null;
      const statistics = virtualBatchSize === null ? C : (dims[0] / virtualBatchSize) * C;
      const opts = virtualBatchSize === null && renorm === null ? this.trainOptions : { ...this.trainOptions, renorm, virtualBatchSize };
      // N can differ from call to call, and with it the length of ghost statistics
      const meanPin = home.out('mean', statistics, undefined, [], this.saved?.mean);
      const invStdPin = home.out('invStd', statistics, undefined, [], this.saved?.invStd);
      const r = layerTrain(
        opts,
        home.resolve(xPin),
        shapeOfX,
        this.gamma,
        this.beta,
        this.training ? this.runningMean : null,
        this.training ? this.runningVar : null,
        this.numBatchesTracked,
        home.arg<T>(yPin),
        home.arg<T>(meanPin),
        home.arg<T>(invStdPin),
        zPin === null ? null : home.resolve(zPin),
      );
      this.numBatchesTracked = r.numBatchesTracked;
      this.r = (r.r ?? null) as T | null;
      this.d = (r.d ?? null) as T | null;
      saved = {
        x: xPin,
        shape: shapeOfX,
        y: home.keep('y', yPin, r.y),
        mean: home.keep('mean', meanPin, r.mean),
        invStd: home.keep('invStd', invStdPin, r.invStd),
        training: true,
        r: r.r ?? null,
        d: r.d ?? null,
        virtualBatchSize,
        residual: zPin,
      };
    } else {
      const runningMean = this.runningMean!;
      const runningVar = this.runningVar!;
      const y = layerInfer(this.inferOptions, home.resolve(xPin), shapeOfX, runningMean, runningVar, this.gamma, this.beta, home.arg<T>(yPin), zPin === null ? null : home.resolve(zPin));
      const yKept = home.keep('y', yPin, y);
      // Eval-mode backward treats the running statistics as the constants they are.
      const mean = this.allocate(this.numFeatures);
      const invStd = this.allocate(this.numFeatures);
      const rm = this.runningMean!; // current views (the call may have grown the memory)
      const rv = this.runningVar!;
      for (let c = 0; c < this.numFeatures; c++) {
        mean[c] = rm[c];
        invStd[c] = 1 / Math.sqrt(rv[c] + this.eps);
      }
      saved = { x: xPin, shape: shapeOfX, y: yKept, mean, invStd, training: false, r: null, d: null, virtualBatchSize: null, residual: zPin };
    }
    this.saved = saved;
    return home.resolve(saved.y) as T;
  }

  /**
   * Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}, and
   * {@link dz} (into `out.dz` when given, else an array the layer keeps) after a forward with a residual.
   * @throws Error when no forward came before.
   */
  backward(dy: T, out?: { dx?: T; dz?: T }): T {
    const s = this.saved;
    if (!s) throw new Error('BatchNorm.backward needs a forward() first');
    const dxOut = out === undefined || out === null ? undefined : (out as { dx?: T }).dx; // read once
    const dzGiven = out === undefined || out === null ? undefined : (out as { dz?: T }).dz; // read once
    const home = this.home;
    const dyPin = home.pin(dy);
    const n = typedArrayLength(home.resolve(s.x));
    const reads = [dyPin, s.x, s.y, s.residual];
    const dxPin = home.out('dx', n, dxOut, reads);
    // dz: the caller's out.dz, else (after a forward with a residual) the layer's own (a caller's is never reused)
    const dzPin = s.residual === null && dzGiven === undefined ? undefined : home.out('dz', n, dzGiven, reads, this.ownDz);
    const opts = this.backwardOptions(s.training, s.virtualBatchSize);
    const run = () =>
      layerBackward(
        opts,
        home.resolve(dyPin) as T,
        home.resolve(s.x),
        s.shape,
        home.resolve(s.mean),
        home.resolve(s.invStd),
        this.gamma,
        this.activation === 'relu' ? home.resolve(s.y) : null,
        s.r,
        s.d,
        home.arg<T>(dxPin),
        this.dgamma ?? undefined,
        this.dbeta ?? undefined,
        s.residual === null ? null : home.resolve(s.residual),
        home.arg<T>(dzPin),
      );
    const { dx, dz } = run();
    this.dzRef = dz === undefined ? null : dzGiven === undefined ? home.keep('dz', dzPin, dz) : dzPin!;
    if (dz !== undefined && dzGiven === undefined && !home.inModuleMemory) this.ownDz = dz;
    return home.resolve(home.keep('dx', dxPin, dx)) as T;
  }

  /**
   * Moves the layer out of the wasm module memory: its parameters and running statistics are
   * copied into ordinary arrays (re-read bn.gamma …), what backward needed is dropped (the next
   * backward needs a forward first), and its blocks are freed once no array it handed out is
   * reachable (an array kept from it stays valid). The layer keeps working, on any backend. A
   * layer of ordinary arrays: nothing happens. (A layer that is garbage-collected frees its
   * blocks the same way without dispose().)
   */
  dispose(): void {
    if (!this.home.inModuleMemory) return;
    const slots = [this.gammaSlot, this.betaSlot, this.runningMeanSlot, this.runningVarSlot, this.dgammaSlot, this.dbetaSlot];
    [this.gammaSlot, this.betaSlot, this.runningMeanSlot, this.runningVarSlot, this.dgammaSlot, this.dbetaSlot] = this.home.leave(slots);
    this.saved = null;
    this.dzRef = null;
    this.ownDz = undefined;
  }

  // Backward's options per (training, virtualBatchSize) of the forward call; the common two made once.
  private backwardTrain: Readonly<ParsedOptions> | null = null;
  private backwardEval: Readonly<ParsedOptions> | null = null;
  private backwardOptions(training: boolean, virtualBatchSize: number | null): Readonly<ParsedOptions> {
    const make = (): Readonly<ParsedOptions> =>
      Object.freeze({ ...DEFAULT_OPTIONS, layout: this.layout, activation: this.activation, training, virtualBatchSize });
    if (virtualBatchSize !== null) return make();
    return training ? (this.backwardTrain ??= make()) : (this.backwardEval ??= make());
  }

  /** The renorm limits for a training step: the fixed ones, or the schedule's (its result read once and checked). */
  private renormAt(step: number): RenormClip {
    const renorm = this.renorm!;
    return typeof renorm === 'function' ? checkRenorm(renorm(step), 'options.renorm(step)') : renorm;
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

