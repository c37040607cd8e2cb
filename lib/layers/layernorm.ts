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

/** What backward needs, pinned (lib/layers/home.ts). */
interface Saved {
  x: Pinned;
  shape: number[];
  y: Pinned;
  mean: Pinned;
  invStd: Pinned;
}

class LayerNormLayer<T extends FloatArray = Float32Array> extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly activation: Activation;
  private weightSlot: Slot | null;
  private biasSlot: Slot | null;
  private dweightSlot: Slot | null;
  private dbiasSlot: Slot | null;
  /** ones at first; null without elementwiseAffine */
  get weight(): T | null {
    return arrayOf<T>(this.weightSlot);
  }
  /** zeros at first; null without elementwiseAffine or with bias: false */
  get bias(): T | null {
    return arrayOf<T>(this.biasSlot);
  }
  /** gradients of the last backward (overwritten, not accumulated) */
  get dweight(): T | null {
    return arrayOf<T>(this.dweightSlot);
  }
  get dbias(): T | null {
    return arrayOf<T>(this.dbiasSlot);
  }
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
    this.weightSlot = affine ? this.home.param(size, 1, 'normalizedShape') : null;
    this.dweightSlot = affine ? this.home.param(size, 0, 'normalizedShape') : null;
    this.biasSlot = bias ? this.home.param(size, 0, 'normalizedShape') : null;
    this.dbiasSlot = bias ? this.home.param(size, 0, 'normalizedShape') : null;
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
    const home = this.home;
    const xPin = home.pin(x);
    const yPin = home.out('y', typedArrayLength(x), y, [xPin]);
    const meanPin = home.out('mean', rows, undefined, [], this.saved?.mean);
    const invStdPin = home.out('invStd', rows, undefined, [], this.saved?.invStd);
    const r = layerNorm(
      { x: home.arg<T>(xPin)!, shape: dims, normalizedShape: this.normalizedShape, weight: this.weight, bias: this.bias },
      { eps: this.eps, activation: this.activation },
      { y: home.arg<T>(yPin), mean: home.arg<T>(meanPin), invStd: home.arg<T>(invStdPin) },
    );
    this.saved = { x: xPin, shape: dims, y: home.keep('y', yPin, r.y), mean: home.keep('mean', meanPin, r.mean), invStd: home.keep('invStd', invStdPin, r.invStd) };
    return home.resolve(this.saved.y) as T;
  }

  /** Gradient with respect to the last forward's input; sets {@link dweight} and {@link dbias}. */
  backward(dy: T, out?: { dx?: T }): T {
    const s = this.saved;
    if (!s) throw backwardFirst('LayerNorm');
    const dx = outArray<T>(out, 'dx');
    checkInput(dy, 'dy', this.dtype, 'LayerNorm');
    const home = this.home;
    const dyPin = home.pin(dy);
    const dxPin = home.out('dx', typedArrayLength(dy), dx, [dyPin, s.x, s.y]);
    return home.backward(dxPin, (dxArg) =>
      layerNormBackward(
        {
          dy: home.arg<T>(dyPin)!,
          x: home.arg<T>(s.x)!,
          shape: s.shape,
          normalizedShape: this.normalizedShape,
          mean: home.arg<T>(s.mean)!,
          invStd: home.arg<T>(s.invStd)!,
          weight: this.weight,
          y: this.activation === 'relu' ? home.arg<T>(s.y)! : null,
        },
        { activation: this.activation },
        { dx: dxArg, dweight: this.dweight ?? undefined, dbias: this.dbias ?? undefined },
      ).dx,
    ) as T;
  }

  /**
   * Moves the layer out of the wasm module memory (see BatchNorm.dispose): parameters copied into
   * ordinary arrays, what backward needed dropped, blocks freed once nothing handed out is reachable.
   */
  dispose(): void {
    if (!this.home.inModuleMemory) return;
    [this.weightSlot, this.biasSlot, this.dweightSlot, this.dbiasSlot] = this.home.leave([this.weightSlot, this.biasSlot, this.dweightSlot, this.dbiasSlot]);
    this.saved = null;
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
