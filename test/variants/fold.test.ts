/**
 * foldBatchNorm and batchNormScaleShift: a small float64 convolution (or linear layer) followed by
 * BatchNorm's inference formula against the folded layer, for every weight layout (PyTorch/ONNX
 * OI, OIW, OIHW, OIDHW with groups and depthwise; TensorFlow.js IO, HWIO with groups, HWIM
 * depthwise), to 1e-12 relative in float64; bad inputs are typed errors naming the argument.
 * Folding is pure JavaScript (no backend).
 */
import { describe, expect, it } from 'vitest';
import { batchNormScaleShift, foldBatchNorm, type WeightLayout } from '../../lib/index.js';
import { Random } from '../../lib/random.js';
import { scaleShiftRef } from '../../lib/reference/variants.js';

type FloatArray = Float32Array | Float64Array;

/** w(o, i, ...k): the weight of output channel o, input channel i (within its group), kernel offset k. */
type Weight = (o: number, i: number, k: readonly number[]) => number;

/**
 * Direct convolution, valid padding, stride 1, of x [Cin, ...spatial] (one sample) with `groups`:
 * y[o, p] = bias[o] + Σ_i Σ_k w(o, i, k)·x[g·Ig + i, p + k], g = ⌊o/(O/groups)⌋, Ig = Cin/groups.
 */
function conv(x: Float64Array, cin: number, spatial: readonly number[], w: Weight, O: number, kernel: readonly number[], groups: number, bias: ArrayLike<number> | null): Float64Array {
  const out = spatial.map((s, a) => s - kernel[a] + 1);
  const outSize = out.reduce((a, b) => a * b, 1);
  const kSize = kernel.reduce((a, b) => a * b, 1);
  const Ig = cin / groups;
  const y = new Float64Array(O * outSize);
  const unravel = (index: number, dims: readonly number[]) => {
    const at: number[] = [];
    for (let a = dims.length - 1; a >= 0; a--) {
      at.unshift(index % dims[a]);
      index = Math.floor(index / dims[a]);
    }
    return at;
  };
  const offset = (at: readonly number[], dims: readonly number[]) => at.reduce((s, v, a) => s * dims[a] + v, 0);
  for (let o = 0; o < O; o++) {
    const g = Math.floor(o / (O / groups));
    for (let p = 0; p < outSize; p++) {
      const pos = unravel(p, out);
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < Ig; i++) {
        for (let q = 0; q < kSize; q++) {
          const k = unravel(q, kernel);
          sum += w(o, i, k) * x[(g * Ig + i) * spatial.reduce((a, b) => a * b, 1) + offset(pos.map((v, a) => v + k[a]), spatial)];
        }
      }
      y[o * outSize + p] = sum;
    }
  }
  return y;
}

interface LayoutCase {
  name: string;
  layout: WeightLayout;
  cin: number;
  O: number;
  groups: number;
  kernel: number[];
  /** the weight's dims in its layout */
  shape: number[];
  /** index in the layout's array of w(o, i, k) */
  index(o: number, i: number, k: readonly number[]): number;
}

function layoutCases(): LayoutCase[] {
  const K = (k: readonly number[], kernel: readonly number[]) => k.reduce((s, v, a) => s * kernel[a] + v, 0);
  const kSize = (kernel: readonly number[]) => kernel.reduce((a, b) => a * b, 1);
  const oFirst = (name: string, layout: WeightLayout, cin: number, O: number, groups: number, kernel: number[]): LayoutCase => ({
    name, layout, cin, O, groups, kernel,
    shape: [O, cin / groups, ...kernel],
    index: (o, i, k) => (o * (cin / groups) + i) * kSize(kernel) + K(k, kernel),
  });
  const oLast = (name: string, layout: WeightLayout, cin: number, O: number, groups: number, kernel: number[]): LayoutCase => ({
    name, layout, cin, O, groups, kernel,
    shape: [...kernel, cin / groups, O],
    index: (o, i, k) => (K(k, kernel) * (cin / groups) + i) * O + o,
  });
  return [
    oFirst('linear OI', 'OI', 5, 4, 1, []),
    oLast('dense IO (tfjs)', 'IO', 5, 4, 1, []),
    oFirst('conv1d OIW', 'OIW', 3, 4, 1, [3]),
    oFirst('conv2d OIHW', 'OIHW', 3, 4, 1, [2, 3]),
    oFirst('grouped conv2d OIHW (groups 2: I = Cin/groups)', 'OIHW', 4, 6, 2, [2, 2]),
    oFirst('depthwise conv2d OIHW (groups = Cin, multiplier 2: [Cin·2, 1, kH, kW])', 'OIHW', 3, 6, 3, [2, 2]),
    oFirst('conv3d OIDHW', 'OIDHW', 2, 3, 1, [2, 2, 2]),
    oLast('conv2d HWIO (tfjs)', 'HWIO', 3, 4, 1, [2, 3]),
    oLast('grouped conv2d HWIO (filter in-channels Cin/groups)', 'HWIO', 4, 6, 2, [2, 2]),
    oLast('conv1d WIO', 'WIO', 3, 2, 1, [3]),
    {
      // tfjs depthwiseConv2d: filter [kH, kW, Cin, M], output channel c·M + m
      name: 'depthwise HWIM (tfjs depthwiseConv2d, multiplier 2)',
      layout: 'HWIM', cin: 3, O: 6, groups: 3, kernel: [2, 2],
      shape: [2, 2, 3, 2],
      index: (o, _i, k) => ((k[0] * 2 + k[1]) * 3 + Math.floor(o / 2)) * 2 + (o % 2),
    },
  ];
}

function fill(n: number, seed: number, scale = 1, offset = 0): Float64Array {
  return new Random(seed).fill(new Float64Array(n), scale, offset);
}

function maxRelative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), scale * 1e-3));
  return worst;
}

describe('foldBatchNorm: conv-then-BatchNorm equals the folded conv', () => {
  for (const lc of layoutCases()) {
    for (const withBias of [true, false]) {
      it(`${lc.name}${withBias ? '' : ' without bias'}`, () => {
        const { cin, O, groups, kernel } = lc;
        const size = lc.shape.reduce((a, b) => a * b, 1);
        const weight = fill(size, 11, 0.5);
        const bias = withBias ? fill(O, 12) : null;
        const bn = { runningMean: fill(O, 13, 1, 0.5), runningVar: fill(O, 14, 0.2, 1.5).map(Math.abs), gamma: fill(O, 15, 0.5, 1), beta: fill(O, 16) };
        const eps = 1e-3;
        const spatial = kernel.map((k) => k + 3);
        const x = fill(cin * spatial.reduce((a, b) => a * b, 1), 17, 2, 0.3);
        const at = (w: ArrayLike<number>): Weight => (o, i, k) => w[lc.index(o, i, k)];
        const y = conv(x, cin, spatial, at(weight), O, kernel, groups, bias);
        const per = y.length / O;
        const want = y.map((v, j) => {
          const o = Math.floor(j / per);
          return (bn.gamma[o] * (v - bn.runningMean[o])) / Math.sqrt(bn.runningVar[o] + eps) + bn.beta[o];
        });
        const folded = foldBatchNorm({ weight, bias, layout: lc.layout, shape: lc.shape }, bn, { eps });
        expect(folded.weight).toBeInstanceOf(Float64Array);
        const got = conv(x, cin, spatial, at(folded.weight), O, kernel, groups, folded.bias);
        expect(maxRelative(got, want)).toBeLessThan(1e-12);
        // without the shape (the length is a multiple of C): the same numbers
        const again = foldBatchNorm({ weight, bias, layout: lc.layout }, bn, { eps });
        expect(again.weight).toEqual(folded.weight);
        // float32 weights: folded in float64, rounded once
        const w32 = Float32Array.from(weight);
        const f32 = foldBatchNorm({ weight: w32, bias: bias && Float32Array.from(bias), layout: lc.layout, shape: lc.shape }, bn, { eps });
        expect(f32.weight).toBeInstanceOf(Float32Array);
        expect(f32.bias).toBeInstanceOf(Float32Array);
        const exact = foldBatchNorm({ weight: Float64Array.from(w32), bias: bias && Float64Array.from(Float32Array.from(bias)), layout: lc.layout }, bn, { eps });
        expect(Array.from(f32.weight)).toEqual(Array.from(Float32Array.from(exact.weight)));
        expect(Array.from(f32.bias)).toEqual(Array.from(Float32Array.from(exact.bias)));
        expect(weight).toEqual(fill(size, 11, 0.5)); // nothing given is modified
      });
    }
  }

  it('batchNormScaleShift: scale = γ/sqrt(var + eps), shift = β − mean·scale in float64', () => {
    const bn = { runningMean: Float32Array.from([1, -2, 0.5]), runningVar: Float32Array.from([4, 0.25, 1]), gamma: Float32Array.from([2, 1, -1]), beta: Float32Array.from([0, 1, 2]) };
    const got = batchNormScaleShift(bn, { eps: 1e-5 });
    const want = scaleShiftRef(bn, 1e-5);
    expect(got.scale).toBeInstanceOf(Float64Array);
    expect(Array.from(got.scale)).toEqual(Array.from(want.scale));
    expect(Array.from(got.shift)).toEqual(Array.from(want.shift));
    const plain = batchNormScaleShift({ runningMean: new Float64Array([3]), runningVar: new Float64Array([1 - 1e-5]) });
    expect(plain.scale[0]).toBeCloseTo(1, 12);
    expect(plain.shift[0]).toBeCloseTo(-3, 12);
  });

  it('bad inputs: typed errors naming the argument', () => {
    const bn = { runningMean: new Float32Array(4), runningVar: new Float32Array(4).fill(1) };
    const weight = new Float32Array(4 * 3 * 2 * 2);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW', shape: [3, 4, 2, 2] }, bn)).toThrow(/layer\.shape \[3, 4, 2, 2\] must have 4 output channels/);
    expect(() => foldBatchNorm({ weight, layout: 'HWIO', shape: [2, 2, 4, 3] }, bn)).toThrow(RangeError);
    expect(() => foldBatchNorm({ weight, layout: 'HWIM', shape: [2, 2, 3, 4] }, bn)).toThrow(/inChannels · multiplier/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW', shape: [4, 3, 2] }, bn)).toThrow(/layer\.shape must have rank 4/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW', shape: [4, 3, 2, 3] }, bn)).toThrow(/layer\.weight must have length 72/);
    expect(() => foldBatchNorm({ weight: new Float32Array(10), layout: 'OI' }, bn)).toThrow(/layer\.weight must have a multiple of 4/);
    expect(() => foldBatchNorm({ weight, bias: new Float32Array(3), layout: 'OIHW' }, bn)).toThrow(/layer\.bias must have length 4/);
    expect(() => foldBatchNorm({ weight, bias: new Float64Array(4) as never, layout: 'OIHW' }, bn)).toThrow(TypeError);
    expect(() => foldBatchNorm({ weight, layout: 'NCHW' as never }, bn)).toThrow(/layer\.layout must be one of/);
    expect(() => foldBatchNorm({ weight: [1, 2] as never, layout: 'OI' }, bn)).toThrow(TypeError);
    expect(() => foldBatchNorm({ weight: [1, 2] as never, layout: 'OI' }, bn)).toThrow(/layer\.weight/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW' }, { ...bn, runningVar: new Float32Array(3) })).toThrow(/batchNorm\.runningVar must have length 4/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW' }, { ...bn, gamma: new Float32Array(5) })).toThrow(/batchNorm\.gamma/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW' }, bn, { eps: 0 })).toThrow(/options\.eps/);
    expect(() => foldBatchNorm({ weight, layout: 'OIHW' }, bn, { epsilon: 1 } as never)).toThrow(/did you mean eps\?/);
    expect(() => batchNormScaleShift({ runningMean: new Float32Array(2), runningVar: null } as never)).toThrow(/batchNorm\.runningVar/);
  });
});
