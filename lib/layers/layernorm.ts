/**
 * A layer-normalisation layer in the shape of PyTorch's nn.LayerNorm: weight (ones) and bias
 * (zeros) over `normalizedShape`, the last dims of its inputs; state-dict names weight, bias.
 */
import { layerNorm, layerNormBackward, type Activation, type FloatArray } from '../api.js';
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

export interface LayerNormLayerOptions {
  /** default 1e-5 */
  eps?: number;
  /** learnable weight (and bias) over normalizedShape (default true) */
  elementwiseAffine?: boolean;
  /** a learnable bias too, with elementwiseAffine (default true) */
  bias?: boolean;
  activation?: Activation;
  /** element type of parameters and inputs (default 'float32') */
  dtype?: DType;
}

/** PyTorch's state-dict names (arrays of product(normalizedShape) numbers). */
export interface LayerNormState {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
}

/** The constructor, typed by `dtype` like {@link BatchNormConstructor}. */
export interface LayerNormConstructor {
  new <T extends FloatArray = Float32Array>(normalizedShape: number | readonly number[], options?: OptionsFor<LayerNormLayerOptions, T>): LayerNorm<T>;
  new <D extends DType, _D>(normalizedShape: number | readonly number[], options: OptionsWithDType<LayerNormLayerOptions, D>): LayerNorm<ArrayOfDType<D>>;
  new <_A, _B>(normalizedShape: number | readonly number[], options?: LayerNormLayerOptions): LayerNorm<FloatArray>;
  readonly prototype: LayerNorm<FloatArray>;
}

export type LayerNorm<T extends FloatArray = Float32Array> = LayerNormLayer<T>;

interface Saved {
  x: FloatArray;
  shape: number[];
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
}

class LayerNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly activation: Activation;
  /** ones at first; null without elementwiseAffine */
  readonly weight: T | null;
  /** zeros at first; null without elementwiseAffine or with bias: false */
  readonly bias: T | null;
  /** gradients of the last backward (overwritten, not accumulated) */
  readonly dweight: T | null;
  readonly dbias: T | null;
  private saved: Saved | null = null;

  constructor(normalizedShape: number | readonly number[], options: LayerNormLayerOptions = {}) {
    const shape = readNormalizedShape(normalizedShape);
    const o = layerOptions(options, 'LayerNorm', { elementwiseAffine: true, bias: true }, ['eps', 'activation']);
    super(o.dtype);
    this.normalizedShape = Object.freeze(shape);
    this.eps = o.parsed.eps;
    this.activation = o.parsed.activation;
    this.elementwiseAffine = o.flags.elementwiseAffine;
    const size = product(shape);
    const affine = o.flags.elementwiseAffine;
    const bias = affine && o.flags.bias;
    this.weight = affine ? filled<T>(o.dtype, size, 1, 'normalizedShape') : null;
    this.dweight = affine ? filled<T>(o.dtype, size, 0, 'normalizedShape') : null;
    this.bias = bias ? filled<T>(o.dtype, size, 0, 'normalizedShape') : null;
    this.dbias = bias ? filled<T>(o.dtype, size, 0, 'normalizedShape') : null;
  }

  /**
   * Normalises x (of `shape`, whose last dims are normalizedShape) and keeps x, the statistics and
   * y for {@link backward}: do not modify x between forward and backward.
   */
  forward(x: T, shape: readonly number[], out?: { y?: T }): T {
    const dims = readShape(shape, 'shape', 1);
    const y = outArray<T>(out, 'y');
    checkInput(x, 'x', this.dtype, 'LayerNorm');
    const rows = product(dims) / product(this.normalizedShape);
    const r = layerNorm(
      { x, shape: dims, normalizedShape: this.normalizedShape, weight: this.weight, bias: this.bias },
      { eps: this.eps, activation: this.activation },
      { y, mean: reuse<T>(this.saved?.mean, rows), invStd: reuse<T>(this.saved?.invStd, rows) },
    );
    this.saved = { x, shape: dims, y: r.y, mean: r.mean, invStd: r.invStd };
    return r.y;
  }

  /** Gradient with respect to the last forward's input; sets {@link dweight} and {@link dbias}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('LayerNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'LayerNorm');
    const r = layerNormBackward(
      {
        dy,
        x: s.x as T,
        shape: s.shape,
        normalizedShape: this.normalizedShape,
        mean: s.mean as T,
        invStd: s.invStd as T,
        weight: this.weight,
        y: this.activation === 'relu' ? (s.y as T) : null,
      },
      { activation: this.activation },
      { dx, dweight: this.dweight ?? undefined, dbias: this.dbias ?? undefined },
    );
    return r.dx;
  }

  private entries(): StateEntry[] {
    return [
      ['weight', 'weight', this.weight],
      ['bias', 'bias', this.bias],
    ];
  }

  /** The layer's numbers under PyTorch's state-dict names (copies). */
  state(): { weight?: T; bias?: T } {
    return copyState(this.entries()) as { weight?: T; bias?: T };
  }

  /** Loads {@link state} or PyTorch's state_dict(), all or nothing (see BatchNorm.loadState). */
  loadState(state: LayerNormState): void {
    loadEntries(state, this.entries(), product(this.normalizedShape), false, 0);
  }
}

Object.defineProperty(LayerNormLayer, 'name', { value: 'LayerNorm' });

/** A layer-normalisation layer (PyTorch's nn.LayerNorm), typed by its `dtype`. */
export const LayerNorm = LayerNormLayer as LayerNormConstructor;
