/**
 * Shared by the reliability suites: which backends to run on (a backend that cannot load is a
 * loud skip on a developer's machine and a failure in CI), data with special values, and the
 * comparison of a backend's outputs with the float64 reference (lib/compare.ts's tolerances; the
 * same NaN/Inf pattern where a value is not finite).
 */
import { describe, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { formatMismatch, rms, toleranceFor, worstMismatch } from '../../lib/compare.js';
import { Random } from '../../lib/random.js';

export type FloatArray = Float32Array | Float64Array;
export type DType = 'float32' | 'float64';
export type Layout = 'channels-first' | 'channels-last';

export const BACKENDS: readonly BackendName[] = ['native', 'wasm', 'js'];

await api.ready();
const status = api.backends();

/** describe(), run with `name` forced, or a loud skip (a failure in CI) when it cannot load. */
export function describeBackend(name: BackendName, title: string, body: () => void): void {
  const s = status.find((b) => b.name === name);
  const reason = !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`${title}: ${name}`, () => {
    if (reason === undefined) {
      body();
      return;
    }
    if (process.env.CI) {
      it(`${name} backend is available (CI never skips)`, () => {
        throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
      });
    } else {
      console.warn(`\n*** SKIPPING ${title} on ${name}: ${reason} ***\n`);
      it.skip(`${name} unavailable: ${reason}`, () => {});
    }
  });
}

/** A fixed seed for fast-check in CI (reproducible), or SIMDNORM_FC_SEED to explore others. */
export function fcSeed(fallback: number): number {
  const env = process.env.SIMDNORM_FC_SEED;
  return env !== undefined && env !== '' ? Number(env) : fallback;
}

/** Property runs per backend: SIMDNORM_FC_RUNS overrides (heavier local runs). */
export function fcRuns(fallback: number): number {
  const env = process.env.SIMDNORM_FC_RUNS;
  return env !== undefined && env !== '' ? Number(env) : fallback;
}

export function ctor(dtype: DType): Float32ArrayConstructor | Float64ArrayConstructor {
  return dtype === 'float32' ? Float32Array : Float64Array;
}

export function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function channelsOf(dims: readonly number[], layout: Layout): number {
  return dims[layout === 'channels-first' ? 1 : dims.length - 1]!;
}

/** The channel of flat index i. */
export function channelOf(dims: readonly number[], layout: Layout, i: number): number {
  if (layout === 'channels-last') return i % dims[dims.length - 1]!;
  return Math.floor(i / product(dims.slice(2))) % dims[1]!;
}

// ---------------------------------------------------------------------------------------------
// Special values

/** What a special value is, per element type: each is exactly representable in that type. */
export function specialValue(kind: SpecialKind, dtype: DType): number {
  const f32 = dtype === 'float32';
  const value = valueOf(kind, f32);
  return f32 ? Math.fround(value) : value; // what a Float32Array holds (1e-40 is not a float)
}

function valueOf(kind: SpecialKind, f32: boolean): number {
  switch (kind) {
    case 'nan': return NaN;
    case '+inf': return Infinity;
    case '-inf': return -Infinity;
    case 'denormal': return f32 ? 1e-40 : 5e-310;
    case '-denormal': return f32 ? -3e-42 : -1e-320;
    case 'huge': return f32 ? 1e30 : 1e150;
    case '-huge': return f32 ? -3e37 : -1e153;
    case 'max': return f32 ? 3.4028234663852886e38 : 1.7976931348623157e308;
    case 'tiny': return f32 ? 1e-30 : 1e-200;
    case '-0': return -0;
  }
}

export const SPECIAL_KINDS = ['nan', '+inf', '-inf', 'denormal', '-denormal', 'huge', '-huge', 'max', 'tiny', '-0'] as const;
export type SpecialKind = (typeof SPECIAL_KINDS)[number];
export const NON_FINITE_KINDS: readonly SpecialKind[] = ['nan', '+inf', '-inf'];

/** offset + scale·N(0, 1) from a seed, rounded to dtype, as float64 values. */
export function normalData(n: number, seed: number, dtype: DType, scale = 1, offset = 0): Float64Array {
  const a = new Random(seed).fill(new Float64Array(n), scale, offset);
  return dtype === 'float32' ? new Float64Array(new Float32Array(a)) : a;
}

// ---------------------------------------------------------------------------------------------
// Comparison with the reference

/**
 * The worst element of `got` outside lib/compare.ts's tolerance of `expected` (the float64
 * reference), or null. Expected values are first rounded to got's element type: a float32
 * output cannot hold 1e40 (it is Infinity there) or keep a float64 denormal, and README "Numerics" asks
 * for the same NaN/Inf pattern, not for values float32 cannot represent.
 */
export function compareOutput(name: string, got: FloatArray, expected: ArrayLike<number>, minScale = 0): string | null {
  const rounded = got instanceof Float32Array ? new Float64Array(new Float32Array(Array.from(expected))) : Float64Array.from(expected);
  const m = worstMismatch(got, rounded, toleranceFor(got), minScale);
  return m ? formatMismatch(name, m) : null;
}

export { rms };

export { sameBits } from './bits.js';
