/**
 * BatchNorm + residual add (+ ReLU) fused (README "BatchNorm variants"): conformance cases run on
 * every backend by test/variants/variants.test.ts (through variantCases). Each checks the values
 * against the float64 oracle (lib/reference/variants.ts), and the fusion against its composition on
 * the same backend bit for bit: y = act(BN(x) + z) is BatchNorm's own y (rounded to the dtype) plus z
 * in the dtype; dz is dy masked by y > 0 exactly; dx, dγ, dβ are the relu backward's without a
 * residual. With renorm and ghost BatchNorm too, in place (y over x or z, dz over dy, dx over dy),
 * sync and async, and bad inputs (typed errors naming residual / out.dz, nothing written).
 */
import { formatMismatch, rms, toleranceFor, worstMismatch } from '../../lib/compare.js';
import { Random } from '../../lib/random.js';
import * as ref from '../../lib/reference/variants.js';
import type * as Simdnorm from '../../lib/exports.js';
import type { VariantCase } from './variants-cases.js';

type Api = typeof Simdnorm;
type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';
type Layout = 'channels-first' | 'channels-last';

function fail(message: string): never {
  throw new Error(message);
}
function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, minScale = 0): void {
  const m = worstMismatch(got, expected, toleranceFor(got as FloatArray), minScale);
  if (m) fail(formatMismatch(name, m));
}
function expectBitwise(name: string, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  if (got.length !== expected.length) fail(`${name}: length ${got.length}, expected ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], expected[i])) fail(`${name}[${i}] = ${got[i]}, expected exactly ${expected[i]}`);
  }
}
function expectThrows(what: string, fn: () => unknown, kind: typeof TypeError | typeof RangeError, mentions: RegExp): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof kind)) fail(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}, expected ${kind.name}`);
    if (!mentions.test(e.message)) fail(`${what}: message "${e.message}" does not name ${mentions}`);
    return;
  }
  fail(`${what}: did not throw`);
}

const make = (dtype: DType, n: number): FloatArray => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n));
const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);
const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
function random(dtype: DType, n: number, seed: number, scale = 1, offset = 0): FloatArray {
  return new Random(seed).fill(make(dtype, n), scale, offset);
}
function positive(dtype: DType, n: number, seed: number): FloatArray {
  const r = new Random(seed);
  const a = make(dtype, n);
  for (let i = 0; i < n; i++) a[i] = 0.3 + 2.7 * r.next();
  return a;
}
function inLayout(dims: readonly number[], layout: Layout): number[] {
  return layout === 'channels-first' ? [...dims] : [dims[0], ...dims.slice(2), dims[1]];
}
/** act(a + z) in the dtype of `a`: what the fusion must equal bit for bit. */
function addAct(a: FloatArray, z: FloatArray, relu: boolean): FloatArray {
  const out = a.slice();
  for (let i = 0; i < out.length; i++) out[i] = a[i] + z[i]; // rounded by the store, as the kernels' add
  if (relu) for (let i = 0; i < out.length; i++) out[i] = out[i] < 0 ? 0 : out[i];
  return out;
}

interface ResidualSpec {
  dtype: DType;
  layout: Layout;
  dims: number[]; // [N, C, ...spatial]
  mode: 'train' | 'infer';
  affine: boolean;
  relu: boolean;
  variant?: 'renorm' | 'ghost';
  async?: boolean;
  seed: number;
}

function residualCase(s: ResidualSpec): VariantCase {
  const shape = inLayout(s.dims, s.layout);
  const name = `residual ${s.mode} ${s.dtype} ${s.layout} [${shape}]${s.affine ? '' : ' no-affine'}${s.relu ? ' relu' : ''}${s.variant ? ` + ${s.variant}` : ''}${s.async ? ' async' : ''}`;
  return {
    name,
    async run(api) {
      const C = s.dims[1];
      const n = product(shape);
      const x = random(s.dtype, n, s.seed, 1.6, 0.4);
      const z = random(s.dtype, n, s.seed + 1, 1.2, -0.2);
      const gamma = s.affine ? random(s.dtype, C, s.seed + 2, 0.8, 1) : null;
      const beta = s.affine ? random(s.dtype, C, s.seed + 3, 0.5) : null;
      const rm = random(s.dtype, C, s.seed + 4, 0.5);
      const rv = positive(s.dtype, C, s.seed + 5);
      const activation: 'relu' | 'none' = s.relu ? 'relu' : 'none';
      const v = s.variant === 'ghost' ? s.dims[0] / 2 : null;
      const options = { layout: s.layout, activation, virtualBatchSize: v, renorm: s.variant === 'renorm' ? { rmax: 1.5, dmax: 0.5 } : null } as const;
      const train = s.mode === 'train';
      const forward = async (extra: object, out?: object) => {
        const base = { x, shape, gamma, beta, ...extra };
        if (train) {
          const inputs = { ...base, runningMean: rm.slice(), runningVar: rv.slice() };
          return s.async ? api.batchNormTrainAsync(inputs as never, options, out as never) : api.batchNormTrain(inputs as never, options, out as never);
        }
        const inputs = { ...base, runningMean: rm, runningVar: rv };
        return s.async ? api.batchNormInferAsync(inputs as never, options, out as never) : api.batchNormInfer(inputs as never, options, out as never);
      };
      const fused = (await forward({ residual: z })) as { y: FloatArray; mean?: FloatArray; invStd?: FloatArray; r?: FloatArray; d?: FloatArray };
      // The composition on the same backend: BatchNorm without the activation, then add and act in the dtype.
      const plainOptions = { ...options, activation: 'none' } as const;
      const plain = train
        ? api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm.slice(), runningVar: rv.slice() }, plainOptions)
        : api.batchNormInfer({ x, shape, gamma, beta, runningMean: rm, runningVar: rv }, plainOptions);
      expectBitwise('y = act(BatchNorm y + z)', fused.y, addAct(plain.y, z, s.relu));
      // Against the float64 oracle.
      if (!s.variant) {
        const want = ref.residualForwardRef(
          { x: f64(x), dims: shape, gamma: gamma && f64(gamma), beta: beta && f64(beta), residual: f64(z), runningMean: f64(rm), runningVar: f64(rv) },
          { layout: s.layout, eps: 1e-5, relu: s.relu, training: train },
        );
        expectClose('y', fused.y, want.y);
      }

      // Backward: the saved statistics (training) or the running ones as constants (eval).
      const mean = train ? fused.mean! : rm;
      const invStd = train ? fused.invStd! : (rv.map((value) => 1 / Math.sqrt(value + 1e-5)) as FloatArray);
      const dy = random(s.dtype, n, s.seed + 6);
      const bOptions = { layout: s.layout, activation, training: train, virtualBatchSize: v };
      const bInputs = { dy, x, shape, mean, invStd, gamma, y: s.relu ? fused.y : null, r: fused.r ?? null, d: fused.d ?? null };
      const backward = (extra: object, out?: object) =>
        s.async
          ? api.batchNormBackwardAsync({ ...bInputs, ...extra } as never, bOptions, out as never)
          : Promise.resolve(api.batchNormBackward({ ...bInputs, ...extra } as never, bOptions, out as never));
      const b = await backward({ residual: z });
      if (!b.dz) fail('the result has no dz');
      if (b.dz === dy) fail('dz is dy itself: it must be its own array');
      const masked = dy.map((value, i) => (s.relu && !(fused.y[i] > 0) ? 0 : value)) as FloatArray;
      expectBitwise('dz = dy masked by y > 0', b.dz, masked);
      const nb = await backward({});
      if (nb.dz !== undefined) fail('dz without a residual');
      expectBitwise('dx as without the residual', b.dx, nb.dx);
      expectBitwise('dgamma as without the residual', b.dgamma, nb.dgamma);
      expectBitwise('dbeta as without the residual', b.dbeta, nb.dbeta);
      if (!s.variant) {
        const want = ref.residualBackwardRef(
          { dy: f64(dy), x: f64(x), dims: shape, mean: f64(mean), invStd: f64(invStd), gamma: gamma && f64(gamma), y: s.relu ? f64(fused.y) : null },
          { layout: s.layout, training: train },
        );
        let dxScale = 0;
        for (let c = 0; c < C; c++) dxScale = Math.max(dxScale, Math.abs((gamma ? gamma[c] : 1) * invStd[c]));
        const M = n / C;
        expectClose('dx', b.dx, want.dx, dxScale * rms(masked));
        expectClose('dbeta', b.dbeta, want.dbeta, Math.sqrt(M) * rms(masked));
        expectClose('dgamma', b.dgamma, want.dgamma, Math.sqrt(M) * rms(masked));
      }

      // In place: y over x, y over z; dz over dy, dx over dy (dz its own).
      const overX = x.slice();
      const saveX = x;
      const inPlaceX = (await forward({ x: overX, residual: z }, { y: overX })) as { y: FloatArray };
      if (inPlaceX.y !== overX) fail('out.y = x: not returned');
      expectBitwise('y over x', overX, fused.y);
      const overZ = z.slice();
      await forward({ x: saveX, residual: overZ }, { y: overZ });
      expectBitwise('y over z', overZ, fused.y);
      const dzOverDy = dy.slice();
      const b2 = await backward({ dy: dzOverDy, residual: z }, { dz: dzOverDy });
      if (b2.dz !== dzOverDy) fail('out.dz = dy: not returned');
      expectBitwise('dz over dy', dzOverDy, b.dz);
      expectBitwise('dx with dz over dy', b2.dx, b.dx);
      const dxOverDy = dy.slice();
      const b3 = await backward({ dy: dxOverDy, residual: z }, { dx: dxOverDy });
      expectBitwise('dx over dy', dxOverDy, b.dx);
      expectBitwise('dz with dx over dy', b3.dz!, b.dz);
    },
  };
}

/** The reference's backward against central finite differences of its forward (float64). */
export function residualFiniteDifferences(layout: Layout, relu: boolean): void {
  const dims = layout === 'channels-first' ? [3, 2, 4] : [3, 4, 2];
  const rnd = new Random(relu ? 11 : 12);
  const n = 24;
  const x = rnd.fill(new Float64Array(n), 1.5, 0.4);
  const z = rnd.fill(new Float64Array(n), 1.0, 0.1);
  const w = rnd.fill(new Float64Array(n)); // loss = Σ w·y, so dy = w
  const gamma = Float64Array.from([1.3, -0.7]);
  const beta = Float64Array.from([0.2, -0.1]);
  const eps = 1e-3;
  const o = { layout, eps, relu, training: true } as const;
  const run = (xx: Float64Array, zz: Float64Array, gg: Float64Array, bb: Float64Array) =>
    ref.residualForwardRef({ x: xx, dims, gamma: gg, beta: bb, residual: zz }, o);
  const loss = (xx: Float64Array, zz: Float64Array, gg: Float64Array, bb: Float64Array) => run(xx, zz, gg, bb).y.reduce((s, v, i) => s + v * w[i], 0);
  const f = run(x, z, gamma, beta);
  // No pre-activation value near the ReLU's kink, where a difference quotient would straddle it.
  const pre = ref.residualForwardRef({ x, dims, gamma, beta, residual: z }, { ...o, relu: false }).y;
  if (relu && pre.some((value) => Math.abs(value) < 1e-3)) fail('a value at the kink: choose another seed');
  const got = ref.residualBackwardRef({ dy: w, x, dims, mean: f.mean, invStd: f.invStd, gamma, y: relu ? f.y : null }, { layout, training: true });
  const h = 1e-6;
  const central = (fn: (delta: number) => number) => (fn(h) - fn(-h)) / (2 * h);
  const bump = (a: Float64Array, k: number, delta: number) => {
    const b = a.slice();
    b[k] += delta;
    return b;
  };
  const near = (what: string, a: number, b: number) => {
    if (!(Math.abs(a - b) < 1e-7)) fail(`${what}: ${a} by the backward, ${b} by finite differences`);
  };
  for (let k = 0; k < n; k++) {
    near(`dx[${k}]`, got.dx[k], central((d) => loss(bump(x, k, d), z, gamma, beta)));
    near(`dz[${k}]`, got.dz[k], central((d) => loss(x, bump(z, k, d), gamma, beta)));
  }
  for (let c = 0; c < 2; c++) {
    near(`dgamma[${c}]`, got.dgamma[c], central((d) => loss(x, z, bump(gamma, c, d), beta)));
    near(`dbeta[${c}]`, got.dbeta[c], central((d) => loss(x, z, gamma, bump(beta, c, d))));
  }
}

function residualBadInputsCase(dtype: DType): VariantCase {
  return {
    name: `residual bad inputs ${dtype}: typed errors naming residual / out.dz, nothing written`,
    run(api) {
      const shape = [4, 3, 2];
      const x = random(dtype, 24, 5);
      const z = random(dtype, 24, 6);
      const runningMean = make(dtype, 3).fill(0.25);
      const runningVar = make(dtype, 3).fill(2);
      const y = make(dtype, 24).fill(-7);
      const other = dtype === 'float32' ? new Float64Array(24) : new Float32Array(24);
      const train = (residual: unknown, out: object = { y }) => () =>
        api.batchNormTrain({ x, shape, runningMean, runningVar, residual } as never, { activation: 'relu' }, out as never);
      const infer = (residual: unknown, out: object = { y }) => () =>
        api.batchNormInfer({ x, shape, runningMean, runningVar, residual } as never, { activation: 'relu' }, out as never);
      for (const [what, call] of [['train', train], ['infer', infer]] as const) {
        expectThrows(`${what}: residual too short`, call(z.subarray(0, 23)), RangeError, /^residual must have length 24/);
        expectThrows(`${what}: residual of the other dtype`, call(other), TypeError, /^residual must be/);
        expectThrows(`${what}: residual a plain array`, call(Array.from(z)), TypeError, /^residual must be/);
        const wide = make(dtype, 25);
        expectThrows(`${what}: y partly over residual`, call(wide.subarray(1), { y: wide.subarray(0, 24) }), RangeError, /out\.y must not overlap residual/);
      }
      expectBitwise('runningMean untouched', runningMean, make(dtype, 3).fill(0.25));
      expectBitwise('runningVar untouched', runningVar, make(dtype, 3).fill(2));
      expectBitwise('out.y untouched', y, make(dtype, 24).fill(-7));
      const t = api.batchNormTrain({ x, shape, residual: z }, { activation: 'relu' });
      const dy = random(dtype, 24, 7);
      const dx = make(dtype, 24).fill(-7);
      const dz = make(dtype, 24).fill(-7);
      const back = (inputs: object, out: object) => () =>
        api.batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, y: t.y, ...inputs } as never, { activation: 'relu' }, out as never);
      expectThrows('out.dz without residual', back({}, { dx, dz }), RangeError, /^out\.dz is only written with inputs\.residual/);
      expectThrows('backward residual too short', back({ residual: z.subarray(1) }, { dx, dz }), RangeError, /^residual must have length 24/);
      expectThrows('out.dz too short', back({ residual: z }, { dx, dz: dz.subarray(1) }), RangeError, /^out\.dz must have length 24/);
      const dyCopy = dy.slice();
      expectThrows('dx and dz both over dy', () =>
        api.batchNormBackward({ dy: dyCopy, x, shape, mean: t.mean, invStd: t.invStd, y: t.y, residual: z }, { activation: 'relu' }, { dx: dyCopy, dz: dyCopy }), RangeError, /out\.dx must not overlap out\.dz/);
      expectThrows('dz over y', back({ residual: z }, { dx, dz: t.y }), RangeError, /out\.dz must not overlap y/);
      expectBitwise('out.dx untouched', dx, make(dtype, 24).fill(-7));
      expectBitwise('out.dz untouched', dz, make(dtype, 24).fill(-7));
      expectBitwise('dy untouched', dyCopy, dy);
    },
  };
}

function residualLayerCase(dtype: DType, layout: Layout): VariantCase {
  return {
    name: `BatchNorm layer ${dtype} ${layout}: residual in forward, dz from backward, as the functional calls (with renorm, ghost, eval)`,
    run(api) {
      const shape = inLayout([4, 3, 5], layout);
      const x = random(dtype, 60, 500, 1.5, 0.3);
      const z = random(dtype, 60, 501);
      const dy = random(dtype, 60, 502);
      for (const extra of [{}, { renorm: { rmax: 2, dmax: 1 } }, { virtualBatchSize: 2 }]) {
        const bn = new api.BatchNorm(3, { dtype, layout, activation: 'relu', ...extra } as never);
        const rm = make(dtype, 3), rv = make(dtype, 3).fill(1);
        const y = bn.forward(x as never, shape, { residual: z as never }) as FloatArray;
        const f = api.batchNormTrain({ x, shape, gamma: bn.gamma, beta: bn.beta, runningMean: rm, runningVar: rv, residual: z }, { layout, activation: 'relu', ...extra });
        expectBitwise(`${JSON.stringify(extra)} y`, y, f.y);
        const dx = bn.backward(dy as never) as FloatArray;
        const b = api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma: bn.gamma, y: f.y, r: f.r, d: f.d, residual: z }, { layout, activation: 'relu', ...extra });
        expectBitwise(`${JSON.stringify(extra)} dx`, dx, b.dx);
        expectBitwise(`${JSON.stringify(extra)} dz`, bn.dz!, b.dz!);
        expectBitwise(`${JSON.stringify(extra)} dgamma`, bn.dgamma!, b.dgamma);
        // without a residual next: no dz
        bn.forward(x as never, shape);
        bn.backward(dy as never);
        if (bn.dz !== null) fail('dz after a forward without a residual');
        // eval: inference with the residual, dz the eval backward's
        bn.eval();
        const ye = bn.forward(x as never, shape, { residual: z as never }) as FloatArray;
        const fe = api.batchNormInfer({ x, shape, runningMean: bn.runningMean!, runningVar: bn.runningVar!, gamma: bn.gamma, beta: bn.beta, residual: z }, { layout, activation: 'relu' });
        expectBitwise('eval y', ye, fe.y);
        const dzOut = make(dtype, 60);
        bn.backward(dy as never, { dz: dzOut as never });
        if (bn.dz !== dzOut) fail('out.dz not used');
        expectBitwise('eval dz', dzOut, dy.map((value, i) => (ye[i] > 0 ? value : 0)));
      }
    },
  };
}

export function residualCases(): VariantCase[] {
  const cases: VariantCase[] = [];
  let seed = 5000;
  for (const dtype of ['float32', 'float64'] as const) {
    for (const layout of ['channels-first', 'channels-last'] as const) {
      for (const mode of ['train', 'infer'] as const) {
        for (const dims of [[6, 3, 5], [8, 4], [2, 5, 3, 4]]) {
          for (const [affine, relu] of [[true, true], [false, false], [true, false]] as const) {
            cases.push(residualCase({ dtype, layout, dims, mode, affine, relu, seed: (seed += 10) }));
          }
        }
        cases.push(residualCase({ dtype, layout, dims: [4, 16, 9, 9], mode, affine: true, relu: true, async: true, seed: (seed += 10) }));
      }
      cases.push(residualCase({ dtype, layout, dims: [6, 3, 5], mode: 'train', affine: true, relu: true, variant: 'renorm', seed: (seed += 10) }));
      cases.push(residualCase({ dtype, layout, dims: [6, 3, 5], mode: 'train', affine: true, relu: true, variant: 'ghost', seed: (seed += 10) }));
      cases.push(residualCase({ dtype, layout, dims: [4, 3, 6], mode: 'train', affine: false, relu: false, variant: 'ghost', async: true, seed: (seed += 10) }));
      cases.push(residualLayerCase(dtype, layout));
    }
    cases.push(residualBadInputsCase(dtype));
  }
  return cases;
}
