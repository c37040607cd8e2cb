/**
 * A group-normalisation layer in the shape of PyTorch's nn.GroupNorm: numChannels split into
 * numGroups; gamma (ones) and beta (zeros) per channel, state-dict names weight and bias.
 */
import { groupNorm, groupNormBackward, type Activation, type FloatArray, type Layout } from '../api.js';
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

export interface GroupNormLayerOptions {
  /** default 1e-5 */
  eps?: number;
  /** learnable gamma and beta per channel (default true) */
  affine?: boolean;
  layout?: Layout;
  activation?: Activation;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** PyTorch's state-dict names (arrays of numChannels numbers). */
export interface GroupNormState {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
}

/** The constructor, typed by `dtype` like {@link BatchNormConstructor}. */
export interface GroupNormConstructor {
  new <T extends FloatArray = Float32Array>(numGroups: number, numChannels: number, options?: OptionsFor<GroupNormLayerOptions, T>): GroupNorm<T>;
  new <D extends DType, _D>(numGroups: number, numChannels: number, options: OptionsWithDType<GroupNormLayerOptions, D>): GroupNorm<ArrayOfDType<D>>;
  new <_A, _B>(numGroups: number, numChannels: number, options?: GroupNormLayerOptions): GroupNorm<FloatArray>;
  readonly prototype: GroupNorm<FloatArray>;
}

export type GroupNorm<T extends FloatArray = Float32Array> = GroupNormLayer<T>;

interface Saved {
  x: FloatArray;
  shape: number[];
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
}

class GroupNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly numGroups: number;
  readonly numChannels: number;
  readonly eps: number;
  readonly affine: boolean;
  readonly layout: Layout;
  readonly activation: Activation;
  /** scale (PyTorch's weight), ones at first; null without affine */
  readonly gamma: T | null;
  /** shift (PyTorch's bias), zeros at first; null without affine */
  readonly beta: T | null;
  /** gradients of the last backward (overwritten, not accumulated); null without affine */
  readonly dgamma: T | null;
  readonly dbeta: T | null;
  private saved: Saved | null = null;

  constructor(numGroups: number, numChannels: number, options: GroupNormLayerOptions = {}) {
    const groups = checkCount(numGroups, 'numGroups', 1);
    const channels = checkCount(numChannels, 'numChannels', 1);
    if (channels % groups !== 0) {
      throw new RangeError(`numGroups must divide numChannels = ${channels}, received numGroups = ${groups}`);
    }
    const o = layerOptions(options, 'GroupNorm', { affine: true }, ['eps', 'layout', 'activation']);
    super(o.dtype);
    this.numGroups = groups;
    this.numChannels = channels;
    this.eps = o.parsed.eps;
    this.layout = o.parsed.layout;
    this.activation = o.parsed.activation;
    this.affine = o.flags.affine;
    const make = (fill: number) => (this.affine ? filled<T>(o.dtype, channels, fill, 'numChannels') : null);
    this.gamma = make(1);
    this.beta = make(0);
    this.dgamma = make(0);
    this.dbeta = make(0);
  }

  /**
   * Normalises x (of `shape`, channel axis per `layout`) and keeps x, the statistics and y for
   * {@link backward}: do not modify x between forward and backward.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T }): T {
    const dims = readShape(shape);
    const y = outArray<T>(out, 'y');
    checkInput(x, 'x', this.dtype, 'GroupNorm');
    const C = shapeOf(dims, this.layout).geometry.channels;
    if (C !== this.numChannels) {
      throw new RangeError(`shape's channel dim must be numChannels = ${this.numChannels}, received ${C} in [${dims.join(', ')}]`);
    }
    const stats = dims[0] * this.numGroups;
    const r = groupNorm(
      { x, shape: dims, groups: this.numGroups, gamma: this.gamma, beta: this.beta },
      { eps: this.eps, layout: this.layout, activation: this.activation },
      { y, mean: reuse<T>(this.saved?.mean, stats), invStd: reuse<T>(this.saved?.invStd, stats) },
    );
    this.saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd };
    return r.y;
  }

  /** Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('GroupNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'GroupNorm');
    const r = groupNormBackward(
      {
        dy,
        x: s.x as T,
        shape: s.shape,
        groups: this.numGroups,
        mean: s.mean as T,
        invStd: s.invStd as T,
        gamma: this.gamma,
        y: this.activation === 'relu' ? (s.y as T) : null,
      },
      { layout: this.layout, activation: this.activation },
      { dx, dgamma: this.dgamma ?? undefined, dbeta: this.dbeta ?? undefined },
    );
    return r.dx;
  }

  private entries(): StateEntry[] {
    return [
      ['weight', 'gamma', this.gamma],
      ['bias', 'beta', this.beta],
    ];
  }

  /** The layer's numbers under PyTorch's state-dict names (copies). */
  state(): { weight?: T; bias?: T } {
    return copyState(this.entries()) as { weight?: T; bias?: T };
  }

  /** Loads {@link state} or PyTorch's state_dict(), all or nothing (see BatchNorm.loadState). */
  loadState(state: GroupNormState): void {
    loadEntries(state, this.entries(), this.numChannels, false, 0);
  }
}

Object.defineProperty(GroupNormLayer, 'name', { value: 'GroupNorm' });

/** A group-normalisation layer (PyTorch's nn.GroupNorm), typed by its `dtype`. */
export const GroupNorm = GroupNormLayer as GroupNormConstructor;
