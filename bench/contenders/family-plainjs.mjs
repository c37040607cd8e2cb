/**
 * The plain JS baseline for the family (LayerNorm, RMSNorm, GroupNorm, InstanceNorm), written as
 * contenders/plainjs.mjs writes BatchNorm: typed arrays, float64 sums (JS numbers), two passes for
 * the variance, no unrolling, no SIMD, no threads. InstanceNorm is GroupNorm with G = C (one
 * channel per group), as a programmer would reuse it.
 *
 * Outputs are the reference's names: forward y, mean, invStd (RMSNorm: y, invRms); backward dx
 * and the parameter gradients (LayerNorm, RMSNorm: dweight, dbias; GroupNorm, InstanceNorm:
 * dgamma, dbeta).
 */
import { EPS, rowsGeometry, samplesGeometry } from '../tasks.mjs';

// ------------------------------------------------------------------------------------------
// Rows × D: LayerNorm and RMSNorm

function layerNorm(rows, D, x, w, b, y, mean, invStd) {
  for (let r = 0, start = 0; r < rows; r++, start += D) {
    let s = 0;
    for (let i = start; i < start + D; i++) s += x[i];
    const m = s / D;
    let v = 0;
    for (let i = start; i < start + D; i++) v += (x[i] - m) * (x[i] - m);
    const inv = 1 / Math.sqrt(v / D + EPS);
    mean[r] = m;
    invStd[r] = inv;
    for (let i = start, j = 0; j < D; i++, j++) y[i] = (x[i] - m) * inv * w[j] + b[j];
  }
}

function layerNormBackward(rows, D, dy, x, mean, invStd, w, dx, dweight, dbias) {
  dweight.fill(0);
  dbias.fill(0);
  for (let r = 0, start = 0; r < rows; r++, start += D) {
    const m = mean[r];
    const inv = invStd[r];
    let sg = 0;
    let sgx = 0;
    for (let i = start, j = 0; j < D; i++, j++) {
      const xh = (x[i] - m) * inv;
      const g = dy[i] * w[j];
      sg += g;
      sgx += g * xh;
      dweight[j] += dy[i] * xh;
      dbias[j] += dy[i];
    }
    const a = sg / D;
    const c = sgx / D;
    for (let i = start, j = 0; j < D; i++, j++) {
      const xh = (x[i] - m) * inv;
      dx[i] = inv * (dy[i] * w[j] - a - xh * c);
    }
  }
}

function rmsNorm(rows, D, x, w, y, invRms) {
  for (let r = 0, start = 0; r < rows; r++, start += D) {
    let s = 0;
    for (let i = start; i < start + D; i++) s += x[i] * x[i];
    const inv = 1 / Math.sqrt(s / D + EPS);
    invRms[r] = inv;
    for (let i = start, j = 0; j < D; i++, j++) y[i] = x[i] * inv * w[j];
  }
}

function rmsNormBackward(rows, D, dy, x, invRms, w, dx, dweight) {
  dweight.fill(0);
  for (let r = 0, start = 0; r < rows; r++, start += D) {
    const inv = invRms[r];
    let sgx = 0;
    for (let i = start, j = 0; j < D; i++, j++) {
      const xh = x[i] * inv;
      sgx += dy[i] * w[j] * xh;
      dweight[j] += dy[i] * xh;
    }
    const c = sgx / D;
    for (let i = start, j = 0; j < D; i++, j++) dx[i] = inv * (dy[i] * w[j] - x[i] * inv * c);
  }
}

// ------------------------------------------------------------------------------------------
// N × C × S in groups: GroupNorm, and InstanceNorm as G = C

/** Channels-first: group (n, g) is the contiguous block of K·S values from (n·C + g·K)·S. */
function groupNormFirst({ n: N, channels: C, spatial: S, groups: G, k: K }, x, gamma, beta, y, mean, invStd) {
  const M = K * S;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const start = (n * C + g * K) * S;
      let s = 0;
      for (let i = start; i < start + M; i++) s += x[i];
      const m = s / M;
      let v = 0;
      for (let i = start; i < start + M; i++) v += (x[i] - m) * (x[i] - m);
      const inv = 1 / Math.sqrt(v / M + EPS);
      mean[n * G + g] = m;
      invStd[n * G + g] = inv;
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        const a = inv * gamma[c];
        const b = beta[c] - m * a;
        for (let i = start + k * S; i < start + (k + 1) * S; i++) y[i] = x[i] * a + b;
      }
    }
  }
}

function groupNormFirstBackward({ n: N, channels: C, spatial: S, groups: G, k: K }, dy, x, mean, invStd, gamma, dx, dgamma, dbeta) {
  const M = K * S;
  dgamma.fill(0);
  dbeta.fill(0);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const start = (n * C + g * K) * S;
      const m = mean[n * G + g];
      const inv = invStd[n * G + g];
      let sh = 0;
      let shx = 0;
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        let sdy = 0;
        let sdyx = 0;
        for (let i = start + k * S; i < start + (k + 1) * S; i++) {
          const xh = (x[i] - m) * inv;
          sdy += dy[i];
          sdyx += dy[i] * xh;
        }
        dbeta[c] += sdy;
        dgamma[c] += sdyx;
        sh += gamma[c] * sdy;
        shx += gamma[c] * sdyx;
      }
      const a = sh / M;
      const b = shx / M;
      for (let k = 0; k < K; k++) {
        const gc = gamma[g * K + k];
        for (let i = start + k * S; i < start + (k + 1) * S; i++) dx[i] = inv * (dy[i] * gc - a - (x[i] - m) * inv * b);
      }
    }
  }
}

/** Channels-last: x[n][s][c]; group g is channels g·K … g·K + K − 1 at every position s. */
function groupNormLast({ n: N, channels: C, spatial: S, groups: G, k: K }, x, gamma, beta, y, mean, invStd, sums, a, b) {
  const M = K * S;
  for (let n = 0; n < N; n++) {
    const base = n * S * C;
    sums.fill(0);
    for (let s = 0, i = base; s < S; s++) for (let c = 0; c < C; c++, i++) sums[(c / K) | 0] += x[i];
    for (let g = 0; g < G; g++) mean[n * G + g] = sums[g] / M;
    sums.fill(0);
    for (let s = 0, i = base; s < S; s++) {
      for (let c = 0; c < C; c++, i++) {
        const d = x[i] - mean[n * G + ((c / K) | 0)];
        sums[(c / K) | 0] += d * d;
      }
    }
    for (let g = 0; g < G; g++) invStd[n * G + g] = 1 / Math.sqrt(sums[g] / M + EPS);
    for (let c = 0; c < C; c++) {
      const g = n * G + ((c / K) | 0);
      a[c] = invStd[g] * gamma[c];
      b[c] = beta[c] - mean[g] * a[c];
    }
    for (let s = 0, i = base; s < S; s++) for (let c = 0; c < C; c++, i++) y[i] = x[i] * a[c] + b[c];
  }
}

function groupNormLastBackward({ n: N, channels: C, spatial: S, groups: G, k: K }, dy, x, mean, invStd, gamma, dx, dgamma, dbeta, sdy, sdyx) {
  const M = K * S;
  dgamma.fill(0);
  dbeta.fill(0);
  for (let n = 0; n < N; n++) {
    const base = n * S * C;
    sdy.fill(0);
    sdyx.fill(0);
    for (let s = 0, i = base; s < S; s++) {
      for (let c = 0; c < C; c++, i++) {
        const g = n * G + ((c / K) | 0);
        sdy[c] += dy[i];
        sdyx[c] += dy[i] * (x[i] - mean[g]) * invStd[g];
      }
    }
    const sh = new Float64Array(G);
    const shx = new Float64Array(G);
    for (let c = 0; c < C; c++) {
      dbeta[c] += sdy[c];
      dgamma[c] += sdyx[c];
      sh[(c / K) | 0] += gamma[c] * sdy[c];
      shx[(c / K) | 0] += gamma[c] * sdyx[c];
    }
    for (let s = 0, i = base; s < S; s++) {
      for (let c = 0; c < C; c++, i++) {
        const gi = (c / K) | 0;
        const m = mean[n * G + gi];
        const inv = invStd[n * G + gi];
        dx[i] = inv * (dy[i] * gamma[c] - sh[gi] / M - (x[i] - m) * inv * (shx[gi] / M));
      }
    }
  }
}

// ------------------------------------------------------------------------------------------

/** The runner of a family task (sync). */
export function familyPlainRunner(task) {
  const { data, op } = task;
  const c = task.case;
  const Type = data.x.constructor;
  const n = data.x.length;
  let run;
  let outputs;
  if (c.norm === 'layernorm' || c.norm === 'rmsnorm') {
    const { rows, size: D } = rowsGeometry(c);
    if (c.norm === 'layernorm' && op === 'forward') {
      const y = new Type(n);
      const mean = new Float64Array(rows);
      const invStd = new Float64Array(rows);
      run = () => layerNorm(rows, D, data.x, data.weight, data.bias, y, mean, invStd);
      outputs = () => ({ y, mean, invStd });
    } else if (c.norm === 'layernorm') {
      const dx = new Type(n);
      const dweight = new Float64Array(D);
      const dbias = new Float64Array(D);
      run = () => layerNormBackward(rows, D, data.dy, data.x, data.mean, data.invStd, data.weight, dx, dweight, dbias);
      outputs = () => ({ dx, dweight, dbias });
    } else if (op === 'forward') {
      const y = new Type(n);
      const invRms = new Float64Array(rows);
      run = () => rmsNorm(rows, D, data.x, data.weight, y, invRms);
      outputs = () => ({ y, invRms });
    } else {
      const dx = new Type(n);
      const dweight = new Float64Array(D);
      run = () => rmsNormBackward(rows, D, data.dy, data.x, data.invRms, data.weight, dx, dweight);
      outputs = () => ({ dx, dweight });
    }
  } else {
    const g = samplesGeometry(c);
    const last = c.layout === 'channels-last';
    if (op === 'forward') {
      const y = new Type(n);
      const mean = new Float64Array(g.n * g.groups);
      const invStd = new Float64Array(g.n * g.groups);
      if (last) {
        const sums = new Float64Array(g.groups);
        const a = new Float64Array(g.channels);
        const b = new Float64Array(g.channels);
        run = () => groupNormLast(g, data.x, data.gamma, data.beta, y, mean, invStd, sums, a, b);
      } else {
        run = () => groupNormFirst(g, data.x, data.gamma, data.beta, y, mean, invStd);
      }
      outputs = () => ({ y, mean, invStd });
    } else {
      const dx = new Type(n);
      const dgamma = new Float64Array(g.channels);
      const dbeta = new Float64Array(g.channels);
      if (last) {
        const sdy = new Float64Array(g.channels);
        const sdyx = new Float64Array(g.channels);
        run = () => groupNormLastBackward(g, data.dy, data.x, data.mean, data.invStd, data.gamma, dx, dgamma, dbeta, sdy, sdyx);
      } else {
        run = () => groupNormFirstBackward(g, data.dy, data.x, data.mean, data.invStd, data.gamma, dx, dgamma, dbeta);
      }
      outputs = () => ({ dx, dgamma, dbeta });
    }
  }
  return { async: false, run, outputs };
}

/** The formulation's name per norm (what the notes show). */
export function familyPlainName(c) {
  if (c.norm === 'instancenorm') return "GroupNorm's loops with G = C, float64 sums";
  return c.norm === 'rmsnorm' ? 'one pass for Σx², float64 sums' : 'two-pass loops, float64 sums';
}
