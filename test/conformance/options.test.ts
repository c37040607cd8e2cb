/** Options that travel (issue 19 item 4): one options object shared by a layer's calls. */
import { describe, expect, it } from 'vitest';
import {
  BatchNorm,
  batchNormBackward,
  batchNormInfer,
  batchNormTrain,
  moments,
  updateRunningStats,
  withBackend,
} from '../../lib/index.js';

const shape = [4, 3, 5];
const x = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i) * 3 + (i % 7));
const dy = Float32Array.from({ length: 60 }, (_, i) => Math.cos(i));

describe('options shared across the family', () => {
  it('one { eps, momentum, layout, activation, training } object works for every function, ignored where it does not apply', () => {
    const shared = { eps: 1e-3, momentum: 0.8, layout: 'channels-first', activation: 'relu', unbiasedRunningVar: false, skipNonFiniteUpdate: true, training: true } as const;
    withBackend('js', () => {
      const runningMean = new Float32Array(3);
      const runningVar = new Float32Array(3).fill(1);
      const t = batchNormTrain({ x, shape, runningMean, runningVar }, shared);
      const b = batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, y: t.y }, shared);
      const i = batchNormInfer({ x, shape, runningMean, runningVar }, shared);
      const m = moments({ x, shape }, shared);
      const u = updateRunningStats({ runningMean: runningMean.slice(), runningVar: runningVar.slice(), mean: m.mean, variance: m.variance, count: 20 }, shared);
      // The same calls with only the options each one uses give the same numbers.
      const t2 = batchNormTrain({ x, shape, runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1) }, { eps: 1e-3, momentum: 0.8, activation: 'relu', unbiasedRunningVar: false, skipNonFiniteUpdate: true });
      const b2 = batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, y: t.y }, { activation: 'relu', training: true });
      const i2 = batchNormInfer({ x, shape, runningMean, runningVar }, { eps: 1e-3, activation: 'relu' });
      expect(t.y).toEqual(t2.y);
      expect(b.dx).toEqual(b2.dx);
      expect(i.y).toEqual(i2.y);
      expect(m.mean.length).toBe(3);
      expect(u.updated).toBe(true);
    });
  });

  it('an option a function ignores does not change its result (eps on backward, training on infer)', () => {
    withBackend('js', () => {
      const t = batchNormTrain({ x, shape });
      const a = batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd }, { eps: 0.5, momentum: null });
      const b = batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd });
      expect(a.dx).toEqual(b.dx);
      const stats = { runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(2) };
      expect(batchNormInfer({ x, shape, ...stats }, { training: false }).y).toEqual(batchNormInfer({ x, shape, ...stats }).y);
    });
  });

  it('an ignored option is still checked: a wrong value is the same error as where it applies', () => {
    const t = batchNormTrain({ x, shape });
    expect(() => batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd }, { eps: -1 })).toThrow(RangeError);
    expect(() => batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd }, { eps: -1 })).toThrow(/options\.eps/);
    expect(() => moments({ x, shape }, { momentum: 2 })).toThrow(/options\.momentum must be in \[0, 1\]/);
    expect(() => moments({ x, shape }, { training: 'yes' as unknown as boolean })).toThrow(TypeError);
  });

  it('a name no function knows is a RangeError naming the closest valid one', () => {
    const bad = (options: object) => () => batchNormTrain({ x, shape }, options as never);
    expect(bad({ epsilon: 1e-3 })).toThrow(RangeError);
    expect(bad({ epsilon: 1e-3 })).toThrow(/options\.epsilon is not an option of batchNormTrain or any simdnorm operation; did you mean eps\?/);
    expect(bad({ momentun: 0.5 })).toThrow(/did you mean momentum\?/);
    expect(bad({ Layout: 'channels-last' })).toThrow(/did you mean layout\?/);
    expect(bad({ unbiased: true })).toThrow(/did you mean unbiasedRunningVar\?/);
    expect(bad({ activaton: 'relu' })).toThrow(/did you mean activation\?/);
    expect(bad({ zzz: 1 })).toThrow(/options\.zzz is not an option .*\(options: eps, momentum/);
    expect(bad({ zzz: 1 })).not.toThrow(/did you mean/);
  });

  it('each option value is read exactly once, ignored ones included', () => {
    const reads: string[] = [];
    const options = {};
    for (const [k, v] of Object.entries({ eps: 1e-3, momentum: 0.5, layout: 'channels-first', training: true })) {
      Object.defineProperty(options, k, { enumerable: true, get: () => (reads.push(k), v) });
    }
    moments({ x, shape }, options);
    expect(reads.sort()).toEqual(['eps', 'layout', 'momentum', 'training']);
  });

  it('the layer constructor takes its own options only, and suggests one', () => {
    expect(() => new BatchNorm(3, { training: false } as never)).toThrow(/options\.training is not an option of BatchNorm/);
    expect(() => new BatchNorm(3, { dtyp: 'float64' } as never)).toThrow(/did you mean dtype\?/);
    expect(() => new BatchNorm(3, { epsilon: 1 } as never)).toThrow(/did you mean eps\?/);
  });
});
