/**
 * The baseline: batch normalization as a careful JavaScript programmer would write it without a
 * library — typed arrays, per-channel float64 sums, two passes for the variance (so it stays
 * right when the mean is far from zero), the per-channel scale and shift hoisted out of the
 * element loop. The tensor is walked as x[outer][C][inner] (channels-last: inner = 1).
 * Not tuned further (no unrolling, no SIMD, no threads): it is the "no library" line.
 * The family's loops (LayerNorm, RMSNorm, GroupNorm, InstanceNorm) are in ./family-plainjs.mjs.
 *
 * @typedef {import('../runner.mjs').Contender} Contender
 */
import { EPS, geometry } from '../tasks.mjs';
import { familyPlainName, familyPlainRunner } from './family-plainjs.mjs';

// Each kernel walks x[outer][C][inner] directly (no callbacks in the element loops, which V8
// would not always inline): o over outer, c over channels, i over the run of one channel.

/** Per-channel mean and biased variance, two passes. */
function moments({ outer, channels, inner }, x, mean, variance) {
  const M = outer * inner;
  mean.fill(0);
  variance.fill(0);
  for (let o = 0, start = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, start += inner) {
      let s = 0;
      for (let i = start; i < start + inner; i++) s += x[i];
      mean[c] += s;
    }
  }
  for (let c = 0; c < channels; c++) mean[c] /= M;
  for (let o = 0, start = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, start += inner) {
      const m = mean[c];
      let s = 0;
      for (let i = start; i < start + inner; i++) s += (x[i] - m) * (x[i] - m);
      variance[c] += s;
    }
  }
  for (let c = 0; c < channels; c++) variance[c] /= M;
}

/** y = x·scale[c] + shift[c] */
function scaleShift({ outer, channels, inner }, x, scale, shift, y) {
  for (let o = 0, start = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, start += inner) {
      const a = scale[c];
      const b = shift[c];
      for (let i = start; i < start + inner; i++) y[i] = x[i] * a + b;
    }
  }
}

function infer(g, d, y, scale, shift) {
  for (let c = 0; c < g.channels; c++) {
    scale[c] = d.gamma[c] / Math.sqrt(d.runningVar[c] + EPS);
    shift[c] = d.beta[c] - d.runningMean[c] * scale[c];
  }
  scaleShift(g, d.x, scale, shift, y);
}

function train(g, d, out, scale, shift) {
  moments(g, d.x, out.mean, out.variance);
  for (let c = 0; c < g.channels; c++) {
    out.invStd[c] = 1 / Math.sqrt(out.variance[c] + EPS);
    scale[c] = d.gamma[c] * out.invStd[c];
    shift[c] = d.beta[c] - out.mean[c] * scale[c];
  }
  scaleShift(g, d.x, scale, shift, out.y);
}

/**
 * dbeta = Σdy, dgamma = Σdy·x̂, dx = gamma·invStd/M·(M·dy − dbeta − x̂·dgamma), the last as
 * dx = k·dy + p·x + q per channel (k = gamma·invStd, p = −k·invStd·dgamma/M, q = −k·dbeta/M − p·mean).
 */
function backward({ outer, channels, inner }, d, out, k, p, q) {
  const { dy, x, mean, invStd, gamma } = d;
  const { dx, dgamma, dbeta } = out;
  const M = outer * inner;
  dgamma.fill(0);
  dbeta.fill(0);
  for (let o = 0, start = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, start += inner) {
      const m = mean[c];
      let sdy = 0;
      let sdyx = 0;
      for (let i = start; i < start + inner; i++) {
        sdy += dy[i];
        sdyx += dy[i] * (x[i] - m);
      }
      dbeta[c] += sdy;
      dgamma[c] += sdyx;
    }
  }
  for (let c = 0; c < channels; c++) {
    dgamma[c] *= invStd[c];
    k[c] = gamma[c] * invStd[c];
    p[c] = (-k[c] * invStd[c] * dgamma[c]) / M;
    q[c] = (-k[c] * dbeta[c]) / M - p[c] * mean[c];
  }
  for (let o = 0, start = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, start += inner) {
      const kc = k[c];
      const pc = p[c];
      const qc = q[c];
      for (let i = start; i < start + inner; i++) dx[i] = kc * dy[i] + pc * x[i] + qc;
    }
  }
}

/**
 * The loops as calls on channels-first data `d` (x, gamma, beta, runningMean, runningVar, dy,
 * mean, invStd and shape), each writing its own outputs: { infer, train, backward }.
 */
export function plainJsCalls(d) {
  const g = { outer: d.shape[0], channels: d.shape[1], inner: d.shape.slice(2).reduce((a, b) => a * b, 1) };
  const C = g.channels;
  const n = d.x.length;
  const Type = d.x.constructor;
  const perChannel = () => new Float64Array(C);
  const scale = perChannel();
  const shift = perChannel();
  const k = perChannel();
  const y = new Type(n);
  const trainOut = { y: new Type(n), mean: perChannel(), variance: perChannel(), invStd: perChannel() };
  const backwardOut = { dx: new Type(n), dgamma: perChannel(), dbeta: perChannel() };
  return {
    infer: () => infer(g, d, y, scale, shift),
    train: () => train(g, d, trainOut, scale, shift),
    backward: () => backward(g, d, backwardOut, k, scale, shift),
  };
}

/** @returns {Contender} */
export function plainJsContender() {
  return {
    id: 'plain-js',
    label: 'plain JS loop',
    kind: 'baseline',
    formulations(task) {
      if (task.mode === 'async') return 'synchronous code: no async variant';
      if ((task.case.norm ?? 'batchnorm') !== 'batchnorm') return [{ name: familyPlainName(task.case), prepare: () => familyPlainRunner(task) }];
      return [
        {
          name: 'two-pass loops, float64 sums',
          prepare() {
            const { data, op } = task;
            const g = geometry(task.case);
            const C = g.channels;
            const Type = data.x.constructor;
            const n = data.x.length;
            const scale = new Float64Array(C);
            const shift = new Float64Array(C);
            const perChannel = () => new Float64Array(C);
            let run;
            let outputs;
            if (op === 'infer') {
              const y = new Type(n);
              run = () => infer(g, data, y, scale, shift);
              outputs = () => ({ y });
            } else if (op === 'train') {
              const out = { y: new Type(n), mean: perChannel(), variance: perChannel(), invStd: perChannel() };
              run = () => train(g, data, out, scale, shift);
              outputs = () => ({ y: out.y, mean: out.mean, invStd: out.invStd });
            } else {
              const out = { dx: new Type(n), dgamma: perChannel(), dbeta: perChannel() };
              const k = perChannel();
              run = () => backward(g, data, out, k, scale, shift);
              outputs = () => ({ dx: out.dx, dgamma: out.dgamma, dbeta: out.dbeta });
            }
            return { async: false, run, outputs };
          },
        },
      ];
    },
  };
}
