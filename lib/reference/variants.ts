/**
 * The float64 oracle of the BatchNorm variants (README "BatchNorm variants"), written plainly from
 * the formulas, for the tests: Batch Renormalization forward and backward, ghost BatchNorm, the
 * folding of a BatchNorm into a layer's weight, and the statistics recomputeRunningStats must give.
 * Inputs may be Float32Array or Float64Array; every result is Float64Array.
 *
 * Indexing as lib/reference.ts: x[outer][channels][inner] (channels-first: outer N, inner the
 * spatial product; channels-last: outer N·spatial, inner 1), element (o, c, i) at (o·C + c)·inner + i.
 */
import type { Geometry } from '../backend.js';
import { channelStats } from '../reference.js';

type Values = ArrayLike<number>;
export type RefLayout = 'channels-first' | 'channels-last';

/** BatchNorm's geometry of `dims` under a layout. */
export function geometryOf(dims: readonly number[], layout: RefLayout): Geometry {
  const C = layout === 'channels-first' ? dims[1] : dims[dims.length - 1];
  let outer = 1;
  let inner = 1;
  if (layout === 'channels-first') {
    outer = dims[0];
    for (let i = 2; i < dims.length; i++) inner *= dims[i];
  } else {
    for (let i = 0; i < dims.length - 1; i++) outer *= dims[i];
  }
  return { outer, channels: C, inner };
}

function forChannel(g: Geometry, c: number, fn: (index: number) => void): void {
  for (let o = 0; o < g.outer; o++) {
    for (let i = 0; i < g.inner; i++) fn((o * g.channels + c) * g.inner + i);
  }
}

function clip(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

export interface RenormRefInputs {
  x: Values;
  dims: readonly number[];
  gamma: Values | null;
  beta: Values | null;
  runningMean: Values;
  runningVar: Values;
}

export interface RenormRefOptions {
  layout: RefLayout;
  eps: number;
  rmax: number;
  dmax: number;
  /** weight of the old running value (null: cumulative with numBatchesTracked) */
  momentum: number | null;
  numBatchesTracked?: number;
  unbiased: boolean;
  relu?: boolean;
}

export interface RenormRefResult {
  y: Float64Array;
  mean: Float64Array;
  invStd: Float64Array;
  r: Float64Array;
  d: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/**
 * Batch Renormalization's training forward: σ_B = sqrt(σ²_B + eps), σ = sqrt(runningVar + eps),
 * r = clip(σ_B/σ, 1/rmax, rmax), d = clip((μ_B − runningMean)/σ, −dmax, dmax),
 * y = γ·((x − μ_B)/σ_B·r + d) + β; running stats updated as BatchNorm does.
 */
export function renormTrainRef(a: RenormRefInputs, o: RenormRefOptions): RenormRefResult {
  const g = geometryOf(a.dims, o.layout);
  const C = g.channels;
  const M = g.outer * g.inner;
  const x = Float64Array.from(a.x);
  const res: RenormRefResult = {
    y: new Float64Array(x.length),
    mean: new Float64Array(C),
    invStd: new Float64Array(C),
    r: new Float64Array(C),
    d: new Float64Array(C),
    runningMean: Float64Array.from(a.runningMean),
    runningVar: Float64Array.from(a.runningVar),
  };
  const factor = o.momentum === null ? 1 / ((o.numBatchesTracked ?? 0) + 1) : 1 - o.momentum;
  for (let c = 0; c < C; c++) {
    const { mean, variance } = channelStats(x, g, c);
    const sigmaB = Math.sqrt(variance + o.eps);
    const sigma = Math.sqrt(a.runningVar[c] + o.eps);
    const r = clip(sigmaB / sigma, 1 / o.rmax, o.rmax);
    const d = clip((mean - a.runningMean[c]) / sigma, -o.dmax, o.dmax);
    const gamma = a.gamma ? a.gamma[c] : 1;
    const beta = a.beta ? a.beta[c] : 0;
    forChannel(g, c, (k) => {
      const v = gamma * (((x[k] - mean) / sigmaB) * r + d) + beta;
      res.y[k] = o.relu && v < 0 ? 0 : v;
    });
    res.mean[c] = mean;
    res.invStd[c] = 1 / sigmaB;
    res.r[c] = r;
    res.d[c] = d;
    const unbiased = o.unbiased ? (variance * M) / (M - 1) : variance;
    res.runningMean[c] = (1 - factor) * a.runningMean[c] + factor * mean;
    res.runningVar[c] = (1 - factor) * a.runningVar[c] + factor * unbiased;
  }
  return res;
}

export interface RenormBackwardRefInputs {
  dy: Values;
  x: Values;
  dims: readonly number[];
  mean: Values;
  invStd: Values;
  gamma: Values | null;
  r: Values;
  d: Values;
}

/**
 * Batch Renormalization's backward with r, d constants: with x̂ = (x − μ)·invStd,
 * dβ = Σdy, dγ = Σdy·(x̂·r + d), dx = γ·r·invStd/M·(M·dy − Σdy − x̂·Σdy·x̂).
 */
export function renormBackwardRef(a: RenormBackwardRefInputs, layout: RefLayout): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const g = geometryOf(a.dims, layout);
  const C = g.channels;
  const M = g.outer * g.inner;
  const dx = new Float64Array(a.x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sumDy = 0;
    let sumDyXhat = 0;
    forChannel(g, c, (k) => {
      sumDy += a.dy[k];
      sumDyXhat += a.dy[k] * (a.x[k] - a.mean[c]) * a.invStd[c];
    });
    dbeta[c] = sumDy;
    dgamma[c] = a.r[c] * sumDyXhat + a.d[c] * sumDy;
    const scale = (a.gamma ? a.gamma[c] : 1) * a.r[c] * a.invStd[c];
    forChannel(g, c, (k) => {
      const xhat = (a.x[k] - a.mean[c]) * a.invStd[c];
      dx[k] = (scale / M) * (M * a.dy[k] - sumDy - xhat * sumDyXhat);
    });
  }
  return { dx, dgamma, dbeta };
}

/** The elements [from, to) of `x` of the chunk `k` of `v` samples (contiguous in both layouts). */
export function chunkOf(x: Values, dims: readonly number[], v: number, k: number): Float64Array {
  const perSample = dims.slice(1).reduce((p, d) => p * d, 1);
  return Float64Array.from(Array.prototype.slice.call(x, k * v * perSample, (k + 1) * v * perSample) as number[]);
}

/**
 * Ghost BatchNorm's training forward: BatchNorm on each chunk of v samples (y, mean and invStd
 * per chunk at chunk·C + c); the running stats updated once with the mean over chunks of the
 * chunk means and of the (unbiased when asked) chunk variances.
 */
export function ghostTrainRef(
  a: { x: Values; dims: readonly number[]; gamma: Values | null; beta: Values | null; runningMean: Values | null; runningVar: Values | null },
  o: { layout: RefLayout; eps: number; v: number; momentum: number | null; numBatchesTracked?: number; unbiased: boolean; relu?: boolean },
): { y: Float64Array; mean: Float64Array; invStd: Float64Array; runningMean: Float64Array | null; runningVar: Float64Array | null } {
  const N = a.dims[0];
  const chunks = N / o.v;
  const chunkDims = [o.v, ...a.dims.slice(1)];
  const g = geometryOf(chunkDims, o.layout);
  const C = g.channels;
  const M = g.outer * g.inner;
  const y = new Float64Array(a.x.length);
  const mean = new Float64Array(chunks * C);
  const invStd = new Float64Array(chunks * C);
  const meanOfMeans = new Float64Array(C);
  const meanOfVars = new Float64Array(C);
  for (let k = 0; k < chunks; k++) {
    const x = chunkOf(a.x, a.dims, o.v, k);
    for (let c = 0; c < C; c++) {
      const s = channelStats(x, g, c);
      const inv = 1 / Math.sqrt(s.variance + o.eps);
      mean[k * C + c] = s.mean;
      invStd[k * C + c] = inv;
      meanOfMeans[c] += s.mean / chunks;
      meanOfVars[c] += (o.unbiased ? (s.variance * M) / (M - 1) : s.variance) / chunks;
      const gamma = a.gamma ? a.gamma[c] : 1;
      const beta = a.beta ? a.beta[c] : 0;
      forChannel(g, c, (i) => {
        const v = gamma * (x[i] - s.mean) * inv + beta;
        y[k * x.length + i] = o.relu && v < 0 ? 0 : v;
      });
    }
  }
  if (a.runningMean === null || a.runningVar === null) return { y, mean, invStd, runningMean: null, runningVar: null };
  const factor = o.momentum === null ? 1 / ((o.numBatchesTracked ?? 0) + 1) : 1 - o.momentum;
  const runningMean = new Float64Array(C);
  const runningVar = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    runningMean[c] = (1 - factor) * a.runningMean[c] + factor * meanOfMeans[c];
    runningVar[c] = (1 - factor) * a.runningVar[c] + factor * meanOfVars[c];
  }
  return { y, mean, invStd, runningMean, runningVar };
}

/**
 * Ghost BatchNorm's backward: BatchNorm's training backward on each chunk with its own mean and
 * invStd (at chunk·C + c); dgamma and dbeta summed over the chunks.
 */
export function ghostBackwardRef(
  a: { dy: Values; x: Values; dims: readonly number[]; mean: Values; invStd: Values; gamma: Values | null },
  layout: RefLayout,
  v: number,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const chunks = a.dims[0] / v;
  const chunkDims = [v, ...a.dims.slice(1)];
  const g = geometryOf(chunkDims, layout);
  const C = g.channels;
  const M = g.outer * g.inner;
  const dx = new Float64Array(a.x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  for (let k = 0; k < chunks; k++) {
    const x = chunkOf(a.x, a.dims, v, k);
    const dy = chunkOf(a.dy, a.dims, v, k);
    for (let c = 0; c < C; c++) {
      const mu = a.mean[k * C + c];
      const inv = a.invStd[k * C + c];
      let sumDy = 0;
      let sumDyXhat = 0;
      forChannel(g, c, (i) => {
        sumDy += dy[i];
        sumDyXhat += dy[i] * (x[i] - mu) * inv;
      });
      dbeta[c] += sumDy;
      dgamma[c] += sumDyXhat;
      const gamma = a.gamma ? a.gamma[c] : 1;
      forChannel(g, c, (i) => {
        const xhat = (x[i] - mu) * inv;
        dx[k * x.length + i] = ((gamma * inv) / M) * (M * dy[i] - sumDy - xhat * sumDyXhat);
      });
    }
  }
  return { dx, dgamma, dbeta };
}

/** Per channel scale = γ/sqrt(var + eps), shift = β − mean·scale. */
export function scaleShiftRef(
  bn: { runningMean: Values; runningVar: Values; gamma?: Values | null; beta?: Values | null },
  eps: number,
): { scale: Float64Array; shift: Float64Array } {
  const C = bn.runningMean.length;
  const scale = new Float64Array(C);
  const shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (bn.gamma ? bn.gamma[c] : 1) / Math.sqrt(bn.runningVar[c] + eps);
    shift[c] = (bn.beta ? bn.beta[c] : 0) - bn.runningMean[c] * scale[c];
  }
  return { scale, shift };
}

/**
 * The population mean and unbiased variance per channel of the concatenation of `batches`
 * (each `{ x, dims }`), by the two-pass formula over all values at once.
 */
export function populationStatsRef(batches: readonly { x: Values; dims: readonly number[] }[], layout: RefLayout): { mean: Float64Array; variance: Float64Array; count: number } {
  const C = geometryOf(batches[0].dims, layout).channels;
  const sum = new Float64Array(C);
  let count = 0;
  for (const b of batches) {
    const g = geometryOf(b.dims, layout);
    count += g.outer * g.inner;
    for (let c = 0; c < C; c++) forChannel(g, c, (k) => (sum[c] += b.x[k]));
  }
  const mean = sum.map((s) => s / count);
  const squares = new Float64Array(C);
  for (const b of batches) {
    const g = geometryOf(b.dims, layout);
    for (let c = 0; c < C; c++) forChannel(g, c, (k) => (squares[c] += (b.x[k] - mean[c]) ** 2));
  }
  return { mean, variance: squares.map((s) => s / (count - 1)), count };
}

/** PyTorch's update_bn: the average of the batch means and of the unbiased batch variances. */
export function cumulativeStatsRef(batches: readonly { x: Values; dims: readonly number[] }[], layout: RefLayout): { mean: Float64Array; variance: Float64Array } {
  const C = geometryOf(batches[0].dims, layout).channels;
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (const b of batches) {
    const g = geometryOf(b.dims, layout);
    const M = g.outer * g.inner;
    for (let c = 0; c < C; c++) {
      const s = channelStats(Float64Array.from(b.x), g, c);
      mean[c] += s.mean / batches.length;
      variance[c] += (s.variance * M) / (M - 1) / batches.length;
    }
  }
  return { mean, variance };
}

/**
 * BatchNorm + residual add (+ ReLU), forward: y = act(γ·(x − μ)·invStd + β + z) with the batch
 * statistics (training) or y = act(γ·(x − runningMean)/sqrt(runningVar + eps) + β + z) (inference).
 */
export function residualForwardRef(
  a: { x: Values; dims: readonly number[]; gamma: Values | null; beta: Values | null; residual: Values; runningMean?: Values; runningVar?: Values },
  o: { layout: RefLayout; eps: number; relu: boolean; training: boolean },
): { y: Float64Array; mean: Float64Array; invStd: Float64Array } {
  const g = geometryOf(a.dims, o.layout);
  const C = g.channels;
  const x = Float64Array.from(a.x);
  const y = new Float64Array(x.length);
  const mean = new Float64Array(C);
  const invStd = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const s = o.training ? channelStats(x, g, c) : { mean: a.runningMean![c], variance: a.runningVar![c] };
    const inv = 1 / Math.sqrt(s.variance + o.eps);
    mean[c] = s.mean;
    invStd[c] = inv;
    const gamma = a.gamma ? a.gamma[c] : 1;
    const beta = a.beta ? a.beta[c] : 0;
    forChannel(g, c, (k) => {
      const v = gamma * (x[k] - s.mean) * inv + beta + a.residual[k];
      y[k] = o.relu && v < 0 ? 0 : v;
    });
  }
  return { y, mean, invStd };
}

/**
 * Its backward: g = dy masked by y > 0 under the ReLU (y the forward output), dz = g, and BatchNorm's
 * backward of g: dβ = Σg, dγ = Σg·x̂, dx = γ·invStd/M·(M·g − Σg − x̂·Σg·x̂) (training) or g·γ·invStd (eval).
 */
export function residualBackwardRef(
  a: { dy: Values; x: Values; dims: readonly number[]; mean: Values; invStd: Values; gamma: Values | null; y: Values | null },
  o: { layout: RefLayout; training: boolean },
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array; dz: Float64Array } {
  const g = geometryOf(a.dims, o.layout);
  const C = g.channels;
  const M = g.outer * g.inner;
  const dz = Float64Array.from(a.dy, (v, k) => (a.y && !(a.y[k] > 0) ? 0 : v));
  const dx = new Float64Array(dz.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const mu = a.mean[c];
    const inv = a.invStd[c];
    let sumG = 0;
    let sumGXhat = 0;
    forChannel(g, c, (k) => {
      sumG += dz[k];
      sumGXhat += dz[k] * (a.x[k] - mu) * inv;
    });
    dbeta[c] = sumG;
    dgamma[c] = sumGXhat;
    const gamma = a.gamma ? a.gamma[c] : 1;
    forChannel(g, c, (k) => {
      const xhat = (a.x[k] - mu) * inv;
      dx[k] = o.training ? ((gamma * inv) / M) * (M * dz[k] - sumG - xhat * sumGXhat) : dz[k] * gamma * inv;
    });
  }
  return { dx, dgamma, dbeta, dz };
}
