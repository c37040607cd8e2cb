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

/** What backward needs, pinned (lib/layers/home.ts). */
interface Saved {
  x: Pinned;
  shape: number[];
  y: Pinned;
  mean: Pinned;
  invStd: Pinned;
}

class GroupNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly numGroups: number;
  readonly numChannels: number;
  readonly eps: number;
  readonly affine: boolean;
  readonly layout: Layout;
  readonly activation: Activation;
  private gammaSlot: Slot | null;
  private betaSlot: Slot | null;
  private dgammaSlot: Slot | null;
  private dbetaSlot: Slot | null;
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
    const make = (fill: number) => (this.affine ? this.home.param(channels, fill, 'numChannels') : null);
    this.gammaSlot = make(1);
    this.betaSlot = make(0);
    this.dgammaSlot = make(0);
    this.dbetaSlot = make(0);
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
    const home = this.home;
    const xPin = home.pin(x);
    const yPin = home.out('y', typedArrayLength(x), y, [xPin]);
    const meanPin = home.out('mean', stats, undefined, [], this.saved?.mean);
    const invStdPin = home.out('invStd', stats, undefined, [], this.saved?.invStd);
    const r = groupNorm(
      { x: home.arg<T>(xPin)!, shape: dims, groups: this.numGroups, gamma: this.gamma, beta: this.beta },
      { eps: this.eps, layout: this.layout, activation: this.activation },
      { y: home.arg<T>(yPin), mean: home.arg<T>(meanPin), invStd: home.arg<T>(invStdPin) },
    );
    this.saved = { x: xPin, shape: dims, y: home.keep('y', yPin, r.y), mean: home.keep('mean', meanPin, r.mean), invStd: home.keep('invStd', invStdPin, r.invStd) };
    return home.resolve(this.saved.y) as T;
  }

  /** Gradient with respect to the last forward's input; sets {@link dgamma} and {@link dbeta}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('GroupNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'GroupNorm');
    const home = this.home;
    const dyPin = home.pin(dy);
    const dxPin = home.out('dx', typedArrayLength(dy), dx, [dyPin, s.x, s.y]);
    return home.backward(dxPin, (dxArg) =>
      groupNormBackward(
        {
          dy: home.arg<T>(dyPin)!,
          x: home.arg<T>(s.x)!,
          shape: s.shape,
          groups: this.numGroups,
          mean: home.arg<T>(s.mean)!,
          invStd: home.arg<T>(s.invStd)!,
          gamma: this.gamma,
          y: this.activation === 'relu' ? home.arg<T>(s.y)! : null,
        },
        { layout: this.layout, activation: this.activation },
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
    [this.gammaSlot, this.betaSlot, this.dgammaSlot, this.dbetaSlot] = this.home.leave([this.gammaSlot, this.betaSlot, this.dgammaSlot, this.dbetaSlot]);
    this.saved = null;
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
