/**
 * The `js` backend: any descriptor (lib/core/descriptor.ts) run in float64 JavaScript,
 * available everywhere. It computes what the per-op references (lib/reference.ts) compute, with
 * the same operations in the same order, so for BatchNorm its results are the reference's bit for
 * bit; the conformance suite checks it against them like any other backend.
 *
 * Element (n, o, s, j) of x[samples][outer][stats][inner] is at ((n·outer + o)·stats + s)·inner + j;
 * statistic (n, s) at n·stats + s; γ/β at (s mod affineGroups)·affineSize + ⌊j / affineRun⌋ mod affineSize.
 */
import type { Backend, BackendProvider } from '../backend.js';
import { Flag, Phase, Scalar, Slot } from '../core/abi.js';
import type { FloatArray, Norm } from '../core/descriptor.js';

/** ReLU that lets NaN through, as IEEE arithmetic and PyTorch do. */
function relu(v: number): number {
  return v < 0 ? 0 : v;
}

/**
 * The output of a forward element: v (float64) then, with flag residual, v rounded to the dtype
 * plus z in the dtype (README "BatchNorm variants": y = act(BN(x) + z)), then the ReLU.
 */
function outputOf(v: number, z: FloatArray | null, i: number, useRelu: boolean, round: (v: number) => number): number {
  const sum = z ? round(round(v) + z[i]) : v;
  return useRelu ? relu(sum) : sum;
}
const identity = (v: number): number => v;

/** The geometry of a descriptor and the walk over one statistic's elements. */
class Walk {
  readonly samples: number;
  readonly outer: number;
  readonly stats: number;
  readonly inner: number;
  readonly groups: number;
  readonly size: number;
  readonly run: number;
  /** values per statistic */
  readonly count: number;
  /**
   * A statistic's elements in memory order as `runs` runs of `length` elements `step` apart, run
   * r from first(k) + r·runStride: `outer` runs of `inner` where inner > 1, else one run of
   * `outer` elements `stride` apart (NC data: a loop set up per element cost more than its
   * arithmetic). The same elements in the same order either way.
   */
  readonly runs: number;
  readonly length: number;
  readonly step: number;
  readonly runStride: number;
  constructor(s: Float64Array) {
    this.samples = s[Scalar.samples];
    this.outer = s[Scalar.outer];
    this.stats = s[Scalar.stats];
    this.inner = s[Scalar.inner];
    this.groups = s[Scalar.affineGroups];
    this.size = s[Scalar.affineSize];
    this.run = s[Scalar.affineRun];
    this.count = this.outer * this.inner;
    const strided = this.inner === 1;
    this.runs = strided ? 1 : this.outer;
    this.length = strided ? this.outer : this.inner;
    this.step = strided ? this.stride : 1;
    this.runStride = strided ? 0 : this.stride;
  }
  /** elements between one `outer` step and the next of a statistic */
  get stride(): number {
    return this.stats * this.inner;
  }
  /**
   * The index of statistic k = n·stats + s's first element; its elements are, in memory order,
   * first(k) + o·stride + j for o < outer, j < inner (written as plain loops at each use: a
   * callback per element costs more than the arithmetic at small sizes).
   */
  first(k: number): number {
    const n = Math.floor(k / this.stats);
    return (n * this.outer * this.stats + (k - n * this.stats)) * this.inner;
  }
  /** The first γ/β index of statistic k's elements; element j of a run adds ⌊j / run⌋ mod size. */
  group(k: number): number {
    return ((k % this.stats) % this.groups) * this.size;
  }
  /** Whether γ/β are one per statistic (BatchNorm, InstanceNorm): backward's per-statistic form. */
  get affinePerStatistic(): boolean {
    return this.size === 1;
  }
}

/**
 * mean and biased variance of statistic k (with rms: 0 and the mean of squares), in float64: two passes with the residual correction
 * of Chan, Golub and LeVeque (lib/reference.ts's channelStats).
 */
function statistic(x: FloatArray, w: Walk, k: number, rms: boolean): { mean: number; variance: number } {
  const { runs, length, step, runStride } = w;
  const first = w.first(k);
  if (rms) {
    let squares = 0;
    for (let r = 0, start = first; r < runs; r++, start += runStride) {
      for (let c = 0, i = start; c < length; c++, i += step) squares += x[i] * x[i];
    }
    return { mean: 0, variance: squares / w.count };
  }
  let sum = 0;
  for (let r = 0, start = first; r < runs; r++, start += runStride) {
    for (let c = 0, i = start; c < length; c++, i += step) sum += x[i];
  }
  let mean = sum / w.count;
  let residual = 0;
  let squares = 0;
  for (let r = 0, start = first; r < runs; r++, start += runStride) {
    for (let c = 0, i = start; c < length; c++, i += step) {
      const d = x[i] - mean;
      residual += d;
      squares += d * d;
    }
  }
  if (Number.isFinite(residual)) {
    mean += residual / w.count;
    squares -= residual * (residual / w.count);
  }
  return { mean, variance: (squares < 0 ? 0 : squares) / w.count };
}

/** The running update per channel s from the batch statistics averaged over samples. */
function updateRunning(n: Norm, w: Walk, batchMean: ArrayLike<number>, batchVar: ArrayLike<number>): boolean {
  const s = n.scalars;
  const runningMean = n.tensors[Slot.runningMean]!;
  const runningVar = n.tensors[Slot.runningVar]!;
  const factor = s[Scalar.factor];
  const varScale = s[Scalar.varScale];
  let mean = batchMean;
  let variance = batchVar;
  if (w.samples !== 1) {
    const m = new Float64Array(w.stats);
    const v = new Float64Array(w.stats);
    for (let k = 0; k < w.samples * w.stats; k++) {
      m[k % w.stats] += batchMean[k] / w.samples;
      v[k % w.stats] += batchVar[k] / w.samples;
    }
    mean = m;
    variance = v;
  }
  if (s[Scalar.flags] & Flag.skipNonFinite) {
    for (let c = 0; c < w.stats; c++) {
      if (!Number.isFinite(mean[c]) || !Number.isFinite(variance[c] * varScale)) return false;
    }
  }
  for (let c = 0; c < w.stats; c++) {
    runningMean[c] = (1 - factor) * runningMean[c] + factor * mean[c];
    runningVar[c] = (1 - factor) * runningVar[c] + factor * variance[c] * varScale;
  }
  return true;
}

function clip(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v; // NaN stays NaN
}

/**
 * Flag renorm, channel c (README "BatchNorm variants"): r and d from the batch statistics and the
 * running ones before the update, written rounded to the dtype, and γ' = γ·r, β' = β + γ·d as
 * values of the dtype (β itself where d is 0), what the kernels compute (forward.cpp).
 */
function renormChannel(n: Norm, c: number, mean: number, variance: number): { scale: number; shift: number } {
  const t = n.tensors;
  const s = n.scalars;
  const eps = s[Scalar.eps];
  const rmax = s[Scalar.rmax];
  const dmax = s[Scalar.dmax];
  const rOut = t[Slot.r]!, dOut = t[Slot.d]!;
  const gamma = t[Slot.gamma], beta = t[Slot.beta];
  const sigma = Math.sqrt(t[Slot.runningVar]![c] + eps);
  rOut[c] = clip(Math.sqrt(variance + eps) / sigma, 1 / rmax, rmax);
  dOut[c] = clip((mean - t[Slot.runningMean]![c]) / sigma, -dmax, dmax);
  const r = rOut[c], d = dOut[c];
  const round = rOut instanceof Float32Array ? Math.fround : (v: number): number => v;
  const g = gamma ? gamma[c] : 1;
  const b = beta ? beta[c] : 0;
  return { scale: round(g * r), shift: d === 0 ? b : round(b + g * d) };
}

/**
 * y[i] = (x[i] − mu)·factor + shift, plus the residual z[i] when given (outputOf), then the ReLU
 * when asked, over statistic k's elements (Walk's runs).
 */
function applyRuns(
  w: Walk,
  k: number,
  x: FloatArray,
  y: FloatArray,
  mu: number,
  factor: number,
  shift: number,
  useRelu: boolean,
  z: FloatArray | null,
  round: (v: number) => number,
): void {
  const { runs, length, step, runStride } = w;
  for (let r = 0, start = w.first(k); r < runs; r++, start += runStride) {
    if (z) {
      for (let c = 0, i = start; c < length; c++, i += step) y[i] = outputOf((x[i] - mu) * factor + shift, z, i, useRelu, round);
      continue;
    }
    for (let c = 0, i = start; c < length; c++, i += step) {
      const v = (x[i] - mu) * factor + shift;
      y[i] = useRelu ? relu(v) : v;
    }
  }
}

function train(n: Norm, w: Walk): number {
  const t = n.tensors;
  const x = t[Slot.x]!, y = t[Slot.y]!, mean = t[Slot.mean]!, invStd = t[Slot.invStd]!;
  const gamma = t[Slot.gamma], beta = t[Slot.beta];
  const eps = n.scalars[Scalar.eps];
  const useRelu = (n.scalars[Scalar.flags] & Flag.relu) !== 0;
  const rms = (n.scalars[Scalar.flags] & Flag.rms) !== 0;
  const z = n.scalars[Scalar.flags] & Flag.residual ? t[Slot.residual]! : null;
  const round = y instanceof Float32Array ? Math.fround : identity;
  const statistics = w.samples * w.stats;
  // Batch Renormalization (flag renorm: one sample, γ/β one per statistic, checked by the façade).
  const renorm = (n.scalars[Scalar.flags] & Flag.renorm) !== 0;
  // The running update uses these float64 statistics, not the ones rounded into mean.
  const batchMean = new Float64Array(statistics);
  const batchVar = new Float64Array(statistics);
  for (let k = 0; k < statistics; k++) {
    const st = statistic(x, w, k, rms);
    const inv = 1 / Math.sqrt(st.variance + eps);
    mean[k] = st.mean;
    invStd[k] = inv;
    batchMean[k] = st.mean;
    batchVar[k] = st.variance;
    const first = w.first(k);
    const mu = st.mean;
    if (renorm) {
      const { scale, shift } = renormChannel(n, k, mu, st.variance);
      applyRuns(w, k, x, y, mu, scale * inv, shift, useRelu, z, round);
      continue;
    }
    const group = w.group(k);
    if (w.affinePerStatistic) {
      // γ/β one per statistic: the factor and shift of the general form below, hoisted
      const factor = (gamma ? gamma[group] : 1) * inv;
      const shift = beta ? beta[group] : 0;
      applyRuns(w, k, x, y, mu, factor, shift, useRelu, z, round);
      continue;
    }
    const { run, size } = w;
    for (let o = 0, start = first; o < w.outer; o++, start += w.stride) {
      for (let j = 0; j < w.inner; j++) {
        const a = group + (Math.floor(j / run) % size);
        const i = start + j;
        y[i] = outputOf((x[i] - mu) * ((gamma ? gamma[a] : 1) * inv) + (beta ? beta[a] : 0), z, i, useRelu, round);
      }
    }
  }
  if (!t[Slot.runningMean] || w.count * statistics === 0) return 0;
  return updateRunning(n, w, batchMean, batchVar) ? 1 : 0;
}

function infer(n: Norm, w: Walk): number {
  const t = n.tensors;
  const x = t[Slot.x]!, y = t[Slot.y]!, runningMean = t[Slot.runningMean]!, runningVar = t[Slot.runningVar]!;
  const gamma = t[Slot.gamma], beta = t[Slot.beta];
  const eps = n.scalars[Scalar.eps];
  const useRelu = (n.scalars[Scalar.flags] & Flag.relu) !== 0;
  const z = n.scalars[Scalar.flags] & Flag.residual ? t[Slot.residual]! : null;
  const round = y instanceof Float32Array ? Math.fround : identity;
  for (let k = 0; k < w.samples * w.stats; k++) {
    const c = k % w.stats;
    const m = runningMean[c];
    const root = Math.sqrt(runningVar[c] + eps);
    const group = w.group(k);
    if (w.affinePerStatistic) {
      const factor = (gamma ? gamma[group] : 1) / root;
      const shift = beta ? beta[group] : 0;
      applyRuns(w, k, x, y, m, factor, shift, useRelu, z, round);
      continue;
    }
    const { run, size } = w;
    for (let o = 0, start = w.first(k); o < w.outer; o++, start += w.stride) {
      for (let j = 0; j < w.inner; j++) {
        const a = group + (Math.floor(j / run) % size);
        const i = start + j;
        y[i] = outputOf((x[i] - m) * ((gamma ? gamma[a] : 1) / root) + (beta ? beta[a] : 0), z, i, useRelu, round);
      }
    }
  }
  return 0;
}

/**
 * With x̂ = (x − mean)·invStd, g = dy (masked by y > 0 under the fused ReLU) and h = g·γ:
 *   dbeta = Σg, dgamma = Σg·x̂ per γ/β entry;
 *   training: dx = invStd/M · (M·h − Σh − x̂·Σh·x̂) over the statistic's elements (rms: mean 0 and no Σh), written
 *     γ·invStd/M · (M·g − Σg − x̂·Σg·x̂) where γ is one per statistic (the reference's form);
 *   eval: dx = g·γ·invStd.
 * Flag sumsOnly: dgamma and dbeta alone (no dx); flag givenSums: givenSumsBackward. Flag residual:
 * dz = g too, written beside dx (dz may be dy: g is read before it is written).
 */
/**
 * Backward from given sums (flag givenSums; BatchNorm-shaped, training): dgamma, dbeta hold Σg·x̂
 * and Σg over a batch of M = sumsCount values per channel (every worker's shard, SyncBatchNorm);
 * only dx = γ·invStd/M · (M·g − Σg − x̂·Σg·x̂) is written, in backward's per-statistic form.
 */
function givenSumsBackward(n: Norm, w: Walk): number {
  const t = n.tensors;
  const dy = t[Slot.dy]!, x = t[Slot.x]!, mean = t[Slot.mean]!, invStd = t[Slot.invStd]!, dx = t[Slot.dx]!;
  const sumsGX = t[Slot.dgamma]!, sumsG = t[Slot.dbeta]!;
  const gamma = t[Slot.gamma];
  const y = n.scalars[Scalar.flags] & Flag.relu ? t[Slot.y] : null;
  const m = n.scalars[Scalar.sumsCount];
  for (let k = 0; k < w.stats; k++) {
    const mu = mean[k], inv = invStd[k], sumG = sumsG[k], sumGX = sumsGX[k];
    const c = ((gamma ? gamma[k] : 1) * inv) / m;
    for (let o = 0, start = w.first(k); o < w.outer; o++, start += w.stride) {
      for (let i = start; i < start + w.inner; i++) {
        const g = y && !(y[i] > 0) ? 0 : dy[i];
        const xhat = (x[i] - mu) * inv;
        dx[i] = c * (m * g - sumG - xhat * sumGX);
      }
    }
  }
  return 0;
}

function backward(n: Norm, w: Walk): number {
  if (n.scalars[Scalar.flags] & Flag.givenSums) return givenSumsBackward(n, w);
  const t = n.tensors;
  const dy = t[Slot.dy]!, x = t[Slot.x]!, mean = t[Slot.mean]!, invStd = t[Slot.invStd]!;
  const dgamma = t[Slot.dgamma]!, dbeta = t[Slot.dbeta]!;
  const gamma = t[Slot.gamma];
  const flags = n.scalars[Scalar.flags];
  const dx = flags & Flag.sumsOnly ? null : t[Slot.dx]!; // sumsOnly: dgamma and dbeta alone
  const y = flags & Flag.relu ? t[Slot.y] : null;
  const dz = flags & Flag.residual ? t[Slot.dz]! : null;
  const training = (flags & Flag.training) !== 0;
  const rms = (flags & Flag.rms) !== 0;
  const perStatistic = w.affinePerStatistic && !rms;
  const m = w.count;
  const grad = (i: number): number => (y && !(y[i] > 0) ? 0 : dy[i]);
  const gammaOf = (a: number): number => (gamma ? gamma[a] : 1);
  // dgamma, dbeta summed in float64 and rounded once at the end.
  const affine = w.groups * w.size;
  const sumDgamma = new Float64Array(affine);
  const sumDbeta = new Float64Array(affine);
  for (let k = 0; k < w.samples * w.stats; k++) {
    const mu = rms ? 0 : mean[k];
    const inv = invStd[k];
    let sumG = 0;
    let sumGX = 0;
    let sumH = 0;
    let sumHX = 0;
    const first = w.first(k);
    const group = w.group(k);
    if (perStatistic) {
      const { runs, length, step, runStride } = w;
      for (let r = 0, start = first; r < runs; r++, start += runStride) {
        for (let c = 0, i = start; c < length; c++, i += step) {
          const g = grad(i);
          sumG += g;
          sumGX += g * (x[i] - mu) * inv;
        }
      }
      const a = (k % w.stats) % w.groups;
      sumDbeta[a] += sumG;
      sumDgamma[a] += sumGX;
      const gm = gammaOf(a);
      if (dx) {
        for (let r = 0, start = first; r < runs; r++, start += runStride) {
          for (let c = 0, i = start; c < length; c++, i += step) {
            const xhat = (x[i] - mu) * inv;
            const g = grad(i); // read before dz and dx are written (either may be dy)
            if (dz) dz[i] = g;
            dx[i] = training ? ((gm * inv) / m) * (m * g - sumG - xhat * sumGX) : g * gm * inv;
          }
        }
      }
      continue;
    }
    const { run, size } = w;
    for (let o = 0, start = first; o < w.outer; o++, start += w.stride) {
      for (let j = 0; j < w.inner; j++) {
        const a = group + (Math.floor(j / run) % size);
        const i = start + j;
        const g = grad(i);
        const xhat = (x[i] - mu) * inv;
        sumDbeta[a] += g;
        sumDgamma[a] += g * xhat;
        sumH += g * gammaOf(a);
        sumHX += g * gammaOf(a) * xhat;
      }
    }
    if (dx) {
      for (let o = 0, start = first; o < w.outer; o++, start += w.stride) {
        for (let j = 0; j < w.inner; j++) {
          const a = group + (Math.floor(j / run) % size);
          const i = start + j;
          const xhat = (x[i] - mu) * inv;
          const g = grad(i);
          if (dz) dz[i] = g;
          const h = g * gammaOf(a);
          dx[i] = training ? (inv / m) * (m * h - (rms ? 0 : sumH) - xhat * sumHX) : h * inv;
        }
      }
    }
  }
  for (let a = 0; a < affine; a++) {
    dgamma[a] = sumDgamma[a];
    dbeta[a] = sumDbeta[a];
  }
  return 0;
}

function moments(n: Norm, w: Walk): number {
  const x = n.tensors[Slot.x]!, mean = n.tensors[Slot.mean]!, variance = n.tensors[Slot.variance]!;
  const rms = (n.scalars[Scalar.flags] & Flag.rms) !== 0;
  for (let k = 0; k < w.samples * w.stats; k++) {
    const st = statistic(x, w, k, rms);
    mean[k] = st.mean;
    variance[k] = st.variance;
  }
  return 0;
}

/** Runs a descriptor the façade has checked; returns what the C ABI returns. */
export function runJs(n: Norm): number {
  const w = new Walk(n.scalars);
  switch (n.scalars[Scalar.phase]) {
    case Phase.train:
      return train(n, w);
    case Phase.infer:
      return infer(n, w);
    case Phase.backward:
      return backward(n, w);
    case Phase.moments:
      return moments(n, w);
    case Phase.update:
      return updateRunning(n, w, n.tensors[Slot.mean]!, n.tensors[Slot.variance]!) ? 1 : 0;
    default:
      throw new Error(`internal error: no phase ${n.scalars[Scalar.phase]}`);
  }
}

export const jsBackend: Backend = {
  name: 'js',
  run: runJs,
  details: () => ({ simd: 'none', threads: 1 }),
};

export const jsProvider: BackendProvider = {
  name: 'js',
  priority: 10,
  loadSync: () => jsBackend,
  load: async () => jsBackend,
};
