/**
 * An RMS-normalisation layer in the shape of PyTorch's nn.RMSNorm: weight (ones) over
 * `normalizedShape`, the last dims of its inputs; state-dict name weight.
 */
import { rmsNorm, rmsNormBackward, type Activation, type FloatArray } from '../api.js';
import { rmsDefaultEps } from '../ops/shapes.js';
import { readShape, type DType } from '../validate.js';
import {
  backwardFirst,
  checkInput,
  copyState,
  layerOptions,
  loadEntries,
  Module,
  outArray,
  product,
  readNormalizedShape,
  type ArrayOfDType,
  type OptionsFor,
  type OptionsWithDType,
  type StateEntry,
} from './common.js';
import { arrayOf, type Pinned, type Slot } from './home.js';
import { typedArrayLength } from '../intrinsics.js';

export interface RMSNormLayerOptions {
  /** default: the dtype's machine epsilon (PyTorch's eps=None) */
  eps?: number;
  /** learnable weight over normalizedShape (default true) */
  elementwiseAffine?: boolean;
  activation?: Activation;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** PyTorch's state-dict names (arrays of product(normalizedShape) numbers). */
export interface RMSNormState {
  weight?: ArrayLike<number>;
}

/** The constructor, typed by `dtype` like {@link BatchNormConstructor}. */
export interface RMSNormConstructor {
  new <T extends FloatArray = Float32Array>(normalizedShape: number | readonly number[], options?: OptionsFor<RMSNormLayerOptions, T>): RMSNorm<T>;
  new <D extends DType, _D>(normalizedShape: number | readonly number[], options: OptionsWithDType<RMSNormLayerOptions, D>): RMSNorm<ArrayOfDType<D>>;
  new <_A, _B>(normalizedShape: number | readonly number[], options?: RMSNormLayerOptions): RMSNorm<FloatArray>;
  readonly prototype: RMSNorm<FloatArray>;
}

export type RMSNorm<T extends FloatArray = Float32Array> = RMSNormLayer<T>;

/** What backward needs, pinned (lib/layers/home.ts). */
interface Saved {
  x: Pinned;
  shape: number[];
  y: Pinned;
  invRms: Pinned;
}

class RMSNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly activation: Activation;
  private weightSlot: Slot | null;
  private dweightSlot: Slot | null;
  /** ones at first; null without elementwiseAffine */
  get weight(): T | null {
    return arrayOf<T>(this.weightSlot);
  }
  /** gradients of the last backward (overwritten, not accumulated) */
  get dweight(): T | null {
    return arrayOf<T>(this.dweightSlot);
  }
  private saved: Saved | null = null;

  constructor(normalizedShape: number | readonly number[], options: RMSNormLayerOptions = {}) {
    const shape = readNormalizedShape(normalizedShape);
    const o = layerOptions(options, 'RMSNorm', { elementwiseAffine: true }, ['eps', 'activation']);
    super(o.dtype);
    this.normalizedShape = Object.freeze(shape);
    this.eps = o.parsed.epsGiven ? o.parsed.eps : rmsDefaultEps(o.dtype);
    this.activation = o.parsed.activation;
    this.elementwiseAffine = o.flags.elementwiseAffine;
    const size = product(shape);
    const affine = o.flags.elementwiseAffine;
    this.weightSlot = affine ? this.home.param(size, 1, 'normalizedShape') : null;
    this.dweightSlot = affine ? this.home.param(size, 0, 'normalizedShape') : null;
  }

  /**
   * Normalises x (of `shape`, whose last dims are normalizedShape) and keeps x, invRms and
   * y for {@link backward}: do not modify x between forward and backward.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T }): T {
    const dims = readShape(shape, 'shape', 1);
    const y = outArray<T>(out, 'y');
    checkInput(x, 'x', this.dtype, 'RMSNorm');
    const rows = product(dims) / product(this.normalizedShape);
    const home = this.home;
    const xPin = home.pin(x);
    const yPin = home.out('y', typedArrayLength(x), y, [xPin]);
    const invRmsPin = home.out('invRms', rows, undefined, [], this.saved?.invRms);
    const r = rmsNorm(
      { x: home.arg<T>(xPin)!, shape: dims, normalizedShape: this.normalizedShape, weight: this.weight },
      { eps: this.eps, activation: this.activation },
      { y: home.arg<T>(yPin), invRms: home.arg<T>(invRmsPin) },
    );
    this.saved = { x: xPin, shape: dims, y: home.keep('y', yPin, r.y), invRms: home.keep('invRms', invRmsPin, r.invRms) };
    return home.resolve(this.saved.y) as T;
  }

  /** Gradient with respect to the last forward's input; sets {@link dweight}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('RMSNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'RMSNorm');
    const home = this.home;
    const dyPin = home.pin(dy);
    const dxPin = home.out('dx', typedArrayLength(dy), dx, [dyPin, s.x, s.y]);
    return home.backward(dxPin, (dxArg) =>
      rmsNormBackward(
        {
          dy: home.arg<T>(dyPin)!,
          x: home.arg<T>(s.x)!,
          shape: s.shape,
          normalizedShape: this.normalizedShape,
          invRms: home.arg<T>(s.invRms)!,
          weight: this.weight,
          y: this.activation === 'relu' ? home.arg<T>(s.y)! : null,
        },
        { activation: this.activation },
        { dx: dxArg, dweight: this.dweight ?? undefined },
      ).dx,
    ) as T;
  }

  /**
   * Moves the layer out of the wasm module memory (see BatchNorm.dispose): parameters copied into
   * ordinary arrays, what backward needed dropped, blocks freed once nothing handed out is reachable.
   */
  dispose(): void {
    if (!this.home.inModuleMemory) return;
    [this.weightSlot, this.dweightSlot] = this.home.leave([this.weightSlot, this.dweightSlot]);
    this.saved = null;
  }

  private entries(): StateEntry[] {
    return [['weight', 'weight', this.weight]];
  }

  /** The layer's numbers under PyTorch's state-dict names (copies). */
  state(): { weight?: T } {
    return copyState(this.entries()) as { weight?: T };
  }

  /** Loads {@link state} or PyTorch's state_dict(), all or nothing (see BatchNorm.loadState). */
  loadState(state: RMSNormState): void {
    loadEntries(state, this.entries(), product(this.normalizedShape), false, 0);
  }
}

Object.defineProperty(RMSNormLayer, 'name', { value: 'RMSNorm' });

/** An RMS-normalisation layer (PyTorch's nn.RMSNorm), typed by its `dtype`. */
export const RMSNorm = RMSNormLayer as RMSNormConstructor;
