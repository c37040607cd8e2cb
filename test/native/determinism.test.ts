/**
 * README "Numerics": the same input gives bitwise the same result, every phase, whatever the thread count
 * (setThreads(1), setThreads(2), more threads than cores), and whatever the alignment of the
 * caller's arrays (the binding is zero-copy, so a subarray's byteOffset reaches the kernels).
 * Shapes are big enough to be split into many tasks and to take every kernel path.
 */
import { afterAll, expect, it } from 'vitest';
import { binding, bnNorm, describeNative, FLOAT_TYPES, Phase, randomArray, run, sameBits, type FloatArray, type FloatCtor } from './helpers.js';

interface Shape {
  name: string;
  outer: number;
  channels: number;
  inner: number;
}

const SHAPES: Shape[] = [
  { name: 'NCHW [4, 32, 128, 128]', outer: 4, channels: 32, inner: 128 * 128 },
  { name: 'NCHW [2, 4, 300, 301] (few channels, odd planes)', outer: 2, channels: 4, inner: 300 * 301 },
  { name: 'NHWC [4, 64, 64, 48] (channels-last)', outer: 4 * 64 * 64, channels: 48, inner: 1 },
  { name: 'NC [100003, 7] (odd sizes)', outer: 100003, channels: 7, inner: 1 },
  { name: 'N x 1 x L [3, 1, 333333]', outer: 3, channels: 1, inner: 333333 },
];

const OUTPUT_NAMES = [
  'y', 'mean', 'invStd', 'dx', 'dgamma', 'dbeta', 'yInfer', 'dxEval', 'dgammaEval', 'dbetaEval',
  'momentsMean', 'momentsVar', 'runningMean', 'runningVar',
] as const;
type Outputs = Record<(typeof OUTPUT_NAMES)[number], FloatArray>;

/** Output arrays starting `shift` elements into their buffers. */
function makeOutputs(T: FloatCtor, s: Shape, shift: number): Outputs {
  const n = s.outer * s.channels * s.inner;
  const perChannel = new Set(['mean', 'invStd', 'dgamma', 'dbeta', 'dgammaEval', 'dbetaEval', 'momentsMean', 'momentsVar', 'runningMean', 'runningVar']);
  return Object.fromEntries(
    OUTPUT_NAMES.map((k) => {
      const length = perChannel.has(k) ? s.channels : n;
      return [k, new T(length + shift).subarray(shift)];
    }),
  ) as Outputs;
}

/** Runs every phase on the same inputs into `out`; returns copies of every output. */
function runAll(T: FloatCtor, s: Shape, out: Outputs): FloatArray[] {
  const n = s.outer * s.channels * s.inner;
  const c = s.channels;
  const m = s.outer * s.inner;
  const x = randomArray(T, n, 9, 3, 1e3); // far-from-zero mean: the shifted sums matter
  const dy = randomArray(T, n, 10);
  const gamma = randomArray(T, c, 11, 0.5, 1);
  const beta = randomArray(T, c, 12);
  out.runningMean.set(randomArray(T, c, 13));
  out.runningVar.set(randomArray(T, c, 14, 0.5, 1));
  const running = { factor: 0.1, varScale: m / (m - 1) };
  run(bnNorm(Phase.train, T, s, {
    x, gamma, beta, y: out.y, mean: out.mean, invStd: out.invStd, runningMean: out.runningMean, runningVar: out.runningVar,
  }, { eps: 1e-5, relu: true, ...running }));
  run(bnNorm(Phase.backward, T, s, {
    dy, x, mean: out.mean, invStd: out.invStd, gamma, y: out.y, dx: out.dx, dgamma: out.dgamma, dbeta: out.dbeta,
  }, { relu: true, training: true }));
  run(bnNorm(Phase.backward, T, s, {
    dy, x, mean: out.mean, invStd: out.invStd, gamma, dx: out.dxEval, dgamma: out.dgammaEval, dbeta: out.dbetaEval,
  }));
  run(bnNorm(Phase.infer, T, s, {
    x, runningMean: out.runningMean, runningVar: out.runningVar, gamma, beta, y: out.yInfer,
  }, { eps: 1e-5 }));
  run(bnNorm(Phase.moments, T, s, { x, mean: out.momentsMean, variance: out.momentsVar }));
  run(bnNorm(Phase.update, T, s, {
    mean: out.momentsMean, variance: out.momentsVar, runningMean: out.runningMean, runningVar: out.runningVar,
  }, running));
  return OUTPUT_NAMES.map((k) => out[k].slice());
}

function expectSameOutputs(a: FloatArray[], b: FloatArray[], what: string): void {
  a.forEach((v, i) => expect(sameBits(v, b[i]!), `${OUTPUT_NAMES[i]}: ${what}`).toBe(true));
  expect(a[1]!.every(Number.isFinite), 'mean is finite').toBe(true);
}

describeNative('native binding: results do not depend on the thread count', () => {
  afterAll(() => binding().setThreads(0));

  it('setThreads sets what getThreads and info report; 0 restores the default', () => {
    const b = binding();
    b.setThreads(0);
    const defaultThreads = b.getThreads();
    expect(defaultThreads).toBe(b.info().maxThreads);
    b.setThreads(1);
    expect(b.getThreads()).toBe(1);
    expect(b.info().threads).toBe(1);
    b.setThreads(3);
    expect(b.getThreads()).toBe(3);
    b.setThreads(0);
    expect(b.getThreads()).toBe(defaultThreads);
  });

  for (const T of FLOAT_TYPES) {
    for (const s of SHAPES) {
      it(`${T.name} ${s.name}: 1, 2 and 5 threads give the same bits`, () => {
        const b = binding();
        const out = makeOutputs(T, s, 0); // the same arrays each time: only the threads change
        b.setThreads(1);
        const one = runAll(T, s, out);
        b.setThreads(2);
        const two = runAll(T, s, out);
        b.setThreads(5);
        const five = runAll(T, s, out);
        b.setThreads(0);
        expectSameOutputs(one, two, '1 vs 2 threads');
        expectSameOutputs(one, five, '1 vs 5 threads');
      }, 60_000);
    }
  }
});

describeNative('native binding: results do not depend on where the arrays start', () => {
  for (const T of FLOAT_TYPES) {
    for (const s of SHAPES.slice(0, 3)) {
      it(`${T.name} ${s.name}: outputs at element offsets 0, 1, 3 and 5 get the same bits`, () => {
        const base = runAll(T, s, makeOutputs(T, s, 0));
        for (const shift of [1, 3, 5]) expectSameOutputs(base, runAll(T, s, makeOutputs(T, s, shift)), `offset ${shift}`);
      }, 60_000);
    }
  }
});
