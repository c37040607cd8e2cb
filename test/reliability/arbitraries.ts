/**
 * The fast-check arbitraries of the reliability suites (test/reliability/properties.test.ts,
 * nonfinite.test.ts) and of the sanitizer replay (test/sanitize/replay.test.ts): shapes, ops,
 * options, magnitudes and special values.
 */
import fc from 'fast-check';
import type { CaseSpec, Op } from '../../lib/verify.js';
import type { SpecialCase } from './special.js';
import { NON_FINITE_KINDS, SPECIAL_KINDS, type DType, type Layout } from './support.js';

/** A shape of rank 2..5 with M >= 2 (N >= 2); now and then one with ~20k..150k elements. */
export function dimsArb(): fc.Arbitrary<number[]> {
  const small = fc.integer({ min: 2, max: 5 }).chain((rank) => {
    const max = rank === 2 ? 200 : rank === 3 ? 24 : rank === 4 ? 10 : 6;
    return fc.tuple(fc.integer({ min: 2, max: Math.min(max, 16) }), fc.array(fc.integer({ min: 1, max }), { minLength: rank - 1, maxLength: rank - 1 }))
      .map(([n, rest]) => [n, ...rest]);
  });
  // past the native pool's threshold (65536 elements) and the kernels' block sizes
  const big = fc.tuple(fc.integer({ min: 2, max: 8 }), fc.integer({ min: 1, max: 24 }), fc.integer({ min: 300, max: 3000 }), fc.integer({ min: 1, max: 3 }))
    .map(([n, c, h, w]) => [n, c, Math.ceil(h / c), w * 3]);
  return fc.oneof({ weight: 9, arbitrary: small }, { weight: 1, arbitrary: big });
}

export const layoutArb = fc.constantFrom<Layout>('channels-first', 'channels-last');
export const dtypeArb = fc.constantFrom<DType>('float32', 'float64');
export const opArb = fc.constantFrom<Op>('train', 'infer', 'backward', 'moments');
export const momentumArb = fc.constantFrom<number | null>(0, 0.1, 0.5, 0.9, 1, null);
export const epsArb = fc.constantFrom(1e-5, 1e-3, 0.1, 1, 1e-9);

/**
 * Magnitudes (scale, offset) per dtype; float32 1e4 + N(0,1) is README "Numerics"' far-from-zero case,
 * and float64 goes as far as 1e6 + N(0,1).
 */
export function ordinaryMagnitude(dtype: DType): fc.Arbitrary<[number, number]> {
  const common: [number, number][] = [[1, 0], [3, 0], [2, 1e3], [1e-3, 0], [1e3, 0], [1e-15, 0], [1e15, 0], [1e12, -3e12], [1e-3, -0.5]];
  const f32: [number, number][] = [[1, 1e4], [1, 1e5], [1e-3, 1e2], [1e-10, 1e-7]];
  const f64: [number, number][] = [[1, 1e5], [1, -1e6], [1e-3, 1e3]];
  return fc.constantFrom(...(dtype === 'float32' ? [...common, ...f32] : [...common, ...f64]));
}

/** float32 1e30 squares overflow float32 (not the double accumulators); float64 stays below 1e154. */
export function hugeMagnitude(dtype: DType): fc.Arbitrary<[number, number]> {
  return fc.constantFrom<[number, number]>(
    ...(dtype === 'float32'
      ? ([[1e30, 0], [1e-30, 0], [1e20, 1e21], [3e37, 0], [1e-38, 0]] as [number, number][])
      : ([[1e150, 0], [1e-200, 0], [1e100, -1e102], [1e-300, 0]] as [number, number][])),
  );
}

export function specArb(op: fc.Arbitrary<Op>, magnitude: (d: DType) => fc.Arbitrary<[number, number]>): fc.Arbitrary<CaseSpec> {
  return dtypeArb.chain((dtype) =>
    fc.record({
      op,
      dtype: fc.constant(dtype),
      layout: layoutArb,
      dims: dimsArb(),
      affine: fc.boolean(),
      activation: fc.constantFrom<'none' | 'relu'>('none', 'relu'),
      magnitude: magnitude(dtype),
      eps: epsArb,
      momentum: momentumArb,
      unbiasedRunningVar: fc.boolean(),
      training: fc.boolean(),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    }).map(({ magnitude: [scale, offset], ...rest }) => ({ ...rest, scale, offset })),
  );
}


/** An op on data with special values injected (test/reliability/special.ts runs it). */
export function specialCaseArb(): fc.Arbitrary<SpecialCase> {
  return dtypeArb.chain((dtype) =>
    fc.record({
      op: fc.constantFrom<SpecialCase['op']>('train', 'infer', 'backward', 'moments', 'update'),
      dtype: fc.constant(dtype),
      layout: layoutArb,
      dims: dimsArb(),
      affine: fc.boolean(),
      relu: fc.boolean(),
      eps: epsArb,
      momentum: momentumArb,
      unbiasedRunningVar: fc.boolean(),
      skipNonFiniteUpdate: fc.boolean(),
      training: fc.boolean(),
      magnitude: ordinaryMagnitude(dtype),
      injections: fc.array(
        fc.record({
          target: fc.constantFrom<SpecialCase['injections'][number]['target']>('x', 'x', 'x', 'dy', 'gamma', 'beta', 'runningMean', 'runningVar'),
          position: fc.nat(),
          kind: fc.constantFrom(...SPECIAL_KINDS, ...NON_FINITE_KINDS),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    }).map(({ magnitude: [scale, offset], ...rest }) => ({ ...rest, scale, offset })),
  );
}
