/**
 * Compile-time checks of the layer's types (issue 19 item 6), checked by `tsc -p test/tsconfig.json`
 * (part of `npm test`); never run. Each `@ts-expect-error` line must be an error, so a type that
 * loosens fails the check too.
 */
import { BatchNorm, type BatchNormOptions, type FloatArray } from '../../lib/index.js';

const f32 = new Float32Array(2 * 3 * 4);
const f64 = new Float64Array(2 * 3 * 4);
const shape = [2, 3, 4];

// The default layer is float32.
const a = new BatchNorm(3);
const ay: Float32Array = a.forward(f32, shape);
a.backward(ay);
// @ts-expect-error: a float32 layer refuses a Float64Array
a.forward(f64, shape);
// @ts-expect-error: and its output is not a Float64Array
const ay64: Float64Array = a.forward(f32, shape);
const a2 = new BatchNorm(3, { dtype: 'float32', eps: 1e-3 });
a2.forward(f32, shape);
// @ts-expect-error
a2.forward(f64, shape);

// dtype: 'float64' makes a BatchNorm<Float64Array>.
const b = new BatchNorm(3, { dtype: 'float64', momentum: null });
const bTyped: BatchNorm<Float64Array> = b;
const by: Float64Array = b.forward(f64, shape);
const bdx: Float64Array = b.backward(by);
const bgamma: Float64Array | null = b.gamma;
// @ts-expect-error: a float64 layer refuses a Float32Array
b.forward(f32, shape);
// @ts-expect-error
b.backward(new Float32Array(24));
// @ts-expect-error: not a float32 layer
const bWrong: BatchNorm<Float32Array> = b;

// Explicit type arguments, as before.
const c = new BatchNorm<Float64Array>(3, { dtype: 'float64' });
c.forward(f64, shape);
// @ts-expect-error: the dtype must name the type argument's element type
new BatchNorm<Float32Array>(3, { dtype: 'float64' });
// @ts-expect-error
new BatchNorm<Float64Array>(3, { dtype: 'float32' });

// A dtype known only at run time: either array.
const dtype = (Math.random() < 0.5 ? 'float32' : 'float64') as 'float32' | 'float64';
const d = new BatchNorm(3, { dtype });
d.forward(f32, shape);
d.forward(f64, shape);
const dAny: BatchNorm<FloatArray> = new BatchNorm<FloatArray>(3, { dtype });

// Subclasses and instanceof.
class Norm64 extends BatchNorm<Float64Array> {
  twice(x: Float64Array): Float64Array {
    return this.forward(x, shape);
  }
}
new Norm64(3, { dtype: 'float64' }).twice(f64);
class Norm32 extends BatchNorm {}
new Norm32(3).forward(f32, shape);
const isLayer: boolean = (a as unknown) instanceof BatchNorm;

// A misspelt option is a compile error too.
// @ts-expect-error
new BatchNorm(3, { epsilon: 1e-3 });
// @ts-expect-error
new BatchNorm(3, { dtype: 'float16' });

export const used = [ay, ay64, bTyped, bdx, bgamma, bWrong, dAny, isLayer];

// Options typed as BatchNormOptions (dtype unknown to the compiler): either array.
const opts: BatchNormOptions = { eps: 1e-3 };
const e = new BatchNorm(3, opts);
e.forward(f32, shape);
e.forward(f64, shape);
const e2 = new BatchNorm(3, {});
// @ts-expect-error: {} is the default float32 layer
e2.forward(f64, shape);
