/**
 * The reference implementation: README "API"'s formulas written plainly, accumulated in float64.
 * It is the `js` backend and the oracle every other backend is tested against, so it favours
 * obviousness over speed: two passes for the statistics, one loop per formula.
 *
 * Indexing: x[outer][channels][inner], element (o, c, i) at (o * C + c) * inner + i.
 */
import type { FloatArray, Geometry } from './backend.js';
import { typedArrayLength } from './intrinsics.js';

// The arguments of each reference function (the BatchNorm geometry x[outer][channels][inner]).

/** How a training step folds the batch statistics into the running ones. */
export interface RunningUpdateArgs {
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  /** weight of the new batch: 1 - momentum, or 1/numBatchesTracked for the cumulative average */
  readonly factor: number;
  /** M/(M-1) for the unbiased running variance, else 1 */
  readonly varScale: number;
  readonly skipNonFinite: boolean;
}

export interface TrainArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  readonly eps: number;
  readonly relu: boolean;
  readonly y: FloatArray;
  readonly mean: FloatArray;
  readonly invStd: FloatArray;
  readonly running: RunningUpdateArgs | null;
}

export interface InferArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  readonly eps: number;
  readonly relu: boolean;
  readonly y: FloatArray;
}

export interface BackwardArgs {
  readonly dy: FloatArray;
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly mean: FloatArray;
  readonly invStd: FloatArray;
  readonly gamma: FloatArray | null;
  /** the fused ReLU's forward output: dy is masked by y > 0; null without ReLU */
  readonly y: FloatArray | null;
  readonly training: boolean;
  readonly dx: FloatArray;
  readonly dgamma: FloatArray;
  readonly dbeta: FloatArray;
}

export interface MomentsArgs {
  readonly x: FloatArray;
  readonly geometry: Geometry;
  readonly mean: FloatArray;
  readonly variance: FloatArray;
}

export interface UpdateRunningArgs extends RunningUpdateArgs {
  readonly batchMean: FloatArray;
  /** biased batch variance */
  readonly batchVar: FloatArray;
}

/** Calls fn(index) for every element of channel c. */
function forChannel(g: Geometry, c: number, fn: (index: number) => void): void {
  for (let o = 0; o < g.outer; o++) {
    const start = (o * g.channels + c) * g.inner;
    for (let i = 0; i < g.inner; i++) fn(start + i);
  }
}

/**
 * mean = Σx/M, variance = Σ(x−mean)²/M (biased), both in float64; NaN when M = 0.
 * The second pass also sums the residual r = Σ(x − mean), which is M times the first mean's
 * rounding error, and corrects both (the corrected two-pass algorithm of Chan, Golub and
 * LeVeque): mean += r/M, Σ(x−mean)² −= r²/M. A plain Σx/M is off by tens of ulps of |mean| for
 * data far from zero, which float64 results then inherit (0.5 ulp of |mean| is already 7e-12 at
 * 1e5). Not done where r is not finite (±Inf or NaN data), so IEEE's values stand there.
 */
export function channelStats(x: FloatArray, g: Geometry, c: number): { mean: number; variance: number } {
  const m = g.outer * g.inner;
  let sum = 0;
  forChannel(g, c, (k) => (sum += x[k]));
  let mean = sum / m;
  let residual = 0;
  let squares = 0;
  forChannel(g, c, (k) => {
    const d = x[k] - mean;
    residual += d;
    squares += d * d;
  });
  if (Number.isFinite(residual)) {
    mean += residual / m;
    squares -= residual * (residual / m);
  }
  return { mean, variance: (squares < 0 ? 0 : squares) / m };
}

/** ReLU that lets NaN through, as IEEE arithmetic and PyTorch do. */
export function relu(v: number): number {
  return v < 0 ? 0 : v;
}

/** Writes y = (x − mean)·scale + shift over channel c, then ReLU if asked. */
function applyScaleShift(
  x: FloatArray,
  y: FloatArray,
  g: Geometry,
  c: number,
  mean: number,
  scale: number,
  shift: number,
  useRelu: boolean,
): void {
  forChannel(g, c, (k) => {
    const v = (x[k] - mean) * scale + shift;
    y[k] = useRelu ? relu(v) : v;
  });
}

/**
 * Training forward: batch statistics, y = gamma·(x−μ)·invStd + beta, and the running-stat
 * update when asked. Returns whether the running statistics were written.
 */
export function train(a: TrainArgs): boolean {
  const g = a.geometry;
  // The running update uses these float64 statistics, not the ones rounded into a.mean.
  const batchMean = new Float64Array(g.channels);
  const batchVar = new Float64Array(g.channels);
  for (let c = 0; c < g.channels; c++) {
    const { mean, variance } = channelStats(a.x, g, c);
    const invStd = 1 / Math.sqrt(variance + a.eps);
    a.mean[c] = mean;
    a.invStd[c] = invStd;
    batchMean[c] = mean;
    batchVar[c] = variance;
    const gamma = a.gamma ? a.gamma[c] : 1;
    applyScaleShift(a.x, a.y, g, c, mean, gamma * invStd, a.beta ? a.beta[c] : 0, a.relu);
  }
  if (!a.running || g.outer * g.inner === 0) return false;
  return updateRunningStats({ ...a.running, batchMean, batchVar });
}

/** Inference: y = gamma·(x − runningMean)/sqrt(runningVar + eps) + beta. */
export function infer(a: InferArgs): void {
  const g = a.geometry;
  for (let c = 0; c < g.channels; c++) {
    const gamma = a.gamma ? a.gamma[c] : 1;
    const scale = gamma / Math.sqrt(a.runningVar[c] + a.eps);
    applyScaleShift(a.x, a.y, g, c, a.runningMean[c], scale, a.beta ? a.beta[c] : 0, a.relu);
  }
}

/**
 * Backward. With x̂ = (x − mean)·invStd and dy masked by y > 0 under the fused ReLU:
 *   dbeta = Σdy, dgamma = Σdy·x̂,
 *   training: dx = gamma·invStd/M · (M·dy − dbeta − x̂·dgamma);  eval: dx = dy·gamma·invStd.
 */
export function backward(a: BackwardArgs): void {
  const g = a.geometry;
  const m = g.outer * g.inner;
  const grad = (k: number): number => (a.y && !(a.y[k] > 0) ? 0 : a.dy[k]);
  for (let c = 0; c < g.channels; c++) {
    const mean = a.mean[c];
    const invStd = a.invStd[c];
    let dbeta = 0;
    let dgamma = 0;
    forChannel(g, c, (k) => {
      dbeta += grad(k);
      dgamma += grad(k) * (a.x[k] - mean) * invStd;
    });
    a.dbeta[c] = dbeta;
    a.dgamma[c] = dgamma;
    const gamma = a.gamma ? a.gamma[c] : 1;
    forChannel(g, c, (k) => {
      const xhat = (a.x[k] - mean) * invStd;
      a.dx[k] = a.training
        ? ((gamma * invStd) / m) * (m * grad(k) - dbeta - xhat * dgamma)
        : grad(k) * gamma * invStd;
    });
  }
}

export function moments(a: MomentsArgs): void {
  for (let c = 0; c < a.geometry.channels; c++) {
    const { mean, variance } = channelStats(a.x, a.geometry, c);
    a.mean[c] = mean;
    a.variance[c] = variance;
  }
}

/** The running-stat update's input; the batch statistics may be float64 whatever the dtype. */
export interface RunningUpdateInput extends RunningUpdateArgs {
  readonly batchMean: ArrayLike<number>;
  readonly batchVar: ArrayLike<number>;
}

/**
 * running = (1 − factor)·running + factor·batch, with the batch variance scaled by varScale.
 * With skipNonFinite, a batch with any non-finite statistic (the mean, or the variance as scaled
 * into the running one) leaves the running stats untouched.
 */
export function updateRunningStats(a: RunningUpdateInput): boolean {
  // The intrinsic length: a caller's array is only ever read by index and through intrinsics.
  const channels = typedArrayLength(a.runningMean);
  if (a.skipNonFinite) {
    for (let c = 0; c < channels; c++) {
      if (!Number.isFinite(a.batchMean[c]) || !Number.isFinite(a.batchVar[c] * a.varScale)) return false;
    }
  }
  for (let c = 0; c < channels; c++) {
    a.runningMean[c] = (1 - a.factor) * a.runningMean[c] + a.factor * a.batchMean[c];
    a.runningVar[c] = (1 - a.factor) * a.runningVar[c] + a.factor * a.batchVar[c] * a.varScale;
  }
  return true;
}
