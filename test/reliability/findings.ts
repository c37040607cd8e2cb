/**
 * The kernel findings of the reliability suites, and the domain of inputs each one covers (see
 * test/reliability/properties.test.ts: outside these domains every case is compared with the
 * full tolerance; inside, `it.fails` tests keep each finding visible until it is fixed).
 */
import * as api from '../../lib/index.js';
import { runSpec, type CaseSpec } from '../../lib/verify.js';
import type { SpecialCase, SpecialRun } from './special.js';
import { channelOf, type DType } from './support.js';

// 1. float32 per-channel coefficients: the kernels keep gamma·invStd (forward, inference) and
//    gamma·invStd²·dgamma/M (backward) as float32 numbers. Where one is not a normal float32
//    but the result is representable, outputs are wrong: backward's dx loses its x̂·dgamma term
//    when invStd² underflows (data whose std is above ~1e19), and y is ±Inf when gamma·invStd
//    overflows (|gamma| ~ 1e37). The reference scales (x − mean) by invStd first. Domain: the
//    float32 cases with such a coefficient (gamma·invStd, and gamma·invStd² for backward,
//    outside [2^-120, 2^122]: the normal range with room for the O(1) factors).
export function outOfFloat32(v: number): boolean {
  const a = Math.abs(v);
  return Number.isFinite(v) && a !== 0 && (a < 2 ** -120 || a > 2 ** 122);
}

export function inFinding1(dtype: DType, op: string, gamma: ArrayLike<number> | null, invStd: ArrayLike<number>): boolean {
  if (dtype !== 'float32' || (op !== 'train' && op !== 'infer' && op !== 'backward')) return false;
  for (let c = 0; c < invStd.length; c++) {
    const k = (gamma ? gamma[c]! : 1) * invStd[c]!;
    if (outOfFloat32(k) || (op === 'backward' && outOfFloat32(k * invStd[c]!))) return true;
  }
  return false;
}

/**
 * Finding 1's domain for a CaseSpec: its gamma is 1 ± 0.5·N(0,1) (taken as 1) and inference
 * uses runningVar >= 0.5, so only train and backward can reach it (through invStd).
 */
export function specInFinding1(s: CaseSpec): boolean {
  if (s.dtype !== 'float32' || (s.op !== 'train' && s.op !== 'backward')) return false;
  const r = api.withBackend('js', () => runSpec(api, { ...s, op: 'train' }, true));
  return inFinding1(s.dtype, s.op, null, r.outputs.invStd as Float64Array);
}

/** Finding 1's domain for a special-values case, from the reference's per-channel numbers. */
export function specialInFinding1(c: SpecialCase, run: SpecialRun): boolean {
  const gamma = c.affine ? run.data.gamma : null;
  if (c.op === 'train') return inFinding1(c.dtype, c.op, gamma, run.expected.invStd!);
  if (c.op === 'backward') return inFinding1(c.dtype, c.op, gamma, run.savedInvStd!);
  if (c.op === 'infer') return inFinding1(c.dtype, c.op, gamma, run.data.runningVar.map((v) => 1 / Math.sqrt(v + c.eps)));
  return false;
}

// 2. Infinities inside the kernels' arithmetic. The kernels evaluate forms that are equal to
//    the SPEC's formulas in real arithmetic but meet Inf − Inf where an input is infinite:
//    per-block shifted sums (x − s, s a value of the block; they also overflow for float64
//    values beyond ~1.3e154, whose squares overflow), the float hi/lo split of the mean, and
//    backward's expanded dx = g·k − (x − mean)·p − q. So a channel with ±Inf among its inputs
//    (x, dy, gamma, beta, the running or saved statistics) or a float64 x beyond 1.3e154 gets
//    NaN (or −Inf) where the reference has ±Inf or a finite value (Σx/M = ±Inf; Σ(x−μ)²/M =
//    +Inf so invStd = 0 and y = beta; (x − Inf)·a = −Inf; Inf·(…) = ±Inf). Domain: those
//    channels; there a non-finite kernel value is taken for the reference's and counted (a
//    finite wrong value still fails, and channels without an infinity are compared strictly).
export function finding2Channels(c: SpecialCase, run: SpecialRun): Set<number> {
  const channels = new Set<number>();
  const infinite = (v: number) => v === Infinity || v === -Infinity;
  const { data } = run;
  for (const values of [data.x, data.dy]) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (infinite(v) || (c.dtype === 'float64' && values === data.x && Math.abs(v) > 1.3e154)) {
        channels.add(channelOf(c.dims, c.layout, i));
      }
    }
  }
  const perChannel = [data.gamma, data.beta, data.runningMean, data.runningVar, run.savedInvStd ?? []];
  for (const values of perChannel) {
    for (let ch = 0; ch < values.length; ch++) if (infinite(values[ch]!)) channels.add(ch);
  }
  return channels;
}

export function tolerateFinding2(run: SpecialRun, c: SpecialCase): number {
  if (c.op === 'update') return 0;
  const channels = finding2Channels(c, run);
  if (channels.size === 0) return 0;
  let n = 0;
  for (const [name, got] of Object.entries(run.got)) {
    const expected = run.expected[name]!;
    const perChannel = got.length !== run.data.x.length;
    for (let i = 0; i < got.length; i++) {
      const channel = perChannel ? i : channelOf(c.dims, c.layout, i);
      const want = got instanceof Float32Array ? Math.fround(expected[i]!) : expected[i]!;
      if (channels.has(channel) && !Number.isFinite(got[i]!) && !Object.is(got[i], want)) {
        got[i] = expected[i]!;
        n++;
      }
    }
  }
  return n;
}

// 3. float64 data far from zero: the Chan merges of block means round the mean at |mean|'s
//    ulp on every merge, so where |mean|/std >= ~1e4 y, invStd and the variance move by more
//    than float64's 1e-11 (the reference's two passes stay within an ulp or two). Domain:
//    float64 |offset|/scale above 1e3 (the ordinary magnitudes stay below).
