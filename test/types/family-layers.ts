/**
 * Compile-time checks of the family layers' types (LayerNorm, RMSNorm, GroupNorm, InstanceNorm),
 * as test/types/layer-dtype.ts does for BatchNorm: checked by `tsc -p test/tsconfig.json` (part of
 * `npm test`), never run. Each `@ts-expect-error` line must be an error.
 */
import {
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  RMSNorm,
  type FloatArray,
  type GroupNormLayerOptions,
  type InstanceNormState,
  type LayerNormLayerOptions,
  type LayerNormState,
} from '../../lib/index.js';

const f32 = new Float32Array(2 * 3 * 4);
const f64 = new Float64Array(2 * 3 * 4);
const shape = [2, 3, 4];

// LayerNorm: float32 by default, Float64Array with dtype 'float64'.
const ln = new LayerNorm(4);
const lny: Float32Array = ln.forward(f32, shape);
const lndx: Float32Array = ln.backward(lny);
const lnw: Float32Array | null = ln.weight;
const lndb: Float32Array | null = ln.dbias;
// @ts-expect-error: a float32 layer refuses a Float64Array
ln.forward(f64, shape);
// @ts-expect-error: and returns no Float64Array
const lnWrong: Float64Array = ln.forward(f32, shape);
const ln64 = new LayerNorm([3, 4], { dtype: 'float64', bias: false, elementwiseAffine: true });
const ln64y: Float64Array = ln64.forward(f64, shape);
const ln64Typed: LayerNorm<Float64Array> = ln64;
// @ts-expect-error
ln64.forward(f32, shape);
// @ts-expect-error
ln64.backward(f32);
// @ts-expect-error: not a float32 layer
const ln64Wrong: LayerNorm<Float32Array> = ln64;
// @ts-expect-error: the dtype must name the type argument's element type
new LayerNorm<Float32Array>(4, { dtype: 'float64' });
// @ts-expect-error: a misspelt option
new LayerNorm(4, { elementwise_affine: false });
// @ts-expect-error: LayerNorm has no affine option (PyTorch's elementwiseAffine)
new LayerNorm(4, { affine: false });
// @ts-expect-error: normalizedShape is a number or dims
new LayerNorm('4');
const lnState: { weight?: Float32Array; bias?: Float32Array } = ln.state();
const ln64State: { weight?: Float64Array } = ln64.state();
// @ts-expect-error: a float64 layer's state holds Float64Arrays
const ln64StateWrong: { weight?: Float32Array } = ln64.state();
ln.loadState(ln64.state());
ln.loadState({ weight: [1, 2, 3, 4] } satisfies LayerNormState);
// @ts-expect-error: state entries hold numbers
ln.loadState({ weight: ['1'] });

// RMSNorm: no bias.
const rn = new RMSNorm([4], { eps: 1e-6 });
const rny: Float32Array = rn.forward(f32, shape);
const rndw: Float32Array | null = rn.dweight;
const rn64 = new RMSNorm(4, { dtype: 'float64' });
const rn64dx: Float64Array = rn64.backward(rn64.forward(f64, shape));
// @ts-expect-error
rn64.forward(f32, shape);
// @ts-expect-error: RMSNorm has no bias option
new RMSNorm(4, { bias: false });
// @ts-expect-error: nor a bias
rn.bias;

// GroupNorm: gamma/beta named like BatchNorm's.
const gn = new GroupNorm(3, 3, { layout: 'channels-last', activation: 'relu' });
const gny: Float32Array = gn.forward(f32, shape);
const gng: Float32Array | null = gn.gamma;
const gn64 = new GroupNorm(1, 3, { dtype: 'float64', affine: false });
const gn64dg: Float64Array | null = gn64.dgamma;
// @ts-expect-error
gn64.forward(f32, shape);
// @ts-expect-error: numChannels is required
new GroupNorm(3);
// @ts-expect-error
new GroupNorm(3, 3, { layout: 'NCHW' });
// @ts-expect-error: GroupNorm has no running statistics
new GroupNorm(3, 3, { momentum: 0.9 });

// InstanceNorm: running statistics, train/eval returning the layer.
const inorm = new InstanceNorm(3, { trackRunningStats: true, momentum: null });
const inormRm: Float32Array | null = inorm.runningMean;
const inormEval: InstanceNorm<Float32Array> = inorm.eval();
const in64 = new InstanceNorm(3, { dtype: 'float64', affine: true }).train();
const in64y: Float64Array = in64.forward(f64, shape);
const in64State: { running_var?: Float64Array; num_batches_tracked?: number } = in64.state();
in64.loadState({ weight: [1, 1, 1], bias: [0, 0, 0], num_batches_tracked: 3n } satisfies InstanceNormState);
// @ts-expect-error
in64.forward(f32, shape);
// @ts-expect-error
inorm.forward(f64, shape);
// @ts-expect-error: a float32 layer is no float64 one
const in64Wrong: InstanceNorm<Float64Array> = inorm;
// @ts-expect-error: the count is a number or bigint
inorm.loadState({ num_batches_tracked: '3' });

// A dtype known only at run time: either array.
const dtype = (Math.random() < 0.5 ? 'float32' : 'float64') as 'float32' | 'float64';
const anyLn = new LayerNorm(4, { dtype });
anyLn.forward(f32, shape);
anyLn.forward(f64, shape);
const anyGn: GroupNorm<FloatArray> = new GroupNorm(1, 3, { dtype });
anyGn.forward(f64, shape);

// Options typed as the layer's options interface (dtype unknown to the compiler): either array.
const lnOptions: LayerNormLayerOptions = { eps: 1e-3 };
new LayerNorm(4, lnOptions).forward(f64, shape);
const gnOptions: GroupNormLayerOptions = {};
new GroupNorm(1, 3, gnOptions).forward(f32, shape);
// @ts-expect-error: {} is the default float32 layer
new InstanceNorm(3, {}).forward(f64, shape);

// Subclasses and instanceof.
class Ln64 extends LayerNorm<Float64Array> {
  twice(x: Float64Array): Float64Array {
    return this.forward(this.forward(x, shape), shape);
  }
}
new Ln64(4, { dtype: 'float64' }).twice(f64);
class In32 extends InstanceNorm {}
new In32(3).forward(f32, shape);
const isLayer: boolean = (gn as unknown) instanceof GroupNorm;
// One layer is not another.
// @ts-expect-error
const notGn: GroupNorm = inorm;

export const used = [
  lny, lndx, lnw, lndb, lnWrong, ln64y, ln64Typed, ln64Wrong, lnState, ln64State, ln64StateWrong,
  rny, rndw, rn64dx, gny, gng, gn64dg, inormRm, inormEval, in64y, in64State, in64Wrong, isLayer, notGn,
];
