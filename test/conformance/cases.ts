/**
 * The conformance suite: every README rule (API, Errors, Numerics) as a case, written once and run against every
 * backend — in Node by test/conformance/conformance.test.ts, in Chromium by the browser harness.
 * A case receives the façade (the package's module object) with the backend under test
 * already chosen, and throws an Error saying what differs. Expected values come from the
 * float64 reference (the `js` backend on float64 copies of the same data).
 */
import type * as Simdnorm from '../../lib/exports.js';
import { formatMismatch, toleranceFor, worstMismatch } from '../../lib/compare.js';
import { Random } from '../../lib/random.js';
import { checkSpec, type CaseSpec, type Op } from '../../lib/verify.js';

export type SimdnormApi = typeof Simdnorm;
type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';

export interface ConformanceCase {
  name: string;
  run(api: SimdnormApi): void | Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Assertions (no test framework: the same code runs in a browser page)

export function fail(message: string): never {
  throw new Error(message);
}

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, tolerance?: number): void {
  const tol = tolerance ?? toleranceFor(got as FloatArray);
  const m = worstMismatch(got, expected, tol);
  if (m) fail(formatMismatch(name, m));
}

function expectBitwise(name: string, got: FloatArray, expected: FloatArray): void {
  if (got.length !== expected.length) fail(`${name}: length ${got.length}, expected ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], expected[i])) fail(`${name}[${i}] = ${got[i]}, expected exactly ${expected[i]}`);
  }
}

function expectThrows(
  what: string,
  fn: () => unknown,
  kind: typeof TypeError | typeof RangeError | typeof Error,
  mentions: string,
): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof kind)) fail(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}, expected ${kind.name}`);
    if (!e.message.includes(mentions)) fail(`${what}: message "${e.message}" does not name '${mentions}'`);
    return;
  }
  fail(`${what}: did not throw (expected ${kind.name} naming '${mentions}')`);
}

function check(condition: boolean, message: string): void {
  if (!condition) fail(message);
}

// ---------------------------------------------------------------------------------------------
// Data

const make = (dtype: DType, n: number): FloatArray => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n));

function random(dtype: DType, n: number, seed: number, scale = 1, offset = 0): FloatArray {
  return new Random(seed).fill(make(dtype, n), scale, offset);
}

function to64(a: FloatArray): Float64Array {
  return new Float64Array(a);
}

function channelCount(shape: readonly number[], layout: 'channels-first' | 'channels-last'): number {
  return shape[layout === 'channels-first' ? 1 : shape.length - 1];
}

/** Runs fn on the float64 reference. */
function reference<R>(api: SimdnormApi, fn: () => R): R {
  return api.withBackend('js', fn);
}

// ---------------------------------------------------------------------------------------------
// 1. Every op × rank 2–5 × layout × dtype × affine × ReLU, against the float64 reference

const SHAPES: Record<number, number[]> = {
  2: [37, 19],
  3: [5, 6, 29],
  4: [3, 5, 7, 11],
  5: [2, 3, 4, 5, 6],
};

function matrixCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  let seed = 1;
  for (const op of ['train', 'infer', 'backward', 'moments'] as Op[]) {
    for (const rank of [2, 3, 4, 5]) {
      for (const layout of ['channels-first', 'channels-last'] as const) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const affine of op === 'moments' ? [false] : [true, false]) {
            for (const activation of op === 'moments' ? (['none'] as const) : (['none', 'relu'] as const)) {
              const spec: CaseSpec = {
                op,
                dtype,
                layout,
                dims: SHAPES[rank],
                affine,
                activation,
                offset: 0,
                scale: 2,
                eps: 1e-5,
                momentum: 0.9,
                unbiasedRunningVar: true,
                training: true,
                seed: seed++,
              };
              cases.push(specCase(spec));
            }
          }
        }
      }
    }
  }
  return cases;
}

function specCase(spec: CaseSpec, name?: string): ConformanceCase {
  const label = name ?? `${spec.op} ${spec.dtype} ${spec.layout} rank ${spec.dims.length}${spec.affine ? '' : ' no-affine'}${spec.activation === 'relu' ? ' relu' : ''}`;
  return {
    name: label,
    run(api) {
      const backend = api.currentBackend();
      const failure = checkSpec(api, backend, spec);
      if (failure) fail(failure);
    },
  };
}

const base: CaseSpec = {
  op: 'train',
  dtype: 'float32',
  layout: 'channels-first',
  dims: [4, 6, 9, 7],
  affine: true,
  activation: 'none',
  offset: 0,
  scale: 1,
  eps: 1e-5,
  momentum: 0.9,
  unbiasedRunningVar: true,
  training: true,
  seed: 7,
};

// ---------------------------------------------------------------------------------------------
// 2. Options: eps, momentum (number and null), unbiased on/off, eval-mode backward, large tensors

function optionCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const eps of [1e-3, 0.5]) {
      cases.push(specCase({ ...base, dtype, eps }, `train ${dtype} eps ${eps}`));
      cases.push(specCase({ ...base, op: 'infer', dtype, eps }, `infer ${dtype} eps ${eps}`));
    }
    for (const momentum of [0, 0.1, 0.9, 1, null]) {
      for (const unbiasedRunningVar of [true, false]) {
        cases.push(
          specCase({ ...base, dtype, momentum, unbiasedRunningVar }, `train ${dtype} momentum ${momentum} ${unbiasedRunningVar ? 'unbiased' : 'biased'}`),
        );
      }
    }
    for (const layout of ['channels-first', 'channels-last'] as const) {
      cases.push(specCase({ ...base, op: 'backward', dtype, layout, training: false }, `backward ${dtype} ${layout} eval mode`));
      cases.push(
        specCase({ ...base, op: 'backward', dtype, layout, training: false, activation: 'relu' }, `backward ${dtype} ${layout} eval mode relu`),
      );
    }
  }
  // Sizes past the native backend's threading threshold, odd tails, many and few channels.
  const big: [string, number[], 'channels-first' | 'channels-last'][] = [
    ['NCHW [8,16,33,35]', [8, 16, 33, 35], 'channels-first'],
    ['NHWC [8,30,31,24]', [8, 30, 31, 24], 'channels-last'],
    ['NC [4096,67]', [4096, 67], 'channels-first'],
    ['NCL 1 channel [64,1,3001]', [64, 1, 3001], 'channels-first'],
    ['NHWC 3 channels [16,64,65,3]', [16, 64, 65, 3], 'channels-last'],
    ['NCHW tiny planes [512,300,1,2]', [512, 300, 1, 2], 'channels-first'],
    ['NC two values per channel [2,4104]', [2, 4104], 'channels-first'],
    ['NHWC six values per channel [3,1,2,1032]', [3, 1, 2, 1032], 'channels-last'],
  ];
  for (const [label, dims, layout] of big) {
    for (const op of ['train', 'infer', 'backward', 'moments'] as Op[]) {
      cases.push(specCase({ ...base, op, dims, layout, seed: dims[0] + dims[1] }, `${op} float32 ${label}`));
    }
  }
  // float32 data whose sums of squares are too small for the kernels' float partial sums (1e-18:
  // below 2^-100, where float squares may have underflowed; the variance itself is still a normal
  // float) or overflow float (3e18): those sums are refused and taken again in double, on the
  // planes path and the rows path (four planes, or four parts of the rows, at a time).
  for (const scale of [1e-18, 3e18]) {
    for (const [label, dims, layout] of big.slice(0, 2)) {
      for (const op of ['train', 'backward', 'moments'] as Op[]) {
        cases.push(specCase({ ...base, op, dims, layout, scale, seed: 7 }, `${op} float32 ${label} at scale ${scale}`));
      }
    }
  }
  // Subnormal data (float32 1e-42, float64 1e-310), without affine so that y stays subnormal too:
  // a float32 mean's low part is then below the subnormal spacing 2^-149 (the kernels fold it
  // into the shift). Outputs that small are judged with compare.ts's spacing allowance.
  for (const [dtype, scale] of [['float32', 1e-42], ['float64', 1e-310]] as const) {
    for (const [label, dims, layout] of big.slice(0, 2)) {
      for (const [op, activation] of [['train', 'none'], ['train', 'relu'], ['infer', 'none'], ['backward', 'none'], ['moments', 'none']] as const) {
        cases.push(
          specCase({ ...base, op, dtype, dims, layout, scale, activation, affine: false, seed: 13 },
            `${op} ${dtype} ${label} subnormal data at ${scale}${activation === 'relu' ? ' relu' : ''}`),
        );
      }
    }
  }
  // A few values per channel (the kernels' rows path takes moments and gradient sums straight
  // from x, at most 8 rows): every dtype, with and without ReLU and affine, at an offset.
  for (const dtype of ['float32', 'float64'] as const) {
    for (const activation of ['none', 'relu'] as const) {
      for (const op of ['train', 'backward'] as Op[]) {
        const dims = [8, 1040];
        cases.push(
          specCase({ ...base, op, dtype, dims, activation, affine: activation === 'none', offset: 1e4, seed: 41 },
            `${op} ${dtype} NC eight values per channel [8,1040] at 1e4${activation === 'relu' ? ' relu' : ''}`),
        );
      }
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// 3. Running statistics, counters and skipNonFiniteUpdate

function runningCases(): ConformanceCase[] {
  return [
    {
      name: 'momentum null is the cumulative average over batches',
      run(api) {
        const C = 3;
        const shape = [10, C];
        const runningMean = new Float64Array(C);
        const runningVar = new Float64Array(C).fill(1);
        const sums = new Float64Array(C);
        let n = 0;
        for (let batch = 0; batch < 4; batch++) {
          const x = random('float64', 10 * C, 100 + batch, 1, batch);
          const r = api.batchNormTrain({ x, shape, runningMean, runningVar, numBatchesTracked: n }, { momentum: null });
          check(r.updated && r.numBatchesTracked === n + 1, `batch ${batch}: numBatchesTracked ${r.numBatchesTracked}, expected ${n + 1}`);
          n = r.numBatchesTracked;
          for (let c = 0; c < C; c++) sums[c] += r.mean[c];
        }
        expectClose('runningMean', runningMean, Array.from(sums, (s) => s / 4));
      },
    },
    {
      name: 'skipNonFiniteUpdate leaves the running stats untouched on a batch with Inf/NaN, and says so',
      run(api) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const bad of [Infinity, NaN, -Infinity]) {
            const x = random(dtype, 8 * 4 * 5, 3);
            x[17] = bad;
            const runningMean = random(dtype, 4, 4);
            const runningVar = random(dtype, 4, 5, 0.1, 1);
            const before = [runningMean.slice(), runningVar.slice()];
            const r = api.batchNormTrain(
              { x, shape: [8, 4, 5], runningMean, runningVar, numBatchesTracked: 5 },
              { skipNonFiniteUpdate: true },
            );
            check(r.updated === false && r.numBatchesTracked === 5, `${dtype} ${bad}: updated ${r.updated}, numBatchesTracked ${r.numBatchesTracked}`);
            expectBitwise('runningMean', runningMean, before[0]);
            expectBitwise('runningVar', runningVar, before[1]);
            // Without the option the non-finite batch flows into the running stats (IEEE).
            const r2 = api.batchNormTrain({ x, shape: [8, 4, 5], runningMean, runningVar });
            check(r2.updated, 'without skipNonFiniteUpdate the update happens');
            // x[17] is (n 0, channel 3, position 2) of [8, 4, 5].
            check(!Number.isFinite(runningMean[3]) || !Number.isFinite(runningVar[3]), 'non-finite batch statistics propagate');
            check(Number.isFinite(runningMean[0]) && Number.isFinite(runningVar[0]), 'other channels stay finite');
          }
        }
      },
    },
    {
      name: 'NaN and Inf in the data propagate as IEEE arithmetic says',
      run(api) {
        const x = random('float32', 6 * 3 * 4, 9);
        x[0] = NaN; // channel 0
        const r = api.batchNormTrain({ x, shape: [6, 3, 4] });
        check(Number.isNaN(r.mean[0]) && Number.isNaN(r.invStd[0]), 'channel 0 statistics are NaN');
        check(Number.isFinite(r.mean[1]) && Number.isFinite(r.mean[2]), 'other channels stay finite');
        check(Number.isNaN(r.y[2]), 'channel 0 output is NaN');
        const relu = api.batchNormTrain({ x, shape: [6, 3, 4] }, { activation: 'relu' });
        check(Number.isNaN(relu.y[2]), 'ReLU lets NaN through (as PyTorch)');
        const expected = reference(api, () => api.batchNormTrain({ x: to64(x), shape: [6, 3, 4] }));
        expectClose('y', r.y, expected.y);
      },
    },
    {
      name: 'a channel holding ±Inf gets the formulas\' values: mean ±Inf like Σx/M, the reference\'s y and gradients (every layout, dtype, path)',
      run(api) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const layout of ['channels-first', 'channels-last'] as const) {
            // small planes (rows path), large planes (fused planes path), two values per
            // channel (rows path, moments and gradient sums straight from x)
            for (const shape of [[6, 3, 4], [4, 3, 700], [2, 64]]) {
              const n = shape.reduce((a, b) => a * b, 1);
              const x = random(dtype, n, 17);
              const dy = random(dtype, n, 18);
              x[0] = Infinity; // channel 0 in either layout
              const r = api.batchNormTrain({ x, shape }, { layout });
              check(r.mean[0] === Infinity, `${dtype} ${layout} [${shape}]: mean of the +Inf channel is +Inf (got ${r.mean[0]})`);
              check(Number.isFinite(r.mean[1]) && Number.isFinite(r.mean[2]), 'the other channels stay finite');
              const e = reference(api, () => api.batchNormTrain({ x: to64(x), shape }, { layout }));
              expectClose('y', r.y, e.y);
              expectClose('invStd', r.invStd, e.invStd);
              const saved = { mean: r.mean, invStd: r.invStd };
              const b = api.batchNormBackward({ dy, x, shape, ...saved }, { layout });
              const eb = reference(api, () => api.batchNormBackward({ dy: to64(dy), x: to64(x), shape, mean: to64(saved.mean), invStd: to64(saved.invStd) }, { layout }));
              expectClose('dx', b.dx, eb.dx);
              expectClose('dbeta', b.dbeta, eb.dbeta);
            }
          }
        }
      },
    },
    {
      name: 'updateRunningStats on its own matches the fused update',
      run(api) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const unbiasedRunningVar of [true, false]) {
            const shape = [12, 5, 3];
            const x = random(dtype, 180, 11, 2, 1);
            const fused = { runningMean: random(dtype, 5, 12), runningVar: random(dtype, 5, 13, 0.1, 1) };
            const alone = { runningMean: fused.runningMean.slice(), runningVar: fused.runningVar.slice() };
            api.batchNormTrain({ x, shape, ...fused, numBatchesTracked: 2 }, { unbiasedRunningVar, momentum: 0.8 });
            const m = api.moments({ x, shape });
            const r = api.updateRunningStats(
              { ...alone, mean: m.mean, variance: m.variance, count: 36, numBatchesTracked: 2 },
              { unbiasedRunningVar, momentum: 0.8 },
            );
            check(r.updated && r.numBatchesTracked === 3, `updated ${r.updated} numBatchesTracked ${r.numBatchesTracked}`);
            expectClose('runningMean', alone.runningMean, fused.runningMean);
            expectClose('runningVar', alone.runningVar, fused.runningVar);
          }
        }
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// 4. Caller-owned outputs, in-place aliasing, subarrays, SharedArrayBuffer, async, threads

function bufferCases(): ConformanceCase[] {
  const shape = [6, 5, 4, 3];
  const n = 360;
  return [
    {
      name: 'out buffers are filled and returned; y may be x; dx may be dy',
      run(api) {
        for (const dtype of ['float32', 'float64'] as const) {
          const x = random(dtype, n, 21);
          const gamma = random(dtype, 5, 22, 0.3, 1);
          const beta = random(dtype, 5, 23);
          const fresh = api.batchNormTrain({ x, shape, gamma, beta }, { activation: 'relu' });
          const out = { y: make(dtype, n), mean: make(dtype, 5), invStd: make(dtype, 5) };
          const r = api.batchNormTrain({ x, shape, gamma, beta }, { activation: 'relu' }, out);
          check(r.y === out.y && r.mean === out.mean && r.invStd === out.invStd, 'the out buffers are the results');
          expectBitwise('y into out', out.y, fresh.y);
          const inPlace = x.slice();
          const r2 = api.batchNormTrain({ x: inPlace, shape, gamma, beta }, { activation: 'relu' }, { y: inPlace });
          check(r2.y === inPlace, 'in-place y is x');
          expectBitwise('y in place', inPlace, fresh.y);

          const dy = random(dtype, n, 24);
          const grads = api.batchNormBackward({ dy, x, shape, mean: fresh.mean, invStd: fresh.invStd, gamma, y: fresh.y }, { activation: 'relu' });
          const dyInPlace = dy.slice();
          const g2 = api.batchNormBackward(
            { dy: dyInPlace, x, shape, mean: fresh.mean, invStd: fresh.invStd, gamma, y: fresh.y },
            { activation: 'relu' },
            { dx: dyInPlace },
          );
          check(g2.dx === dyInPlace, 'in-place dx is dy');
          expectBitwise('dx in place', dyInPlace, grads.dx);
          expectBitwise('dgamma', g2.dgamma, grads.dgamma);

          const xi = x.slice();
          const rm = random(dtype, 5, 25);
          const rv = random(dtype, 5, 26, 0.1, 1);
          const inferred = api.batchNormInfer({ x, shape, runningMean: rm, runningVar: rv, gamma, beta });
          api.batchNormInfer({ x: xi, shape, runningMean: rm, runningVar: rv, gamma, beta }, {}, { y: xi });
          expectBitwise('infer in place', xi, inferred.y);
        }
      },
    },
    {
      name: 'subarrays (non-zero byteOffset) and SharedArrayBuffer-backed arrays',
      run(api) {
        const sabAvailable = typeof SharedArrayBuffer === 'function';
        for (const dtype of ['float32', 'float64'] as const) {
          const plain = random(dtype, n, 31, 2, 3);
          const expected = reference(api, () => api.batchNormTrain({ x: to64(plain), shape }));
          const Ctor = dtype === 'float32' ? Float32Array : Float64Array;
          const host = new Ctor(n + 13);
          host.set(plain, 7);
          const sub = host.subarray(7, 7 + n);
          const ySub = new Ctor(n + 5).subarray(3, 3 + n);
          const r = api.batchNormTrain({ x: sub, shape }, {}, { y: ySub });
          expectClose('y from a subarray', r.y, expected.y);
          check(host[6] === 0 && host[7 + n] === 0, 'nothing written around the subarray');
          if (sabAvailable) {
            const sab = new SharedArrayBuffer(n * Ctor.BYTES_PER_ELEMENT);
            const shared = dtype === 'float32' ? new Float32Array(sab) : new Float64Array(sab);
            shared.set(plain);
            const rs = api.batchNormTrain({ x: shared, shape });
            expectClose('y from a SharedArrayBuffer', rs.y, expected.y);
          }
        }
      },
    },
    {
      name: 'async variants give bitwise the same results as sync',
      async run(api) {
        const big = [4, 8, 64, 64];
        const x = random('float32', 4 * 8 * 64 * 64, 41);
        const dy = random('float32', x.length, 42);
        const gamma = random('float32', 8, 43, 0.2, 1);
        const rm = random('float32', 8, 44);
        const rv = random('float32', 8, 45, 0.1, 1);
        const sync = api.batchNormTrain({ x, shape: big, gamma });
        const asyncR = await api.batchNormTrainAsync({ x, shape: big, gamma });
        expectBitwise('train y', asyncR.y, sync.y);
        expectBitwise('train mean', asyncR.mean, sync.mean);
        const inf = api.batchNormInfer({ x, shape: big, runningMean: rm, runningVar: rv, gamma });
        expectBitwise('infer y', (await api.batchNormInferAsync({ x, shape: big, runningMean: rm, runningVar: rv, gamma })).y, inf.y);
        const bw = api.batchNormBackward({ dy, x, shape: big, mean: sync.mean, invStd: sync.invStd, gamma });
        const bwA = await api.batchNormBackwardAsync({ dy, x, shape: big, mean: sync.mean, invStd: sync.invStd, gamma });
        expectBitwise('dx', bwA.dx, bw.dx);
        expectBitwise('dgamma', bwA.dgamma, bw.dgamma);
        // An async call with bad input rejects (and writes nothing).
        let rejected = false;
        await api.batchNormTrainAsync({ x, shape: [3, 8, 64, 64] }).catch((e: unknown) => (rejected = e instanceof RangeError));
        check(rejected, 'a bad async call rejects with RangeError');
      },
    },
    {
      name: 'results are bitwise identical whatever the thread count',
      run(api) {
        const cases: [number[], 'channels-first' | 'channels-last'][] = [
          [[16, 24, 40, 40], 'channels-first'],
          [[16, 40, 40, 24], 'channels-last'],
          [[3, 2, 50000], 'channels-first'],
        ];
        try {
          for (const [dims, layout] of cases) {
            const count = dims.reduce((a, b) => a * b, 1);
            const x = random('float32', count, 51, 3, 100);
            const dy = random('float32', count, 52);
            const runAll = (threads: number) => {
              api.setThreads(threads);
              const t = api.batchNormTrain({ x, shape: dims }, { layout });
              const b = api.batchNormBackward({ dy, x, shape: dims, mean: t.mean, invStd: t.invStd }, { layout });
              return [t.y, t.mean, t.invStd, b.dx, b.dgamma, b.dbeta, api.moments({ x, shape: dims }, { layout }).variance];
            };
            const one = runAll(1);
            const two = runAll(2);
            one.forEach((a, i) => expectBitwise(`${layout} output ${i}`, two[i], a));
          }
        } finally {
          api.setThreads(0);
        }
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// 5. Zero elements, M == 1, numerics far from zero

function edgeCases(): ConformanceCase[] {
  return [
    {
      name: 'zero elements give empty outputs and leave the running stats unchanged',
      async run(api) {
        for (const shape of [[0, 3, 4], [0, 3], [5, 3, 0], [4, 0, 2]]) {
          const C = channelCount(shape, 'channels-first');
          const runningMean = new Float32Array(C).fill(2);
          const runningVar = new Float32Array(C).fill(3);
          const r = api.batchNormTrain({ x: new Float32Array(0), shape, runningMean, runningVar, numBatchesTracked: 4 });
          check(r.y.length === 0 && r.mean.length === C && r.updated === false && r.numBatchesTracked === 4, `shape [${shape}]: ${JSON.stringify({ y: r.y.length, updated: r.updated, n: r.numBatchesTracked })}`);
          check(runningMean.every((v) => v === 2) && runningVar.every((v) => v === 3), 'running stats unchanged');
          const inf = api.batchNormInfer({ x: new Float32Array(0), shape, runningMean, runningVar });
          check(inf.y.length === 0, 'empty inference output');
          const b = api.batchNormBackward({ dy: new Float32Array(0), x: new Float32Array(0), shape, mean: r.mean, invStd: r.invStd });
          check(b.dx.length === 0 && b.dgamma.every((v) => v === 0) && b.dbeta.every((v) => v === 0), 'empty backward: zero parameter gradients');
          check((await api.batchNormTrainAsync({ x: new Float32Array(0), shape })).y.length === 0, 'empty async');
        }
      },
    },
    {
      name: 'M == 1 in training is a RangeError (as PyTorch); inference and moments accept it',
      run(api) {
        expectThrows('train [1, 4]', () => api.batchNormTrain({ x: new Float32Array(4), shape: [1, 4] }), RangeError, 'more than 1 value per channel');
        expectThrows('train [1, 4, 1, 1]', () => api.batchNormTrain({ x: new Float64Array(4), shape: [1, 4, 1, 1] }), RangeError, 'x');
        const x = new Float32Array([1, 2, 3, 4]);
        const one = new Float32Array(4).fill(1);
        const zero = new Float32Array(4);
        const y = api.batchNormInfer({ x, shape: [1, 4], runningMean: zero, runningVar: one }).y;
        expectClose('infer M=1', y, Array.from(x, (v) => v / Math.sqrt(1 + 1e-5)));
        const m = api.moments({ x, shape: [1, 4] });
        expectClose('moments M=1 mean', m.mean, x);
        expectBitwise('moments M=1 variance', m.variance, new Float32Array(4));
      },
    },
    {
      name: 'float32 statistics stay right far from zero: 1e4 + N(0,1)',
      run(api) {
        for (const layout of ['channels-first', 'channels-last'] as const) {
          const shape = layout === 'channels-first' ? [16, 3, 32, 33] : [16, 32, 33, 3];
          const x = random('float32', 16 * 3 * 32 * 33, 61, 1, 1e4);
          const gamma = new Float32Array([1, 2, 0.5]);
          const beta = new Float32Array([0, 1, -1]);
          const expected = reference(api, () => api.batchNormTrain({ x: to64(x), shape, gamma: to64(gamma), beta: to64(beta) }, { layout }));
          const r = api.batchNormTrain({ x, shape, gamma, beta }, { layout });
          expectClose(`${layout} y`, r.y, expected.y);
          expectClose(`${layout} mean`, r.mean, expected.mean);
          expectClose(`${layout} invStd`, r.invStd, expected.invStd);
          const m = api.moments({ x, shape }, { layout });
          const m64 = reference(api, () => api.moments({ x: to64(x), shape }, { layout }));
          expectClose(`${layout} variance`, m.variance, m64.variance);
          const dy = random('float32', x.length, 62);
          const b = api.batchNormBackward({ dy, x, shape, mean: r.mean, invStd: r.invStd, gamma }, { layout });
          const b64 = reference(api, () =>
            api.batchNormBackward({ dy: to64(dy), x: to64(x), shape, mean: to64(r.mean), invStd: to64(r.invStd), gamma: to64(gamma) }, { layout }),
          );
          expectClose(`${layout} dgamma`, b.dgamma, b64.dgamma);
          expectClose(`${layout} dbeta`, b.dbeta, b64.dbeta);
        }
      },
    },
    {
      // Issue 12: float32 y was off by up to 158 subnormal spacings (7.6e-4 of its RMS): the mean
      // (x is 0, 714, 1427 or 2141 spacings of 2^-149) lost its fraction of a spacing, then
      // multiplied by invStd = 316. The outputs are subnormal too: judged with lib/compare.ts's
      // spacing allowance (a correctly rounded y at 1.6e-40 is within 4.4e-6 of itself).
      name: 'x = (i % 4)·1e-42 (subnormal float32) and (i % 4)·1e-310 (float64): y, statistics, inference, backward as the reference\'s',
      run(api) {
        for (const [dtype, unit] of [['float32', 1e-42], ['float64', 1e-310]] as const) {
          for (const [layout, shape] of [['channels-first', [8, 16, 33, 35]], ['channels-first', [4, 6, 9, 7]], ['channels-last', [8, 30, 31, 26]], ['channels-last', [8, 1030]]] as const) {
            const n = shape.reduce((a, b) => a * b, 1);
            const x = make(dtype, n);
            for (let i = 0; i < n; i++) x[i] = (i % 4) * unit;
            const what = `${dtype} ${layout} [${shape}]`;
            for (const activation of ['none', 'relu'] as const) {
              const r = api.batchNormTrain({ x, shape }, { layout, activation });
              const e = reference(api, () => api.batchNormTrain({ x: to64(x), shape }, { layout, activation }));
              expectClose(`${what} ${activation} y`, r.y, e.y);
              expectClose(`${what} mean`, r.mean, e.mean);
              expectClose(`${what} invStd`, r.invStd, e.invStd);
            }
            const m = api.moments({ x, shape }, { layout });
            const m64 = reference(api, () => api.moments({ x: to64(x), shape }, { layout }));
            expectClose(`${what} moments mean`, m.mean, m64.mean);
            expectClose(`${what} moments variance`, m.variance, m64.variance);
            const C = m.mean.length;
            const runningVar = make(dtype, C);
            const inf = api.batchNormInfer({ x, shape, runningMean: m.mean, runningVar }, { layout });
            const inf64 = reference(api, () => api.batchNormInfer({ x: to64(x), shape, runningMean: to64(m.mean), runningVar: to64(runningVar) }, { layout }));
            expectClose(`${what} infer y`, inf.y, inf64.y);
            const saved = api.batchNormTrain({ x, shape }, { layout });
            const dy = random(dtype, n, 81);
            const b = api.batchNormBackward({ dy, x, shape, mean: saved.mean, invStd: saved.invStd }, { layout });
            const b64 = reference(api, () =>
              api.batchNormBackward({ dy: to64(dy), x: to64(x), shape, mean: to64(saved.mean), invStd: to64(saved.invStd) }, { layout }),
            );
            expectClose(`${what} dx`, b.dx, b64.dx);
            expectClose(`${what} dgamma`, b.dgamma, b64.dgamma);
            expectClose(`${what} dbeta`, b.dbeta, b64.dbeta);
          }
        }
      },
    },
    {
      name: 'a constant channel of 1e7 normalises to beta, not to ±1',
      run(api) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const layout of ['channels-first', 'channels-last'] as const) {
            const shape = layout === 'channels-first' ? [8, 2, 50] : [8, 50, 2];
            const x = random(dtype, 800, 71);
            for (let i = 0; i < 800; i++) {
              const c = layout === 'channels-first' ? Math.floor(i / 50) % 2 : i % 2;
              if (c === 1) x[i] = 1e7;
            }
            const beta = make(dtype, 2);
            beta[1] = 0.25;
            const r = api.batchNormTrain({ x, shape, beta }, { layout });
            const m = api.moments({ x, shape }, { layout });
            check(m.variance[1] === 0, `${dtype} ${layout}: variance of a constant channel is ${m.variance[1]}, expected 0`);
            check(r.mean[1] === 1e7, `${dtype} ${layout}: mean ${r.mean[1]}`);
            for (let i = 0; i < 800; i++) {
              const c = layout === 'channels-first' ? Math.floor(i / 50) % 2 : i % 2;
              if (c === 1 && Math.abs(r.y[i] - 0.25) > 1e-5) fail(`${dtype} ${layout}: y[${i}] = ${r.y[i]}, expected beta 0.25`);
            }
          }
        }
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input: typed errors naming the argument, and nothing written on throw

interface Victims {
  runningMean: Float32Array;
  runningVar: Float32Array;
  y: Float32Array;
  mean: Float32Array;
  invStd: Float32Array;
  dx: Float32Array;
  dgamma: Float32Array;
  dbeta: Float32Array;
}

function badInputCases(): ConformanceCase[] {
  const shape = [4, 3, 5];
  const n = 60;
  const x = (): Float32Array => random('float32', n, 81) as Float32Array;
  const c3 = (v = 1): Float32Array => new Float32Array(3).fill(v);
  const victims = (): Victims => ({
    runningMean: c3(0.5),
    runningVar: c3(2),
    y: new Float32Array(n).fill(7),
    mean: c3(7),
    invStd: c3(7),
    dx: new Float32Array(n).fill(7),
    dgamma: c3(7),
    dbeta: c3(7),
  });
  type Call = (api: SimdnormApi, v: Victims) => unknown;
  const train = (inputs: Record<string, unknown>, options?: unknown): Call => (api, v) =>
    api.batchNormTrain(
      { x: x(), shape, runningMean: v.runningMean, runningVar: v.runningVar, ...inputs } as never,
      options as never,
      { y: v.y, mean: v.mean, invStd: v.invStd },
    );
  const infer = (inputs: Record<string, unknown>, options?: unknown): Call => (api, v) =>
    api.batchNormInfer({ x: x(), shape, runningMean: c3(0), runningVar: c3(1), ...inputs } as never, options as never, { y: v.y });
  const backward = (inputs: Record<string, unknown>, options?: unknown): Call => (api, v) =>
    api.batchNormBackward(
      { dy: x(), x: x(), shape, mean: c3(0), invStd: c3(1), ...inputs } as never,
      options as never,
      { dx: v.dx, dgamma: v.dgamma, dbeta: v.dbeta },
    );
  const T = TypeError;
  const R = RangeError;
  const table: [string, Call, typeof TypeError | typeof RangeError, string][] = [
    ['x a plain array', train({ x: Array.from(x()) }), T, 'x'],
    ['x an Int32Array', train({ x: new Int32Array(n) }), T, 'x'],
    ['x a DataView', train({ x: new DataView(new ArrayBuffer(n * 4)) }), T, 'x'],
    ['x an object posing as a Float32Array', train({ x: { length: n, BYTES_PER_ELEMENT: 4, buffer: new ArrayBuffer(n * 4), byteOffset: 0 } }), T, 'x'],
    ['x null', train({ x: null }), T, 'x'],
    ['inputs null', (api) => api.batchNormTrain(null as never), T, 'inputs'],
    ['shape not an array', train({ shape: '4,3,5' }), T, 'shape'],
    ['shape rank 1', train({ x: new Float32Array(3), shape: [3] }), R, 'rank'],
    ['shape with a negative dim', train({ shape: [4, -3, -5] }), R, 'shape[1]'],
    ['shape with a fractional dim', train({ shape: [4, 3, 5.5] }), R, 'shape[2]'],
    ['shape with NaN', train({ shape: [4, NaN, 5] }), R, 'shape[1]'],
    ['shape with a string dim', train({ shape: [4, '3', 5] }), T, 'shape[1]'],
    ['shape of huge dims whose product overflows', train({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }), R, 'shape'],
    ['length not matching the shape', train({ shape: [4, 3, 4] }), R, 'x must have length 48'],
    ['gamma of the other dtype', train({ gamma: new Float64Array(3) }), T, 'gamma'],
    ['gamma one too long', train({ gamma: new Float32Array(4) }), R, 'gamma'],
    ['beta one too short', train({ beta: new Float32Array(2) }), R, 'beta'],
    ['runningVar without runningMean', train({ runningMean: undefined }), T, 'runningMean'],
    ['runningMean of length 2', train({ runningMean: new Float32Array(2) }), R, 'runningMean'],
    ['numBatchesTracked negative', train({ numBatchesTracked: -1 }), R, 'numBatchesTracked'],
    ['eps 0', train({}, { eps: 0 }), R, 'eps'],
    ['eps negative', train({}, { eps: -1e-5 }), R, 'eps'],
    ['eps NaN', train({}, { eps: NaN }), R, 'eps'],
    ['eps Infinity', train({}, { eps: Infinity }), R, 'eps'],
    ['eps a string', train({}, { eps: '1e-5' }), T, 'eps'],
    ['momentum 1.5', train({}, { momentum: 1.5 }), R, 'momentum'],
    ['momentum -0.1', train({}, { momentum: -0.1 }), R, 'momentum'],
    ['momentum NaN', train({}, { momentum: NaN }), R, 'momentum'],
    ['layout unknown', train({}, { layout: 'NCHW' }), R, 'layout'],
    ['activation unknown', train({}, { activation: 'gelu' }), R, 'activation'],
    ['unbiasedRunningVar not a boolean', train({}, { unbiasedRunningVar: 1 }), T, 'unbiasedRunningVar'],
    ['a misspelt option', train({}, { epsilon: 1e-3 }), R, 'epsilon'],
    ['options not an object', train({}, 5), T, 'options'],
    ['out.y too short', (api, v) => api.batchNormTrain({ x: x(), shape, runningMean: v.runningMean, runningVar: v.runningVar }, {}, { y: new Float32Array(n - 1), mean: v.mean }), R, 'out.y'],
    ['out.mean of the other dtype', (api, v) => api.batchNormTrain({ x: x(), shape, runningMean: v.runningMean, runningVar: v.runningVar }, {}, { y: v.y, mean: new Float64Array(3) as never }), T, 'out.mean'],
    ['out.y partially overlapping x', (api, v) => {
      const host = new Float32Array(n + 2);
      host.set(x(), 0);
      return api.batchNormTrain({ x: host.subarray(0, n), shape, runningMean: v.runningMean, runningVar: v.runningVar }, {}, { y: host.subarray(2, n + 2), mean: v.mean });
    }, R, 'out.y'],
    ['out.mean overlapping runningMean', (api, v) => api.batchNormTrain({ x: x(), shape, runningMean: v.runningMean, runningVar: v.runningVar }, {}, { y: v.y, mean: v.runningMean }), R, 'out.mean'],
    ['runningMean aliasing gamma', (api, v) => api.batchNormTrain({ x: x(), shape, gamma: v.runningMean, runningMean: v.runningMean, runningVar: v.runningVar }, {}, { y: v.y }), R, 'runningMean'],
    ['M == 1 in training', (api, v) => api.batchNormTrain({ x: new Float32Array(3), shape: [1, 3], runningMean: v.runningMean, runningVar: v.runningVar }, {}, { mean: v.mean }), R, 'value per channel'],
    ['infer without runningVar', infer({ runningVar: undefined }), T, 'runningVar'],
    ['infer with runningMean of Float64Array', infer({ runningMean: new Float64Array(3) }), T, 'runningMean'],
    // Every option of the family is accepted by every function (momentum by infer too, ignored);
    // a name none knows is refused naming the nearest one.
    ['infer with a misspelt option', infer({}, { momentun: 0.5 }), R, 'momentum'],
    ['infer x detached', (api, v) => {
      const d = x();
      structuredClone(d.buffer, { transfer: [d.buffer] });
      return api.batchNormInfer({ x: d, shape, runningMean: c3(0), runningVar: c3(1) }, {}, { y: v.y });
    }, T, 'detached'],
    ['backward dy of the wrong length', backward({ dy: new Float32Array(n + 1) }), R, 'dy'],
    ['backward dy of the other dtype', backward({ dy: new Float64Array(n) }), T, 'dy'],
    ['backward invStd missing', backward({ invStd: undefined }), T, 'invStd'],
    ['backward relu without y', backward({}, { activation: 'relu' }), T, 'y'],
    ['backward y without relu', backward({ y: x() }), R, 'y'],
    ['backward training not a boolean', backward({}, { training: 'yes' }), T, 'training'],
    ['backward out.dx overlapping x', (api, v) => {
      const xs = x();
      return api.batchNormBackward({ dy: x(), x: xs, shape, mean: c3(0), invStd: c3(1) }, {}, { dx: xs, dgamma: v.dgamma });
    }, R, 'out.dx'],
    ['moments with a bad layout', (api) => api.moments({ x: x(), shape }, { layout: 'last' as never }), R, 'layout'],
    ['updateRunningStats without count when unbiased', (api, v) => api.updateRunningStats({ runningMean: v.runningMean, runningVar: v.runningVar, mean: c3(1), variance: c3(1) }), T, 'count'],
    ['updateRunningStats with count 1', (api, v) => api.updateRunningStats({ runningMean: v.runningMean, runningVar: v.runningVar, mean: c3(1), variance: c3(1), count: 1 }), R, 'count'],
    ['updateRunningStats with variance too short', (api, v) => api.updateRunningStats({ runningMean: v.runningMean, runningVar: v.runningVar, mean: c3(1), variance: new Float32Array(2), count: 4 }), R, 'variance'],
  ];
  return [
    {
      name: `bad input: ${table.length} calls each throw the documented typed error naming the argument, and write nothing`,
      async run(api) {
        for (const [what, call, kind, mentions] of table) {
          const v = victims();
          const before = Object.entries(v).map(([k, a]) => [k, a.slice()] as const);
          expectThrows(what, () => call(api, v), kind, mentions);
          for (const [k, a] of before) {
            const now = v[k as keyof Victims];
            for (let i = 0; i < a.length; i++) {
              if (!Object.is(now[i], a[i])) fail(`${what}: ${k}[${i}] was written (${a[i]} -> ${now[i]}) by a call that threw`);
            }
          }
        }
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// 7. The BatchNorm layer

function layerCases(): ConformanceCase[] {
  return [
    {
      name: 'BatchNorm: a training step, eval mode and PyTorch state dicts match the functional API',
      run(api) {
        for (const layout of ['channels-first', 'channels-last'] as const) {
          const shape = layout === 'channels-first' ? [8, 4, 6, 5] : [8, 6, 5, 4];
          const bn = new api.BatchNorm(4, { layout, activation: 'relu', momentum: 0.8 });
          bn.loadState({ weight: [1, 2, 0.5, -1], bias: [0, 0.1, 0.2, 0.3], running_mean: [0, 0, 0, 0], running_var: [1, 1, 1, 1], num_batches_tracked: 0n });
          const x = random('float32', 960, 91) as Float32Array;
          const dy = random('float32', 960, 92) as Float32Array;
          const y = bn.forward(x, shape);
          const dx = bn.backward(dy);
          const gamma = new Float32Array([1, 2, 0.5, -1]);
          const beta = new Float32Array([0, 0.1, 0.2, 0.3]);
          const rm = new Float32Array(4);
          const rv = new Float32Array(4).fill(1);
          const f = api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm, runningVar: rv }, { layout, activation: 'relu', momentum: 0.8 });
          const b = api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma, y: f.y }, { layout, activation: 'relu' });
          expectBitwise('layer y', y, f.y);
          expectBitwise('layer dx', dx, b.dx);
          expectBitwise('layer dgamma', bn.dgamma!, b.dgamma);
          expectBitwise('layer running_mean', bn.runningMean!, rm);
          const state = bn.state();
          check(state.num_batches_tracked === 1, `num_batches_tracked ${state.num_batches_tracked}`);
          expectBitwise('state running_var', state.running_var!, rv);

          bn.eval();
          const ye = bn.forward(x, shape);
          const fe = api.batchNormInfer({ x, shape, gamma, beta, runningMean: rm, runningVar: rv }, { layout, activation: 'relu' });
          expectBitwise('eval y', ye, fe.y);
          check(bn.numBatchesTracked === 1, 'eval does not count batches');
          const dxe = bn.backward(dy);
          const inv = rv.map((v) => 1 / Math.sqrt(v + 1e-5));
          const be = api.batchNormBackward({ dy, x, shape, mean: rm, invStd: inv, gamma, y: fe.y }, { layout, activation: 'relu', training: false });
          expectClose('eval dx', dxe, be.dx);

          const copy = new api.BatchNorm(4, { layout });
          copy.loadState(state);
          expectBitwise('loaded weight', copy.gamma!, bn.gamma!);
          expectThrows('loadState wrong length', () => copy.loadState({ ...state, bias: [1, 2] }), RangeError, 'state.bias');
          expectBitwise('nothing loaded on throw', copy.beta!, bn.beta!);
        }
      },
    },
  ];
}

/** Every conformance case, in a fixed order. */
export function conformanceCases(): ConformanceCase[] {
  return [
    ...matrixCases(),
    ...optionCases(),
    ...runningCases(),
    ...bufferCases(),
    ...edgeCases(),
    ...badInputCases(),
    ...layerCases(),
  ];
}
