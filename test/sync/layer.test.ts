/**
 * The SyncBatchNorm layer: three ranks (local collectives) against one BatchNorm over the whole
 * batch for two training steps and an eval step (float32 ≤ 1e-5, float64 ≤ 1e-11; in eval the
 * ranks' local dgamma/dbeta add up to the whole batch's), state bitwise the same on every rank; fromBatchNorm/toBatchNorm carry options, state and mode.
 */
import { describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { concat, makeBatch, relativeError, sameBits, shardDims, shardOf, syncCases, tolerance } from './support.js';

await api.ready();

describe('SyncBatchNorm layer', () => {
  for (const c of syncCases(3)) {
    it(`3 ranks, ${c.name}: two training steps and an eval step equal one BatchNorm`, async () => {
      const b = makeBatch(c);
      const C = b.gamma.length;
      const options = { layout: c.layout, activation: c.relu ? ('relu' as const) : ('none' as const), dtype: c.dtype, momentum: 0.8 };
      const whole = new api.BatchNorm<Float32Array | Float64Array>(C, options);
      whole.loadState({ weight: b.gamma, bias: b.beta, running_mean: b.runningMean, running_var: b.runningVar });
      const group = api.createLocalCollectives(3);
      const ranks = group.map((g) => api.SyncBatchNorm.fromBatchNorm(whole, g));
      const tol = tolerance(c.dtype);
      for (let step = 0; step < 3; step++) {
        if (step === 2) {
          whole.eval();
          ranks.forEach((l) => l.eval());
        }
        const y = whole.forward(b.x, c.dims);
        const dx = whole.backward(b.dy);
        const ys = await Promise.all(ranks.map((l, r) => l.forward(shardOf(b.x, c, r), shardDims(c, r))));
        const dxs = await Promise.all(ranks.map((l, r) => l.backward(shardOf(b.dy, c, r))));
        expect(relativeError(concat(c.dtype, ys), y)).toBeLessThanOrEqual(tol);
        expect(relativeError(concat(c.dtype, dxs), dx)).toBeLessThanOrEqual(tol);
        const states = ranks.map((l) => l.state());
        const ref = whole.state();
        for (const key of ['weight', 'bias', 'running_mean', 'running_var'] as const) {
          expect(relativeError(states[0][key]!, ref[key]!), `step ${step} ${key}`).toBeLessThanOrEqual(tol);
          for (const s of states) expect(sameBits(s[key]!, states[0][key]!)).toBe(true);
        }
        for (const s of states) expect(s.num_batches_tracked).toBe(ref.num_batches_tracked);
        if (step < 2) {
          // training: the whole batch's gradients on every rank
          for (const l of ranks) {
            expect(relativeError(l.dgamma!, whole.dgamma!)).toBeLessThanOrEqual(tol);
            expect(relativeError(l.dbeta!, whole.dbeta!)).toBeLessThanOrEqual(tol);
          }
        } else {
          // eval: local, each rank its shard's gradients (they add up to the whole batch's)
          const sum = (k: 'dgamma' | 'dbeta') => Array.from({ length: C }, (_, i) => ranks.reduce((a, l) => a + l[k]![i], 0));
          expect(relativeError(sum('dgamma'), whole.dgamma!)).toBeLessThanOrEqual(tol * 10);
          expect(relativeError(sum('dbeta'), whole.dbeta!)).toBeLessThanOrEqual(tol * 10);
        }
      }
    });
  }

  it('fromBatchNorm / toBatchNorm carry options, state and mode; bad arguments are typed errors', () => {
    const bn = new api.BatchNorm(4, { dtype: 'float64', eps: 1e-3, momentum: null, layout: 'channels-last', activation: 'relu', affine: true });
    bn.loadState({ weight: [1, 2, 3, 4], bias: [0, 1, 0, 1], running_mean: [0.5, 0, 0, 1], running_var: [2, 2, 1, 1], num_batches_tracked: 7 });
    bn.eval();
    const sync = api.SyncBatchNorm.fromBatchNorm(bn, api.createLocalCollectives(1)[0]);
    expect([sync.dtype, sync.eps, sync.momentum, sync.layout, sync.activation, sync.training, sync.numBatchesTracked]).toEqual(['float64', 1e-3, null, 'channels-last', 'relu', false, 7]);
    const back = sync.toBatchNorm();
    expect(back).toBeInstanceOf(api.BatchNorm);
    expect(back.state()).toEqual(bn.state());
    expect(back.training).toBe(false);
    expect(() => api.SyncBatchNorm.fromBatchNorm(new api.BatchNorm(2, { virtualBatchSize: 2 }), api.createLocalCollectives(1)[0])).toThrow(/virtualBatchSize cannot be converted/);
    expect(() => new api.SyncBatchNorm(2, null as never)).toThrow(/collective must be a Collective/);
    expect(() => new api.SyncBatchNorm(2, api.createLocalCollectives(1)[0], { renorm: { rmax: 1, dmax: 0 } } as never)).toThrow(RangeError);
  });
});
