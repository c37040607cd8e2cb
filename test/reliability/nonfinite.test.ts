/**
 * skipNonFiniteUpdate (README "Options"): a batch whose statistics are not finite leaves the
 * running statistics untouched, bit for bit, and the result says so (updated: false,
 * numBatchesTracked unchanged). Property-based on every backend: NaN/±Inf at random positions
 * of a random batch, through batchNormTrain (sync and async), updateRunningStats and the
 * BatchNorm layer; and a finite batch is updated exactly as without the option.
 */
import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import {
  BACKENDS,
  channelOf,
  channelsOf,
  compareOutput,
  ctor,
  describeBackend,
  fcRuns,
  fcSeed,
  normalData,
  product,
  sameBits,
  type DType,
  type FloatArray,
  type Layout,
} from './support.js';

const SEED = fcSeed(6);
const RUNS = fcRuns(200);
const counts: Record<string, number> = {};
afterAll(() => {
  console.log(`skipNonFiniteUpdate property cases (seed ${SEED}): ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
});

interface Batch {
  dtype: DType;
  layout: Layout;
  dims: number[];
  momentum: number | null;
  unbiasedRunningVar: boolean;
  numBatchesTracked: number;
  /** positions (mod n) and values put into x */
  bad: { position: number; value: number }[];
  seed: number;
}

const badValue = fc.constantFrom(NaN, Infinity, -Infinity);

function batchArb(minBad: number): fc.Arbitrary<Batch> {
  return fc.record({
    dtype: fc.constantFrom<DType>('float32', 'float64'),
    layout: fc.constantFrom<Layout>('channels-first', 'channels-last'),
    dims: fc.integer({ min: 2, max: 4 }).chain((rank) =>
      fc.tuple(fc.integer({ min: 2, max: 12 }), fc.array(fc.integer({ min: 1, max: rank === 2 ? 64 : 9 }), { minLength: rank - 1, maxLength: rank - 1 }))
        .map(([n, rest]) => [n, ...rest]),
    ),
    momentum: fc.constantFrom<number | null>(0, 0.1, 0.9, 1, null),
    unbiasedRunningVar: fc.boolean(),
    numBatchesTracked: fc.integer({ min: 0, max: 1000 }),
    bad: fc.array(fc.record({ position: fc.nat(), value: badValue }), { minLength: minBad, maxLength: minBad === 0 ? 0 : 5 }),
    seed: fc.nat(),
  });
}

function makeBatch(b: Batch) {
  const T = ctor(b.dtype);
  const n = product(b.dims);
  const C = channelsOf(b.dims, b.layout);
  const x = new T(normalData(n, b.seed, b.dtype, 2, 1));
  for (const { position, value } of b.bad) x[position % n] = value;
  const runningMean = new T(normalData(C, b.seed + 1, b.dtype));
  const runningVar = new T(normalData(C, b.seed + 2, b.dtype).map((v) => 0.5 + Math.abs(v)));
  return { x, runningMean, runningVar, C, n };
}

const options = (b: Batch, skip: boolean) => ({
  layout: b.layout, momentum: b.momentum, unbiasedRunningVar: b.unbiasedRunningVar, skipNonFiniteUpdate: skip,
});

function property(key: string, arb: fc.Arbitrary<Batch>, check: (b: Batch) => void | Promise<void>, runs = RUNS) {
  return fc.assert(
    fc.asyncProperty(arb, async (b) => {
      counts[key] = (counts[key] ?? 0) + 1;
      await check(b);
    }),
    { numRuns: runs, seed: SEED },
  );
}

/** The bad batch's outputs against the reference: strict in channels with finite data. */
function expectOutputsLikeReference(b: Batch, x: Float32Array | Float64Array, r: { y: Float32Array | Float64Array; mean: Float32Array | Float64Array; invStd: Float32Array | Float64Array }) {
  const e = api.withBackend('js', () => api.batchNormTrain({ x: new Float64Array(x), shape: b.dims }, { layout: b.layout }));
  const finite = new Set<number>(Array.from({ length: r.mean.length }, (_, c) => c));
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) finite.delete(channelOf(b.dims, b.layout, i));
  for (let c = 0; c < r.mean.length; c++) {
    if (finite.has(c)) continue;
    // a channel with NaN/Inf: its statistics are not finite, on every backend
    expect(Number.isFinite(r.invStd[c]!), `invStd[${c}] of a channel with non-finite data`).toBe(false);
    expect(Number.isFinite(e.invStd[c]!)).toBe(false);
  }
  const pick = (a: ArrayLike<number>, perChannel: boolean) =>
    Array.from(a).filter((_, i) => finite.has(perChannel ? i : channelOf(b.dims, b.layout, i)));
  const T = ctor(b.dtype);
  expect(compareOutput('mean (finite channels)', T.from(pick(r.mean, true)), pick(e.mean, true))).toBeNull();
  expect(compareOutput('invStd (finite channels)', T.from(pick(r.invStd, true)), pick(e.invStd, true))).toBeNull();
  expect(compareOutput('y (finite channels)', T.from(pick(r.y, false)), pick(e.y, false))).toBeNull();
}

for (const backend of BACKENDS) {
  describeBackend(backend, 'skipNonFiniteUpdate', () => {
    const on = <R,>(fn: () => R): R => api.withBackend(backend as BackendName, fn);

    it(`batchNormTrain: a batch with NaN/±Inf at random positions leaves the running stats bit for bit untouched and says so (${RUNS} cases)`, async () => {
      await property(`${backend} train`, batchArb(1), (b) => {
        const { x, runningMean, runningVar } = makeBatch(b);
        const before = [runningMean.slice(), runningVar.slice()];
        const r = on(() => api.batchNormTrain({ x, shape: b.dims, runningMean, runningVar, numBatchesTracked: b.numBatchesTracked }, options(b, true)));
        expect(r.updated).toBe(false);
        expect(r.numBatchesTracked).toBe(b.numBatchesTracked);
        expect(sameBits(runningMean, before[0]!), 'runningMean changed').toBe(true);
        expect(sameBits(runningVar, before[1]!), 'runningVar changed').toBe(true);
        expectOutputsLikeReference(b, x, r);
      });
    }, 120_000);

    it(`batchNormTrainAsync: the same (${Math.round(RUNS / 4)} cases)`, async () => {
      await property(`${backend} trainAsync`, batchArb(1), async (b) => {
        const { x, runningMean, runningVar } = makeBatch(b);
        const before = [runningMean.slice(), runningVar.slice()];
        api.useBackend(backend);
        try {
          const r = await api.batchNormTrainAsync({ x, shape: b.dims, runningMean, runningVar, numBatchesTracked: b.numBatchesTracked }, options(b, true));
          expect(r.updated).toBe(false);
          expect(r.numBatchesTracked).toBe(b.numBatchesTracked);
        } finally {
          api.useBackend('auto');
        }
        expect(sameBits(runningMean, before[0]!) && sameBits(runningVar, before[1]!)).toBe(true);
      }, Math.round(RUNS / 4));
    }, 120_000);

    it(`a finite batch: skipNonFiniteUpdate changes nothing (the update happens, bit for bit as without it) (${Math.round(RUNS / 2)} cases)`, async () => {
      await property(`${backend} finite`, batchArb(0), (b) => {
        const one = makeBatch(b);
        const two = makeBatch(b);
        const r1 = on(() => api.batchNormTrain({ x: one.x, shape: b.dims, runningMean: one.runningMean, runningVar: one.runningVar, numBatchesTracked: b.numBatchesTracked }, options(b, true)));
        const r2 = on(() => api.batchNormTrain({ x: two.x, shape: b.dims, runningMean: two.runningMean, runningVar: two.runningVar, numBatchesTracked: b.numBatchesTracked }, options(b, false)));
        expect(r1.updated && r2.updated).toBe(true);
        expect(r1.numBatchesTracked).toBe(b.numBatchesTracked + 1);
        expect(sameBits(one.runningMean, two.runningMean) && sameBits(one.runningVar, two.runningVar)).toBe(true);
        expect(sameBits(r1.y, r2.y)).toBe(true);
      }, Math.round(RUNS / 2));
    }, 120_000);

    it(`updateRunningStats: non-finite batch statistics at random channels leave the running stats untouched (${RUNS} cases)`, async () => {
      await property(`${backend} updateRunningStats`, batchArb(1), (b) => {
        const { runningMean, runningVar, C } = makeBatch(b);
        const T = ctor(b.dtype);
        const mean = new T(normalData(C, b.seed + 3, b.dtype));
        const variance = new T(normalData(C, b.seed + 4, b.dtype).map(Math.abs));
        for (const [k, { position, value }] of b.bad.entries()) (k % 2 ? variance : mean)[position % C] = k % 2 ? Math.abs(value) : value;
        const before = [runningMean.slice(), runningVar.slice()];
        const { layout: _layout, ...updateOptions } = options(b, true);
        const r = on(() => api.updateRunningStats({ runningMean, runningVar, mean, variance, count: 7, numBatchesTracked: b.numBatchesTracked }, updateOptions));
        expect(r).toEqual({ updated: false, numBatchesTracked: b.numBatchesTracked });
        expect(sameBits(runningMean, before[0]!) && sameBits(runningVar, before[1]!)).toBe(true);
      });
    }, 120_000);

    it(`BatchNorm layer: a bad batch between good ones is skipped; the good ones update as the reference (${Math.round(RUNS / 4)} cases)`, async () => {
      await property(`${backend} layer`, batchArb(1), (b) => {
        const C = channelsOf(b.dims, b.layout);
        const make = () => new api.BatchNorm<FloatArray>(C, { dtype: b.dtype, layout: b.layout, momentum: b.momentum, unbiasedRunningVar: b.unbiasedRunningVar, skipNonFiniteUpdate: true });
        const layer = make();
        const reference = make();
        const good = (seed: number) => new (ctor(b.dtype))(normalData(product(b.dims), seed, b.dtype, 2, 1));
        const g1 = good(b.seed + 10);
        const g2 = good(b.seed + 11);
        on(() => layer.forward(g1, b.dims));
        api.withBackend('js', () => reference.forward(g1.slice(), b.dims));
        const before = [layer.runningMean!.slice(), layer.runningVar!.slice()];
        on(() => layer.forward(makeBatch(b).x, b.dims));
        expect(layer.numBatchesTracked).toBe(1);
        expect(sameBits(layer.runningMean!, before[0]!) && sameBits(layer.runningVar!, before[1]!)).toBe(true);
        on(() => layer.forward(g2, b.dims));
        api.withBackend('js', () => reference.forward(g2.slice(), b.dims));
        expect(layer.numBatchesTracked).toBe(2);
        expect(compareOutput('layer runningMean', layer.runningMean!, reference.runningMean!)).toBeNull();
        expect(compareOutput('layer runningVar', layer.runningVar!, reference.runningVar!)).toBeNull();
      }, Math.round(RUNS / 4));
    }, 120_000);
  });
}

it('a finite float32 batch whose variance overflows float32 is judged alike on every backend (observation: its statistics are finite in double, so it is not skipped)', () => {
  const x = new Float32Array(64).map((_, i) => (i % 2 ? 1 : -1) * 1e20 * (1 + i / 64));
  const results = BACKENDS.map((name) => {
    const runningMean = new Float32Array(1);
    const runningVar = new Float32Array(1).fill(1);
    const r = api.withBackend(name, () => api.batchNormTrain({ x, shape: [64, 1], runningMean, runningVar }, { skipNonFiniteUpdate: true }));
    return { updated: r.updated, runningMean: runningMean[0], runningVar: runningVar[0], invStd: r.invStd[0] };
  });
  console.log(`float32 batch of ±1e20: ${JSON.stringify(results[0])}`);
  for (const r of results) expect(r).toEqual(results[0]);
});
