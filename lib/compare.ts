/**
 * How results are judged against the float64 reference (README "Numerics"): an element passes
 * when |got − expected| ≤ tolerance · max(|expected|, scale) + spacing, where scale is the RMS of
 * the finite expected values — "a few ulps of scale" (or a larger scale the caller names) — and
 * spacing is the absolute spacing of the result type's subnormals (its smallest positive value).
 * Non-finite values must match exactly (NaN where NaN, the same infinity).
 */
import type { FloatArray } from './backend.js';

/** Relative tolerances per element type: a few float32 ulps; float64 leaves room for summation order. */
export const TOLERANCE = { float32: 1e-5, float64: 1e-11 } as const;

export function toleranceFor(a: FloatArray): number {
  return a instanceof Float32Array ? TOLERANCE.float32 : TOLERANCE.float64;
}

/**
 * The spacing of each element type's subnormals, 2^-149 for float32 and 2^-1074 for float64: the
 * finest absolute precision any result of that type has. Below the smallest normal number
 * (2^-126, 2^-1022) a relative bar cannot be met: the correctly rounded float32 of 1e-41 is off
 * by up to 2^-150 = 7e-46, 7e-5 of itself, and a float32 variance of 1e-77 can only be 0. So an
 * error of one spacing (a correctly rounded result that went through two roundings in that
 * range, a product and a sum) always passes. Above the subnormal range it hardly moves the bar:
 * one spacing is 2^-23 of the smallest normal float32 (1.2% of tolerance · |expected| there) and
 * 2^-52 of the smallest normal float64.
 */
export const SUBNORMAL_SPACING = { float32: 2 ** -149, float64: 2 ** -1074 } as const;

/** The spacing of the results in `a`: float32's for a Float32Array, else float64's. */
export function spacingFor(a: ArrayLike<number>): number {
  return a instanceof Float32Array ? SUBNORMAL_SPACING.float32 : SUBNORMAL_SPACING.float64;
}

export interface Mismatch {
  index: number;
  got: number;
  expected: number;
  /** |got − expected| / (max(|expected|, scale) + spacing / tolerance): ≤ tolerance passes */
  error: number;
  tolerance: number;
}

export function rms(values: ArrayLike<number>): number {
  // Squares of the values divided by the largest: v·v itself underflows to 0 below ~1e-154
  // and overflows to Infinity above ~1e154 (a scale of Infinity would pass everything).
  let largest = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      largest = Math.max(largest, Math.abs(v));
      n++;
    }
  }
  if (largest === 0) return 0;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) sum += (v / largest) * (v / largest);
  }
  return largest * Math.sqrt(sum / n);
}

/**
 * The worst element outside the tolerance, or null when all pass (lengths must match).
 * `minScale` raises the scale where the expected values are a cancellation of larger terms
 * (training dx): the error is then judged against the terms' magnitude. `spacing` is the absolute
 * error always allowed (default: the subnormal spacing of got's type, see SUBNORMAL_SPACING).
 */
export function worstMismatch(
  got: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: number,
  minScale = 0,
  spacing = spacingFor(got),
): Mismatch | null {
  if (got.length !== expected.length) {
    return { index: -1, got: got.length, expected: expected.length, error: Infinity, tolerance };
  }
  const scale = Math.max(rms(expected), minScale);
  // |got − expected| ≤ tolerance·max(|expected|, scale) + spacing, as one ratio.
  const floor = tolerance > 0 ? spacing / tolerance : 0;
  let worst: Mismatch | null = null;
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const e = expected[i];
    let error: number;
    if (!Number.isFinite(e) || !Number.isFinite(g)) {
      error = Object.is(g, e) || (Number.isNaN(g) && Number.isNaN(e)) ? 0 : Infinity;
    } else {
      const diff = Math.abs(g - e);
      error = diff === 0 ? 0 : diff / (Math.max(Math.abs(e), scale) + floor);
    }
    if (error > tolerance && (!worst || error > worst.error)) worst = { index: i, got: g, expected: e, error, tolerance };
  }
  return worst;
}

export function formatMismatch(name: string, m: Mismatch): string {
  if (m.index < 0) return `${name}: length ${m.got}, expected ${m.expected}`;
  return `${name}[${m.index}] = ${m.got}, expected ${m.expected} (error ${m.error.toExponential(2)} > ${m.tolerance})`;
}
