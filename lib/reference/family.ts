/**
 * The float64 oracle of the normalization family (README "The normalization family"): LayerNorm,
 * RMSNorm, GroupNorm and InstanceNorm, forward and backward, written from the formulas with plain
 * loops over each op's natural indices (rows × D; n, c, spatial position, group) and nothing of
 * the descriptor machinery (lib/core, lib/backends): it is what every backend, `js` included, is
 * tested against (test/conformance/family.test.ts), and its backward functions are themselves
 * checked against central finite differences of its forward functions.
 *
 * Everything is computed in float64 from the values given (float32 inputs are read exactly) and
 * returned as Float64Arrays. Statistics take two passes over a statistic's values: the mean
 * Σx/M (compensated sum), corrected by the residual Σ(x − mean)/M of the second pass, then the
 * biased variance Σ(x − mean)²/M (compensated). A statistic of zero values is NaN (0/0), as the
 * façade reports it.
 */

export type Values = ArrayLike<number>;
export type RefLayout = 'channels-first' | 'channels-last';

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Σ values, compensated (Neumaier): the rounding error of the float64 sum is added back. */
function sum(values: Values): number {
  let s = 0;
  let c = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const t = s + v;
    c += Math.abs(s) >= Math.abs(v) ? s - t + v : v - t + s;
    s = t;
  }
  return s + c;
}

/** Mean and biased variance of `values` (two passes, the mean corrected by the residual). */
export function meanVariance(values: Values): { mean: number; variance: number } {
  const m = values.length;
  let mean = sum(values) / m;
  const deviations = new Float64Array(m);
  for (let i = 0; i < m; i++) deviations[i] = values[i] - mean;
  const residual = sum(deviations);
  if (Number.isFinite(residual)) mean += residual / m;
  const squares = new Float64Array(m);
  for (let i = 0; i < m; i++) squares[i] = (values[i] - mean) * (values[i] - mean);
  return { mean, variance: sum(squares) / m };
}

/** Mean of the squares of `values` (RMSNorm's statistic). */
export function meanSquare(values: Values): number {
  const squares = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) squares[i] = values[i] * values[i];
  return sum(squares) / values.length;
}

function productOf(dims: readonly number[], from = 0, to = dims.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= dims[i];
  return p;
}

/** ReLU letting NaN through (NaN < 0 is false). */
function relu(v: number): number {
  return v < 0 ? 0 : v;
}

/** dy masked by the fused ReLU's forward output (y > 0), or dy itself without it. */
function masked(dy: Values, y: Values | null | undefined, i: number): number {
  return y && !(y[i] > 0) ? 0 : dy[i];
}

// ---------------------------------------------------------------------------------------------
// LayerNorm: x as rows × D, D = product(normalizedShape), element (r, j) at r·D + j

export interface RowsShape {
  shape: readonly number[];
  /** the last k dims of shape */
  normalizedShape: readonly number[];
}

function rowsOf(s: RowsShape): { rows: number; d: number } {
  const k = s.normalizedShape.length;
  const n = s.shape.length;
  if (k < 1 || k > n) throw new RangeError(`oracle: normalizedShape [${s.normalizedShape}] is not the end of shape [${s.shape}]`);
  for (let i = 0; i < k; i++) {
    if (s.shape[n - k + i] !== s.normalizedShape[i]) {
      throw new RangeError(`oracle: normalizedShape [${s.normalizedShape}] is not the end of shape [${s.shape}]`);
    }
  }
  return { rows: productOf(s.shape, 0, n - k), d: productOf(s.normalizedShape) };
}

export interface LayerNormRefInputs extends RowsShape {
  x: Values;
  weight?: Values | null;
  bias?: Values | null;
}

export interface NormRefOptions {
  /** default 1e-5 */
  eps?: number;
  relu?: boolean;
}

export interface StatsRef {
  y: Float64Array;
  mean: Float64Array;
  invStd: Float64Array;
}

/** LayerNorm forward: per row μ, biased σ², y = (x − μ)·invStd·weight[j] + bias[j] (then ReLU). */
export function layerNormRef(inputs: LayerNormRefInputs, options: NormRefOptions = {}): StatsRef {
  const { rows, d } = rowsOf(inputs);
  const eps = options.eps ?? 1e-5;
  const { x, weight, bias } = inputs;
  const y = new Float64Array(rows * d);
  const mean = new Float64Array(rows);
  const invStd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = new Float64Array(d);
    for (let j = 0; j < d; j++) row[j] = x[r * d + j];
    const st = meanVariance(row);
    const inv = 1 / Math.sqrt(st.variance + eps);
    mean[r] = st.mean;
    invStd[r] = inv;
    for (let j = 0; j < d; j++) {
      const v = (row[j] - st.mean) * inv * (weight ? weight[j] : 1) + (bias ? bias[j] : 0);
      y[r * d + j] = options.relu ? relu(v) : v;
    }
  }
  return { y, mean, invStd };
}

export interface LayerNormBackwardRefInputs extends RowsShape {
  dy: Values;
  x: Values;
  mean: Values;
  invStd: Values;
  weight?: Values | null;
  /** the forward output (ReLU only) */
  y?: Values | null;
}

/**
 * LayerNorm backward with the given statistics: per row, g = dy·weight (dy masked by y > 0 under
 * ReLU), x̂ = (x − mean)·invStd, dx = invStd·(g − mean(g) − x̂·mean(g·x̂)); over rows
 * dweight[j] = Σ dy·x̂, dbias[j] = Σ dy (masked dy).
 */
export function layerNormBackwardRef(
  inputs: LayerNormBackwardRefInputs,
  options: { relu?: boolean } = {},
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const { rows, d } = rowsOf(inputs);
  const { dy, x, mean, invStd, weight } = inputs;
  const y = options.relu ? inputs.y : null;
  const dx = new Float64Array(rows * d);
  const dweight = new Float64Array(d);
  const dbias = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const g = new Float64Array(d);
    const xhat = new Float64Array(d);
    const gx = new Float64Array(d);
    for (let j = 0; j < d; j++) {
      const i = r * d + j;
      const dyi = masked(dy, y, i);
      xhat[j] = (x[i] - mean[r]) * invStd[r];
      g[j] = dyi * (weight ? weight[j] : 1);
      gx[j] = g[j] * xhat[j];
      dweight[j] += dyi * xhat[j];
      dbias[j] += dyi;
    }
    const meanG = sum(g) / d;
    const meanGX = sum(gx) / d;
    for (let j = 0; j < d; j++) dx[r * d + j] = invStd[r] * (g[j] - meanG - xhat[j] * meanGX);
  }
  return { dx, dweight, dbias };
}

// ---------------------------------------------------------------------------------------------
// RMSNorm: rows × D as LayerNorm, statistics about zero

export interface RmsNormRefInputs extends RowsShape {
  x: Values;
  weight?: Values | null;
}

/** RMSNorm forward: invRms = 1/sqrt(mean(x²) + eps) per row, y = x·invRms·weight[j] (then ReLU). */
export function rmsNormRef(inputs: RmsNormRefInputs, options: { eps: number; relu?: boolean }): { y: Float64Array; invRms: Float64Array } {
  const { rows, d } = rowsOf(inputs);
  const { x, weight } = inputs;
  const y = new Float64Array(rows * d);
  const invRms = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = new Float64Array(d);
    for (let j = 0; j < d; j++) row[j] = x[r * d + j];
    const inv = 1 / Math.sqrt(meanSquare(row) + options.eps);
    invRms[r] = inv;
    for (let j = 0; j < d; j++) {
      const v = row[j] * inv * (weight ? weight[j] : 1);
      y[r * d + j] = options.relu ? relu(v) : v;
    }
  }
  return { y, invRms };
}

export interface RmsNormBackwardRefInputs extends RowsShape {
  dy: Values;
  x: Values;
  invRms: Values;
  weight?: Values | null;
  y?: Values | null;
}

/**
 * RMSNorm backward with the given invRms: x̂ = x·invRms, g = dy·weight,
 * dx = invRms·(g − x̂·mean(g·x̂)); dweight[j] = Σrows dy·x̂.
 */
export function rmsNormBackwardRef(
  inputs: RmsNormBackwardRefInputs,
  options: { relu?: boolean } = {},
): { dx: Float64Array; dweight: Float64Array } {
  const { rows, d } = rowsOf(inputs);
  const { dy, x, invRms, weight } = inputs;
  const y = options.relu ? inputs.y : null;
  const dx = new Float64Array(rows * d);
  const dweight = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const g = new Float64Array(d);
    const xhat = new Float64Array(d);
    const gx = new Float64Array(d);
    for (let j = 0; j < d; j++) {
      const i = r * d + j;
      const dyi = masked(dy, y, i);
      xhat[j] = x[i] * invRms[r];
      g[j] = dyi * (weight ? weight[j] : 1);
      gx[j] = g[j] * xhat[j];
      dweight[j] += dyi * xhat[j];
    }
    const meanGX = sum(gx) / d;
    for (let j = 0; j < d; j++) dx[r * d + j] = invRms[r] * (g[j] - xhat[j] * meanGX);
  }
  return { dx, dweight };
}

// ---------------------------------------------------------------------------------------------
// GroupNorm and InstanceNorm: [N, C, ...spatial] or [N, ...spatial, C]

interface Nchw {
  n: number;
  c: number;
  /** spatial positions per (n, c) */
  s: number;
  /** the flat index of (n, c, spatial position p) */
  at(n: number, c: number, p: number): number;
}

function nchw(shape: readonly number[], layout: RefLayout = 'channels-first'): Nchw {
  if (shape.length < 2) throw new RangeError(`oracle: shape [${shape}] has no channel dim`);
  const last = shape.length - 1;
  const n = shape[0];
  if (layout === 'channels-first') {
    const c = shape[1];
    const s = productOf(shape, 2);
    return { n, c, s, at: (ni, ci, p) => (ni * c + ci) * s + p };
  }
  const c = shape[last];
  const s = productOf(shape, 1, last);
  return { n, c, s, at: (ni, ci, p) => (ni * s + p) * c + ci };
}

export interface GroupNormRefInputs {
  x: Values;
  shape: readonly number[];
  groups: number;
  gamma?: Values | null;
  beta?: Values | null;
}

export interface LayoutRefOptions extends NormRefOptions {
  layout?: RefLayout;
}

/**
 * GroupNorm forward: per (n, g), μ and biased σ² over channels g·K … g·K + K − 1 (K = C/G) at
 * every spatial position; y = (x − μ)·invStd·gamma[c] + beta[c] (then ReLU). mean, invStd at n·G + g.
 */
export function groupNormRef(inputs: GroupNormRefInputs, options: LayoutRefOptions = {}): StatsRef {
  const t = nchw(inputs.shape, options.layout);
  const G = inputs.groups;
  if (!(G >= 1) || t.c % G !== 0) throw new RangeError(`oracle: groups ${G} does not divide C = ${t.c}`);
  const K = t.c / G;
  const eps = options.eps ?? 1e-5;
  const { x, gamma, beta } = inputs;
  const y = new Float64Array(t.n * t.c * t.s);
  const mean = new Float64Array(t.n * G);
  const invStd = new Float64Array(t.n * G);
  for (let n = 0; n < t.n; n++) {
    for (let g = 0; g < G; g++) {
      const values = new Float64Array(K * t.s);
      for (let k = 0; k < K; k++) for (let p = 0; p < t.s; p++) values[k * t.s + p] = x[t.at(n, g * K + k, p)];
      const st = meanVariance(values);
      const inv = 1 / Math.sqrt(st.variance + eps);
      mean[n * G + g] = st.mean;
      invStd[n * G + g] = inv;
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        for (let p = 0; p < t.s; p++) {
          const i = t.at(n, c, p);
          const v = (x[i] - st.mean) * inv * (gamma ? gamma[c] : 1) + (beta ? beta[c] : 0);
          y[i] = options.relu ? relu(v) : v;
        }
      }
    }
  }
  return { y, mean, invStd };
}

export interface GroupNormBackwardRefInputs {
  dy: Values;
  x: Values;
  shape: readonly number[];
  groups: number;
  mean: Values;
  invStd: Values;
  gamma?: Values | null;
  y?: Values | null;
}

export interface AffineGradients {
  dx: Float64Array;
  dgamma: Float64Array;
  dbeta: Float64Array;
}

/**
 * GroupNorm backward with the given statistics: per (n, g) over its M = K·S values, h = dy·gamma[c],
 * dx = invStd·(h − mean(h) − x̂·mean(h·x̂)); per channel dgamma = Σ dy·x̂, dbeta = Σ dy.
 */
export function groupNormBackwardRef(
  inputs: GroupNormBackwardRefInputs,
  options: { layout?: RefLayout; relu?: boolean } = {},
): AffineGradients {
  const t = nchw(inputs.shape, options.layout);
  const G = inputs.groups;
  const K = t.c / G;
  const M = K * t.s;
  const { dy, x, mean, invStd, gamma } = inputs;
  const y = options.relu ? inputs.y : null;
  const dx = new Float64Array(t.n * t.c * t.s);
  const dgamma = new Float64Array(t.c);
  const dbeta = new Float64Array(t.c);
  for (let n = 0; n < t.n; n++) {
    for (let g = 0; g < G; g++) {
      const mu = mean[n * G + g];
      const inv = invStd[n * G + g];
      const h = new Float64Array(M);
      const xhat = new Float64Array(M);
      const hx = new Float64Array(M);
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        for (let p = 0; p < t.s; p++) {
          const i = t.at(n, c, p);
          const m = k * t.s + p;
          const dyi = masked(dy, y, i);
          xhat[m] = (x[i] - mu) * inv;
          h[m] = dyi * (gamma ? gamma[c] : 1);
          hx[m] = h[m] * xhat[m];
          dgamma[c] += dyi * xhat[m];
          dbeta[c] += dyi;
        }
      }
      const meanH = sum(h) / M;
      const meanHX = sum(hx) / M;
      for (let k = 0; k < K; k++) {
        for (let p = 0; p < t.s; p++) {
          const m = k * t.s + p;
          dx[t.at(n, g * K + k, p)] = inv * (h[m] - meanH - xhat[m] * meanHX);
        }
      }
    }
  }
  return { dx, dgamma, dbeta };
}

export interface InstanceNormRefInputs {
  x: Values;
  shape: readonly number[];
  gamma?: Values | null;
  beta?: Values | null;
  /** per channel; read, never written (the updated values are returned) */
  runningMean?: Values | null;
  runningVar?: Values | null;
  numBatchesTracked?: number;
}

export interface InstanceNormRefOptions extends LayoutRefOptions {
  /** weight of the OLD running value (default 0.9); null: cumulative average */
  momentum?: number | null;
  /** default true */
  useInputStats?: boolean;
  /** default true */
  unbiasedRunningVar?: boolean;
}

export interface InstanceNormRefResult extends StatsRef {
  /** the running statistics after the call (copies of the given ones when not updated); null without */
  runningMean: Float64Array | null;
  runningVar: Float64Array | null;
  numBatchesTracked: number;
  updated: boolean;
}

/**
 * InstanceNorm forward (PyTorch's F.instance_norm). useInputStats (default): per (n, c) μ and
 * biased σ² over the S spatial positions; with running statistics, each channel's running mean
 * and variance move towards the mean over n of the instance means and of the instance variances
 * (times S/(S − 1) when unbiased): running = old·(1 − f) + batch·f with f = 1 − momentum, or
 * 1/(numBatchesTracked + 1) for momentum null. useInputStats false: y from the running statistics
 * (eval), which are not updated; mean/invStd then hold runningMean[c] and 1/sqrt(runningVar[c] + eps).
 */
export function instanceNormRef(inputs: InstanceNormRefInputs, options: InstanceNormRefOptions = {}): InstanceNormRefResult {
  const t = nchw(inputs.shape, options.layout);
  const eps = options.eps ?? 1e-5;
  const momentum = options.momentum === undefined ? 0.9 : options.momentum;
  const useInputStats = options.useInputStats ?? true;
  const unbiased = options.unbiasedRunningVar ?? true;
  const { x, gamma, beta } = inputs;
  const runningMean = inputs.runningMean ? Float64Array.from(inputs.runningMean) : null;
  const runningVar = inputs.runningVar ? Float64Array.from(inputs.runningVar) : null;
  let numBatchesTracked = inputs.numBatchesTracked ?? 0;
  const y = new Float64Array(t.n * t.c * t.s);
  const mean = new Float64Array(t.n * t.c);
  const invStd = new Float64Array(t.n * t.c);
  const variance = new Float64Array(t.n * t.c);
  for (let n = 0; n < t.n; n++) {
    for (let c = 0; c < t.c; c++) {
      let mu: number;
      let inv: number;
      if (useInputStats) {
        const values = new Float64Array(t.s);
        for (let p = 0; p < t.s; p++) values[p] = x[t.at(n, c, p)];
        const st = meanVariance(values);
        mu = st.mean;
        inv = 1 / Math.sqrt(st.variance + eps);
        variance[n * t.c + c] = st.variance;
      } else {
        if (!runningMean || !runningVar) throw new TypeError('oracle: useInputStats false needs running statistics');
        mu = runningMean[c];
        inv = 1 / Math.sqrt(runningVar[c] + eps);
      }
      mean[n * t.c + c] = mu;
      invStd[n * t.c + c] = inv;
      for (let p = 0; p < t.s; p++) {
        const i = t.at(n, c, p);
        const v = (x[i] - mu) * inv * (gamma ? gamma[c] : 1) + (beta ? beta[c] : 0);
        y[i] = options.relu ? relu(v) : v;
      }
    }
  }
  let updated = false;
  if (useInputStats && runningMean && runningVar && t.n * t.c * t.s > 0) {
    const f = momentum === null ? 1 / (numBatchesTracked + 1) : 1 - momentum;
    const scale = unbiased ? t.s / (t.s - 1) : 1;
    for (let c = 0; c < t.c; c++) {
      const means = new Float64Array(t.n);
      const vars = new Float64Array(t.n);
      for (let n = 0; n < t.n; n++) {
        means[n] = mean[n * t.c + c];
        vars[n] = variance[n * t.c + c] * scale;
      }
      runningMean[c] = (1 - f) * runningMean[c] + f * (sum(means) / t.n);
      runningVar[c] = (1 - f) * runningVar[c] + f * (sum(vars) / t.n);
    }
    updated = true;
    numBatchesTracked++;
  }
  return { y, mean, invStd, runningMean, runningVar, numBatchesTracked, updated };
}

export interface InstanceNormBackwardRefInputs {
  dy: Values;
  x: Values;
  shape: readonly number[];
  mean: Values;
  invStd: Values;
  gamma?: Values | null;
  y?: Values | null;
}

/**
 * InstanceNorm backward with the given statistics (index n·C + c): per (n, c) over its S values,
 * training (default): dx = gamma[c]·invStd·(g − mean(g) − x̂·mean(g·x̂)); training false (the
 * statistics were constants, e.g. the running ones): dx = g·gamma[c]·invStd. Per channel
 * dgamma = Σ g·x̂, dbeta = Σ g (g = dy masked by y > 0 under ReLU).
 */
export function instanceNormBackwardRef(
  inputs: InstanceNormBackwardRefInputs,
  options: { layout?: RefLayout; relu?: boolean; training?: boolean } = {},
): AffineGradients {
  const t = nchw(inputs.shape, options.layout);
  const training = options.training ?? true;
  const { dy, x, mean, invStd, gamma } = inputs;
  const y = options.relu ? inputs.y : null;
  const dx = new Float64Array(t.n * t.c * t.s);
  const dgamma = new Float64Array(t.c);
  const dbeta = new Float64Array(t.c);
  for (let n = 0; n < t.n; n++) {
    for (let c = 0; c < t.c; c++) {
      const mu = mean[n * t.c + c];
      const inv = invStd[n * t.c + c];
      const gm = gamma ? gamma[c] : 1;
      const g = new Float64Array(t.s);
      const xhat = new Float64Array(t.s);
      const gx = new Float64Array(t.s);
      for (let p = 0; p < t.s; p++) {
        const i = t.at(n, c, p);
        g[p] = masked(dy, y, i);
        xhat[p] = (x[i] - mu) * inv;
        gx[p] = g[p] * xhat[p];
      }
      const sumG = sum(g);
      const sumGX = sum(gx);
      dgamma[c] += sumGX;
      dbeta[c] += sumG;
      for (let p = 0; p < t.s; p++) {
        dx[t.at(n, c, p)] = training ? gm * inv * (g[p] - sumG / t.s - xhat[p] * (sumGX / t.s)) : g[p] * gm * inv;
      }
    }
  }
  return { dx, dgamma, dbeta };
}
