/**
 * SyncBatchNorm with ranks inside one thread (createLocalCollectives) on every backend (native,
 * wasm, js; a backend that cannot load is a loud skip here and a failure in CI): shards of one
 * batch, uneven and with a rank of no samples, against one batchNormTrain/batchNormBackward over
 * the concatenated batch (float32 ≤ 1e-5, float64 ≤ 1e-11 max-norm relative), per-channel results
 * bitwise the same on every rank and across runs with shuffled arrival; mismatched calls, a rank
 * that fails before the exchange and a rank that never arrives make every rank reject, with the
 * running statistics untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { checkRanks, makeBatch, optionsOf, reference, sameBits, shardDims, shardOf, syncCases, type RankResult, type SyncCase } from './support.js';

await api.ready();
const status = api.backends();
const only = process.env.SIMDNORM_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every rank's train + backward over local collectives; `delay(r)` ms before each of rank r's calls. */
async function runLocal(c: SyncCase, delay: (rank: number) => number = () => 0): Promise<RankResult[]> {
  const b = makeBatch(c);
  const group = api.createLocalCollectives(c.shards.length);
  const options = optionsOf(c);
  return Promise.all(
    group.map(async (collective, r) => {
      const x = shardOf(b.x, c, r);
      const shape = shardDims(c, r);
      const runningMean = b.runningMean.slice();
      const runningVar = b.runningVar.slice();
      await sleep(delay(r));
      const t = await api.syncBatchNormTrain({ x, shape, gamma: b.gamma, beta: b.beta, runningMean, runningVar }, options, collective);
      await sleep(delay(r));
      const g = await api.syncBatchNormBackward(
        { dy: shardOf(b.dy, c, r), x, shape, mean: t.mean, invStd: t.invStd, gamma: b.gamma, y: c.relu ? t.y : undefined },
        options,
        collective,
      );
      return { ...t, runningMean, runningVar, dx: g.dx, dgamma: g.dgamma, dbeta: g.dbeta };
    }),
  );
}

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = only && !only.includes(name) ? `not in SIMDNORM_TEST_BACKENDS=${only.join(',')}` : !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`SyncBatchNorm, local collectives: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} SyncBatchNorm suite: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const size of [1, 2, 3, 4, 8]) {
      for (const c of syncCases(size)) {
        it(`${size} ranks, ${c.name}: equals one BatchNorm over the whole batch`, async () => {
          const results = await runLocal(c);
          checkRanks(c, results, reference(api, c, makeBatch(c), optionsOf(c)));
        });
      }
    }
    it('shuffled arrival (random delays): bitwise the same results as in order', async () => {
      const c = syncCases(4)[1];
      const first = await runLocal(c);
      for (let run = 0; run < 3; run++) {
        const delays = [0, 1, 2, 3].map(() => Math.floor(Math.random() * 15));
        const again = await runLocal(c, (r) => delays[r]);
        again.forEach((r, k) => {
          for (const key of ['y', 'mean', 'invStd', 'runningMean', 'runningVar', 'dx', 'dgamma', 'dbeta'] as const) {
            expect(sameBits(r[key], first[k][key]), `rank ${k} ${key}`).toBe(true);
          }
        });
      }
    });
  });
}

describe.runIf(status.find((b) => b.name === 'native')?.available)('SyncBatchNorm on native: bitwise the same for any thread count', () => {
  afterAll(() => {
    api.setThreads(0);
    api.useBackend('auto');
  });
  it('1, 2 and 3 kernel threads', async () => {
    api.useBackend('native');
    for (const c of syncCases(2)) {
      const big = { ...c, dims: [c.dims[0], ...c.dims.slice(1).map((d) => d * 4)] }; // big enough for several tasks
      api.setThreads(1);
      const one = await runLocal(big);
      for (const threads of [2, 3]) {
        api.setThreads(threads);
        const again = await runLocal(big);
        again.forEach((r, k) => {
          for (const key of ['y', 'mean', 'invStd', 'runningMean', 'runningVar', 'dx', 'dgamma', 'dbeta'] as const) {
            expect(sameBits(r[key], one[k][key]), `${c.name}, ${threads} threads: rank ${k} ${key}`).toBe(true);
          }
        });
      }
    }
  }, 60_000);
});

describe('SyncBatchNorm failures (js backend)', () => {
  beforeAll(() => api.useBackend('js'));
  afterAll(() => api.useBackend('auto'));
  const c = syncCases(3)[0];
  const b = makeBatch(c);
  const inputs = (r: number) => ({ x: shardOf(b.x, c, r), shape: shardDims(c, r), gamma: b.gamma, beta: b.beta, runningMean: b.runningMean.slice(), runningVar: b.runningVar.slice() });

  it('mismatched options reject on every rank, running statistics untouched', async () => {
    const group = api.createLocalCollectives(3);
    const all = [0, 1, 2].map((r) => inputs(r));
    const before = all.map((i) => [i.runningMean.slice(), i.runningVar.slice()]);
    const settled = await Promise.allSettled(group.map((g, r) => api.syncBatchNormTrain(all[r], { ...optionsOf(c), eps: r === 2 ? 1e-3 : 1e-5 }, g)));
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect(String((s as PromiseRejectedResult).reason)).toMatch(/RangeError.*rank 2's eps is 0.001, rank 0's is 0.00001|rank 2's eps/);
    }
    all.forEach((i, r) => {
      expect(sameBits(i.runningMean, before[r][0])).toBe(true);
      expect(sameBits(i.runningVar, before[r][1])).toBe(true);
    });
  });

  it('mismatched shapes (but N) reject on every rank', async () => {
    const group = api.createLocalCollectives(2);
    const c2 = { ...c, layout: 'channels-first' as const };
    const settled = await Promise.allSettled([
      api.syncBatchNormTrain({ x: new Float32Array(2 * 5 * 6 * 7), shape: [2, 5, 6, 7] }, {}, group[0]),
      api.syncBatchNormTrain({ x: new Float32Array(2 * 5 * 6 * 8), shape: [2, 5, 6, 8] }, {}, group[1]),
    ]);
    expect(c2.layout).toBe('channels-first');
    for (const s of settled) expect(String((s as PromiseRejectedResult).reason)).toMatch(/rank 1's dim 3 of shape is 8, rank 0's is 7/);
  });

  it('a rank whose call is invalid: it throws its own TypeError, the others a CollectiveError naming it', async () => {
    const group = api.createLocalCollectives(3);
    const all = [0, 1, 2].map((r) => inputs(r));
    const before = all.map((i) => i.runningMean.slice());
    const settled = await Promise.allSettled(group.map((g, r) => api.syncBatchNormTrain(r === 1 ? { ...all[r], gamma: 'nope' as never } : all[r], optionsOf(c), g)));
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/TypeError: gamma must be/);
    for (const r of [0, 2]) {
      const e = (settled[r] as PromiseRejectedResult).reason;
      expect(e).toBeInstanceOf(api.CollectiveError);
      expect(e.message).toMatch(/rank 1 failed before the exchange: TypeError: gamma must be/);
      expect(e.ranks).toEqual([1]);
    }
    all.forEach((i, r) => expect(sameBits(i.runningMean, before[r])).toBe(true));
  });

  it('a rank that never arrives: the others reject within the timeout naming it, running statistics untouched', async () => {
    const group = api.createLocalCollectives(3, { timeout: 300 });
    const all = [0, 1, 2].map((r) => inputs(r));
    const before = all.map((i) => i.runningVar.slice());
    const t0 = performance.now();
    const settled = await Promise.allSettled([0, 2].map((r) => api.syncBatchNormTrain(all[r], optionsOf(c), group[r])));
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeLessThan(300 + 2000);
    for (const s of settled) {
      const e = (s as PromiseRejectedResult).reason;
      expect(e).toBeInstanceOf(api.CollectiveError);
      expect(e.message).toMatch(/rank 1 of 3 did not arrive at exchange 0 within 300 ms/);
    }
    all.forEach((i, r) => expect(sameBits(i.runningVar, before[r])).toBe(true));
    // the group is broken from then on
    await expect(group[0].allGather(new Float64Array(1))).rejects.toThrow(/did not arrive/);
  });

  it('a collective that returns something else is a typed error, nothing written', async () => {
    const i = inputs(0);
    const before = i.runningMean.slice();
    const liar = (answer: (data: Float64Array) => unknown) => ({ rank: 0, size: 2, allGather: async (data: Float64Array) => answer(data) }) as never;
    await expect(api.syncBatchNormTrain(i, optionsOf(c), liar(() => 'nope'))).rejects.toThrow(/allGather must resolve to 2 Float64Arrays in rank order/);
    await expect(api.syncBatchNormTrain(i, optionsOf(c), liar((d) => [d, d.subarray(0, d.length - 1)]))).rejects.toThrow(/rank 1's array with \d+ values after its signature/);
    await expect(api.syncBatchNormTrain(i, optionsOf(c), liar((d) => [Float64Array.of(...d.subarray(0, 3), 99, ...d.subarray(4)), d]))).rejects.toThrow(RangeError);
    await expect(api.syncBatchNormTrain(i, optionsOf(c), { rank: 0, size: 1, allGather: () => { throw new Error('transport down'); } } as never)).rejects.toThrow(/transport down/);
    expect(sameBits(i.runningMean, before)).toBe(true);
  });

  it('bad arguments are typed errors naming the argument', async () => {
    await expect(api.syncBatchNormTrain(inputs(0), {}, {} as never)).rejects.toThrow(/collective.allGather must be a function/);
    await expect(api.syncBatchNormTrain(inputs(0), {}, { rank: 3, size: 2, allGather: async () => [] } as never)).rejects.toThrow(/collective.rank must be an integer in \[0, 1\]/);
    await expect(api.syncBatchNormTrain(inputs(0), { renorm: { rmax: 2, dmax: 1 } }, api.createLocalCollectives(1)[0])).rejects.toThrow(/options.renorm is not supported/);
    expect(() => api.createLocalCollectives(0)).toThrow(/size must be an integer >= 1/);
    expect(() => api.createLocalCollectives(2, { timeout: -1 })).toThrow(/options.timeout must be/);
  });
});
