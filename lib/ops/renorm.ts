/**
 * Batch Renormalization (Ioffe 2017), README "BatchNorm variants". Per channel, with the batch
 * statistics μ_B, σ²_B and the running ones before this step:
 *   σ_B = sqrt(σ²_B + eps), σ = sqrt(runningVar + eps),
 *   r = clip(σ_B/σ, 1/rmax, rmax), d = clip((μ_B − runningMean)/σ, −dmax, dmax),
 *   y = γ·((x − μ_B)/σ_B·r + d) + β = (γ·r)·(x − μ_B)·invStd + (β + γ·d).
 * The forward is the `train` phase's flag renorm (native/abi/table.mjs): every backend computes r
 * and d between the statistics and the normalisation, in the same pass over x, and normalises
 * with γ' = γ·r and β' = β + γ·d (rounded to x's type), saving μ_B, invStd and updating the running
 * statistics exactly as BatchNorm does; r and d come back rounded to x's type.
 *
 * Backward with r, d constants: dx is BatchNorm's dx with γ·r in place of γ; with the kernel's
 * dgamma' = Σdy·x̂ and dbeta = Σdy: dgamma = Σdy·(x̂·r + d) = r·dgamma' + d·dbeta.
 */
import type { FloatArray } from '../core/descriptor.js';
import { typedArrayLength } from '../intrinsics.js';
import { allocateFloat, type DType } from '../validate.js';

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
