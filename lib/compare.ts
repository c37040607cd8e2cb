/**
 * How results are judged against the float64 reference (SPEC "Numerics"): an element passes
 * when |got − expected| ≤ tolerance · max(|expected|, scale), where scale is the RMS of the
 * finite expected values — "a few ulps of scale" (or a larger scale the caller names). Non-finite values must match exactly
 * (NaN where NaN, the same infinity).
 */
import type { FloatArray } from './backend.js';

/** Relative tolerances per element type: a few float32 ulps; float64 leaves room for summation order. */
export const TOLERANCE = { float32: 1e-5, float64: 1e-11 } as const;

export function toleranceFor(a: FloatArray): number {
  return a instanceof Float32Array ? TOLERANCE.float32 : TOLERANCE.float64;
}

export interface Mismatch {
  index: number;
  got: number;
  expected: number;
  /** |got − expected| / max(|expected|, scale) */
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
 * (training dx): the error is then judged against the terms' magnitude.
 */
export function worstMismatch(
  got: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: number,
  minScale = 0,
): Mismatch | null {
  if (got.length !== expected.length) {
    return { index: -1, got: got.length, expected: expected.length, error: Infinity, tolerance };
  }
  const scale = Math.max(rms(expected), minScale);
  let worst: Mismatch | null = null;
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const e = expected[i];
    let error: number;
    if (!Number.isFinite(e) || !Number.isFinite(g)) {
      error = Object.is(g, e) || (Number.isNaN(g) && Number.isNaN(e)) ? 0 : Infinity;
    } else {
      const diff = Math.abs(g - e);
      error = diff === 0 ? 0 : diff / Math.max(Math.abs(e), scale);
    }
    if (error > tolerance && (!worst || error > worst.error)) worst = { index: i, got: g, expected: e, error, tolerance };
  }
  return worst;
}

export function formatMismatch(name: string, m: Mismatch): string {
  if (m.index < 0) return `${name}: length ${m.got}, expected ${m.expected}`;
  return `${name}[${m.index}] = ${m.got}, expected ${m.expected} (error ${m.error.toExponential(2)} > ${m.tolerance})`;
}
