/**
 * Batch Renormalization (Ioffe 2017) as a composition of BatchNorm's descriptor phases, with no
 * kernel of its own (README "BatchNorm variants"). Per channel, with the batch statistics μ_B, σ²_B
 * (the `moments` phase) and the running ones before this step:
 *   σ_B = sqrt(σ²_B + eps), σ = sqrt(runningVar + eps),
 *   r = clip(σ_B/σ, 1/rmax, rmax), d = clip((μ_B − runningMean)/σ, −dmax, dmax),
 *   y = γ·((x − μ_B)/σ_B·r + d) + β = (γ·r)·(x − μ_B)·invStd + (β + γ·d),
 * so the `train` phase with γ' = γ·r and β' = β + γ·d computes y (and saves μ_B, invStd and updates
 * the running statistics exactly as BatchNorm does). r and d are computed here in float64 from
 * values rounded to x's type (what the caller gets back and hands to backward).
 *
 * Backward with r, d constants: dx is BatchNorm's dx with γ·r in place of γ; with the kernel's
 * dgamma' = Σdy·x̂ and dbeta = Σdy: dgamma = Σdy·(x̂·r + d) = r·dgamma' + d·dbeta.
 */
import type { Geometry } from '../backend.js';
import type { FloatArray } from '../core/descriptor.js';
import { typedArrayLength } from '../intrinsics.js';
import { allocateFloat, type DType, type RenormClip } from '../validate.js';

/** γ' and β' for the train phase (null: absent, as the caller's), and the r and d they used. */
export interface RenormCoefficients {
  gamma: FloatArray | null;
  beta: FloatArray | null;
  r: FloatArray;
  d: FloatArray;
}

function clip(v: number, lo: number, hi: number): number {
  // NaN stays NaN (a channel with NaN statistics normalises to NaN, as BatchNorm's would)
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * μ_B to the precision d needs. The moments phase returns μ_B rounded to x's type: off by up to
 * half an ulp of |μ_B|, which d divides by σ. Where that could exceed a 64th of the dtype's
 * tolerance (float32: |μ_B| above ~20σ; float64: above ~10⁴σ) the channel's residual Σ(x − μ)/M
 * is summed here in float64 (one pass over that channel in JavaScript) and added, as the
 * reference's corrected two-pass mean does.
 */
function preciseMean(x: FloatArray, g: Geometry, c: number, mean: number, sigma: number, dtype: DType): number {
  if (!Number.isFinite(mean) || !(sigma > 0)) return mean;
  const unit = dtype === 'float32' ? 2 ** -24 : 2 ** -53;
  const tolerance = dtype === 'float32' ? 1e-5 : 1e-11;
  if (Math.abs(mean) * unit <= (sigma * tolerance) / 64) return mean;
  let residual = 0;
  for (let o = 0; o < g.outer; o++) {
    const start = (o * g.channels + c) * g.inner;
    for (let i = 0; i < g.inner; i++) residual += x[start + i] - mean;
  }
  const m = g.outer * g.inner;
  return Number.isFinite(residual) ? mean + residual / m : mean;
}

/**
 * r, d and the coefficients γ', β' from the batch statistics (`batchMean`, biased `batchVar`, of
 * x's type, from the moments phase) and the running statistics as they are before the update.
 * Where every r is 1 and γ is absent, γ' is absent; where every d is 0, β' is β: with rmax = 1,
 * dmax = 0 the train phase then runs exactly BatchNorm's descriptor (bit for bit on every backend).
 */
export function renormCoefficients(
  x: FloatArray,
  g: Geometry,
  dtype: DType,
  batchMean: FloatArray,
  batchVar: FloatArray,
  runningMean: FloatArray,
  runningVar: FloatArray,
  gamma: FloatArray | null,
  beta: FloatArray | null,
  eps: number,
  clipTo: RenormClip,
  rOut: FloatArray,
  dOut: FloatArray,
): RenormCoefficients {
  const C = typedArrayLength(runningMean);
  const { rmax, dmax } = clipTo;
  let allOne = true;
  let allZero = true;
  for (let c = 0; c < C; c++) {
    const sigma = Math.sqrt(runningVar[c] + eps);
    const sigmaB = Math.sqrt(batchVar[c] + eps);
    const mu = preciseMean(x, g, c, batchMean[c], sigma, dtype);
    rOut[c] = clip(sigmaB / sigma, 1 / rmax, rmax);
    dOut[c] = clip((mu - runningMean[c]) / sigma, -dmax, dmax);
    if (!Object.is(rOut[c], 1)) allOne = false;
    if (!Object.is(dOut[c], 0) && !Object.is(dOut[c], -0)) allZero = false;
  }
  let gammaPrime: FloatArray | null = gamma;
  if (!(allOne && gamma === null)) {
    gammaPrime = allocateFloat(dtype, C, 'renorm scale', 'runningMean');
    for (let c = 0; c < C; c++) gammaPrime[c] = (gamma ? gamma[c] : 1) * rOut[c];
  }
  let betaPrime: FloatArray | null = beta;
  if (!allZero) {
    betaPrime = allocateFloat(dtype, C, 'renorm shift', 'runningMean');
    // a channel whose d is 0 keeps β as it is (γ·0 is NaN for an infinite γ, and β + 0 turns −0 into +0)
    for (let c = 0; c < C; c++) {
      const b = beta ? beta[c] : 0;
      betaPrime[c] = dOut[c] === 0 ? b : b + (gamma ? gamma[c] : 1) * dOut[c];
    }
  }
  return { gamma: gammaPrime, beta: betaPrime, r: rOut, d: dOut };
}

/** γ·r for backward's dx (absent when γ is absent and every r is 1). */
export function renormScale(gamma: FloatArray | null, r: FloatArray, dtype: DType): FloatArray | null {
  const C = typedArrayLength(r);
  let allOne = true;
  for (let c = 0; c < C; c++) if (!Object.is(r[c], 1)) allOne = false;
  if (allOne && gamma === null) return null;
  const scale = allocateFloat(dtype, C, 'renorm scale', 'r');
  for (let c = 0; c < C; c++) scale[c] = (gamma ? gamma[c] : 1) * r[c];
  return scale;
}

/**
 * Backward's dgamma from the kernel's Σdy·x̂ (in `dgamma`, rewritten in place) and Σdy:
 * dgamma = r·Σdy·x̂ + d·Σdy (a channel with d = 0: r·Σdy·x̂, so an infinite Σdy does not make NaN).
 */
export function renormDgamma(dgamma: FloatArray, dbeta: FloatArray, r: FloatArray, d: FloatArray): void {
  const C = typedArrayLength(dgamma);
  for (let c = 0; c < C; c++) {
    const v = r[c] * dgamma[c];
    dgamma[c] = d[c] === 0 ? v : v + d[c] * dbeta[c];
  }
}
