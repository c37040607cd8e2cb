/**
 * The reference (`js` backend) is the oracle for every other backend, so it is checked on
 * its own: values worked by hand, invariants of the output, and backward against central
 * finite differences of the forward pass in float64.
 */
import { describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { Random } from '../../lib/random.js';

api.useBackend('js');
const close = (got: ArrayLike<number>, want: number[], digits = 12) =>
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits));

describe('reference: worked by hand', () => {
  // Channel 0 holds 1, 3 (N = 2, one value each), channel 1 holds 2, 6.
  const x = new Float64Array([1, 2, 3, 6]);
  const shape = [2, 2];

  it('training forward: mean, biased variance, y = gamma·x̂ + beta', () => {
    const r = api.batchNormTrain({ x, shape, gamma: new Float64Array([2, 1]), beta: new Float64Array([0.5, -1]) }, { eps: 1e-5 });
    // channel 0: mean 2, var 1; channel 1: mean 4, var 4
    close(r.mean, [2, 4]);
    close(r.invStd, [1 / Math.sqrt(1 + 1e-5), 1 / Math.sqrt(4 + 1e-5)]);
    const s0 = 1 / Math.sqrt(1 + 1e-5);
    const s1 = 2 / Math.sqrt(4 + 1e-5);
    close(r.y, [0.5 - 2 * s0, -1 - s1, 0.5 + 2 * s0, -1 + s1]);
  });

  it('running stats: momentum 0.9 keeps 90% of the old value; the unbiased variance is σ²·M/(M−1)', () => {
    const runningMean = new Float64Array([10, 10]);
    const runningVar = new Float64Array([1, 1]);
    const r = api.batchNormTrain({ x, shape, runningMean, runningVar, numBatchesTracked: 7 });
    expect(r).toMatchObject({ updated: true, numBatchesTracked: 8 });
    close(runningMean, [0.9 * 10 + 0.1 * 2, 0.9 * 10 + 0.1 * 4]);
    close(runningVar, [0.9 + 0.1 * 2, 0.9 + 0.1 * 8]); // M = 2: var·2/1
    const biased = { runningMean: new Float64Array(2), runningVar: new Float64Array(2) };
    api.batchNormTrain({ x, shape, ...biased }, { unbiasedRunningVar: false, momentum: 0.5 });
    close(biased.runningVar, [0.5, 2]);
  });

  it('momentum null: the first batch replaces, the second averages (PyTorch momentum=None)', () => {
    const runningMean = new Float64Array([99, 99]);
    const runningVar = new Float64Array([99, 99]);
    api.batchNormTrain({ x, shape, runningMean, runningVar, numBatchesTracked: 0 }, { momentum: null, unbiasedRunningVar: false });
    close(runningMean, [2, 4]);
    api.batchNormTrain({ x: new Float64Array([3, 4, 5, 8]), shape, runningMean, runningVar, numBatchesTracked: 1 }, { momentum: null, unbiasedRunningVar: false });
    close(runningMean, [3, 5]);
  });

  it('inference: y = gamma·(x − rm)/sqrt(rv + eps) + beta, ReLU after', () => {
    const r = api.batchNormInfer(
      { x, shape, runningMean: new Float64Array([1, 2]), runningVar: new Float64Array([3, 0]), gamma: new Float64Array([-1, 1]) },
      { eps: 1, activation: 'relu' },
    );
    close(r.y, [0, 0, 0, 4]); // channel 0: −(0, 2)/2 → ReLU 0; channel 1: (0, 4)/1
  });

  it('backward: dbeta = Σdy, dgamma = Σdy·x̂, dx sums to zero per channel in training', () => {
    const f = api.batchNormTrain({ x, shape }, { eps: 1e-5 });
    const dy = new Float64Array([1, 0, 3, 2]);
    const b = api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd });
    close(b.dbeta, [4, 2]);
    const xhat = [(1 - 2) * f.invStd[0], (2 - 4) * f.invStd[1], (3 - 2) * f.invStd[0], (6 - 4) * f.invStd[1]];
    close(b.dgamma, [xhat[0] + 3 * xhat[2], 2 * xhat[3]]);
    close([b.dx[0] + b.dx[2], b.dx[1] + b.dx[3]], [0, 0]);
    const e = api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma: new Float64Array([2, 3]) }, { training: false });
    close(e.dx, [2 * f.invStd[0], 0, 6 * f.invStd[0], 6 * f.invStd[1]]);
  });
});

describe('reference: invariants', () => {
  for (const layout of ['channels-first', 'channels-last'] as const) {
    it(`${layout}: per channel, y has mean beta and variance gamma²·σ²/(σ²+eps)`, () => {
      const shape = layout === 'channels-first' ? [7, 3, 5, 4] : [7, 5, 4, 3];
      const x = new Random(1).fill(new Float64Array(420), 3, 2);
      const gamma = new Float64Array([0.5, 2, -1]);
      const beta = new Float64Array([1, -2, 0.25]);
      const eps = 0.1;
      const r = api.batchNormTrain({ x, shape, gamma, beta }, { layout, eps });
      const m = api.moments({ x, shape }, { layout });
      const my = api.moments({ x: r.y, shape }, { layout });
      for (let c = 0; c < 3; c++) {
        expect(my.mean[c]).toBeCloseTo(beta[c], 12);
        expect(my.variance[c]).toBeCloseTo((gamma[c] ** 2 * m.variance[c]) / (m.variance[c] + eps), 12);
      }
    });
  }
});

describe('reference: backward against central finite differences (float64)', () => {
  // Loss L = Σ w·y with fixed random weights w, so dL/dy = w.
  for (const [layout, activation] of [
    ['channels-first', 'none'],
    ['channels-last', 'none'],
    ['channels-first', 'relu'],
  ] as const) {
    it(`${layout} ${activation}: dx, dgamma, dbeta`, () => {
      const shape = layout === 'channels-first' ? [3, 2, 4] : [3, 4, 2];
      const rng = new Random(5);
      const x = rng.fill(new Float64Array(24), 1.5);
      const w = rng.fill(new Float64Array(24));
      const gamma = new Float64Array([1.3, -0.7]);
      const beta = new Float64Array([0.2, 0.1]);
      const options = { layout, activation, eps: 1e-3 };
      const loss = (xs: Float64Array, g: Float64Array, b: Float64Array): number =>
        api.batchNormTrain({ x: xs, shape, gamma: g, beta: b }, options).y.reduce((s, v, i) => s + v * w[i], 0);
      const f = api.batchNormTrain({ x, shape, gamma, beta }, options);
      const grads = api.batchNormBackward(
        { dy: w, x, shape, mean: f.mean, invStd: f.invStd, gamma, y: activation === 'relu' ? f.y : null },
        { layout, activation },
      );
      const h = 1e-6;
      const numeric = (array: Float64Array, i: number, evaluate: () => number): number => {
        const keep = array[i];
        array[i] = keep + h;
        const up = evaluate();
        array[i] = keep - h;
        const down = evaluate();
        array[i] = keep;
        return (up - down) / (2 * h);
      };
      const evaluate = () => loss(x, gamma, beta);
      for (let i = 0; i < x.length; i++) expect(grads.dx[i]).toBeCloseTo(numeric(x, i, evaluate), 6);
      for (let c = 0; c < 2; c++) {
        expect(grads.dgamma[c]).toBeCloseTo(numeric(gamma, c, evaluate), 6);
        expect(grads.dbeta[c]).toBeCloseTo(numeric(beta, c, evaluate), 6);
      }
    });
  }
});

describe('registry', () => {
  it('lists every backend with availability, and the js backend is always there', async () => {
    await api.ready();
    const list = api.backends();
    expect(list.map((b) => b.name)).toContain('js');
    for (const b of list) {
      expect(typeof b.available).toBe('boolean');
      if (!b.available) expect(b.reason).toMatch(/\S/);
    }
  });

  it('useBackend refuses unknown names and keeps the previous choice', () => {
    api.useBackend('js');
    expect(() => api.useBackend('gpu' as never)).toThrow(RangeError);
    expect(api.currentBackend()).toBe('js');
  });

  it('verify() reports the js backend conforming', () => {
    const report = api.verify({ cases: 40, backends: ['js'] });
    expect(report.ok).toBe(true);
    expect(report.text).toContain('js');
  }, 60_000);
});
