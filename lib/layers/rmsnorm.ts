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
  filled,
  layerOptions,
  loadEntries,
  Module,
  outArray,
  product,
  readNormalizedShape,
  reuse,
  type ArrayOfDType,
  type OptionsFor,
  type OptionsWithDType,
  type StateEntry,
} from './common.js';

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

interface Saved {
  x: FloatArray;
  shape: number[];
  y: FloatArray;
  invRms: FloatArray;
}

class RMSNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly activation: Activation;
  /** ones at first; null without elementwiseAffine */
  readonly weight: T | null;
  /** gradients of the last backward (overwritten, not accumulated) */
  readonly dweight: T | null;
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
    this.weight = affine ? filled<T>(o.dtype, size, 1, 'normalizedShape') : null;
    this.dweight = affine ? filled<T>(o.dtype, size, 0, 'normalizedShape') : null;
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
    const r = rmsNorm(
      { x, shape: dims, normalizedShape: this.normalizedShape, weight: this.weight },
      { eps: this.eps, activation: this.activation },
      { y, invRms: reuse<T>(this.saved?.invRms, rows) },
    );
    this.saved = { x, shape: dims, y: r.y, invRms: r.invRms };
    return r.y;
  }

  /** Gradient with respect to the last forward's input; sets {@link dweight}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('RMSNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'RMSNorm');
    const r = rmsNormBackward(
      {
        dy,
        x: s.x as T,
        shape: s.shape,
        normalizedShape: this.normalizedShape,
        invRms: s.invRms as T,
        weight: this.weight,
        y: this.activation === 'relu' ? (s.y as T) : null,
      },
      { activation: this.activation },
      { dx, dweight: this.dweight ?? undefined },
    );
    return r.dx;
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
