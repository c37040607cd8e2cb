/**
 * The kernel findings of the reliability suites, and the domain of inputs each one covers (see
 * test/reliability/properties.test.ts: outside these domains every case is compared with the
 * full tolerance; inside, `it.fails` tests keep each finding visible until it is fixed).
 * Finding 1 (float32 per-channel coefficients out of float range: gamma·invStd overflowing,
 * gamma·invStd²·dgamma/M underflowing) is fixed; its tests in properties.test.ts are plain ones.
 */
import type { SpecialCase, SpecialRun } from './special.js';
import { channelOf } from './support.js';

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
