/**
 * The BatchNorm variants (README "BatchNorm variants") on every backend (native, wasm, js) like
 * test/conformance/family.test.ts — a backend that cannot load is a loud skip on a developer's
 * machine and a failure in CI; SIMDNORM_TEST_BACKENDS=js,native runs only those — and the float64
 * oracle's renorm backward against central finite differences of its forward (r, d constants), and
 * its residual backward (dx, dz, dγ, dβ) likewise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { channelStats } from '../../lib/reference.js';
import { geometryOf, renormBackwardRef, type RefLayout } from '../../lib/reference/variants.js';
import { Random } from '../../lib/random.js';
import { residualFiniteDifferences } from './residual-cases.js';
import { variantCases } from './variants-cases.js';

await api.ready();
const status = api.backends();
const cases = variantCases();
const only = process.env.SIMDNORM_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);

/** y = γ·((x − μ(x))/σ_B(x)·r + d) + β with r, d held constant. */
function renormForward(x: Float64Array, dims: number[], layout: RefLayout, gamma: Float64Array, beta: Float64Array, r: Float64Array, d: Float64Array, eps: number): Float64Array {
  const g = geometryOf(dims, layout);
  const y = new Float64Array(x.length);
  for (let c = 0; c < g.channels; c++) {
    const { mean, variance } = channelStats(x, g, c);
    const sigmaB = Math.sqrt(variance + eps);
    for (let o = 0; o < g.outer; o++) {
      for (let i = 0; i < g.inner; i++) {
        const k = (o * g.channels + c) * g.inner + i;
        y[k] = gamma[c] * (((x[k] - mean) / sigmaB) * r[c] + d[c]) + beta[c];
      }
    }
  }
  return y;
}

describe('renorm oracle: backward vs central finite differences (float64, r and d constant)', () => {
  for (const layout of ['channels-first', 'channels-last'] as const) {
    it(layout, () => {
      const dims = layout === 'channels-first' ? [3, 2, 4] : [3, 4, 2];
      const rnd = new Random(7);
      const n = 24;
      const x = rnd.fill(new Float64Array(n), 1.5, 0.4);
      const w = rnd.fill(new Float64Array(n)); // loss = Σ w·y, so dy = w
      const gamma = Float64Array.from([1.3, -0.7]);
      const beta = Float64Array.from([0.2, -0.1]);
      const r = Float64Array.from([1.25, 0.8]);
      const d = Float64Array.from([0.3, -0.45]);
      const eps = 1e-3;
      const loss = (xx: Float64Array, gg: Float64Array, bb: Float64Array) => renormForward(xx, dims, layout, gg, bb, r, d, eps).reduce((s, v, i) => s + v * w[i], 0);
      const g = geometryOf(dims, layout);
      const mean = new Float64Array(2), invStd = new Float64Array(2);
      for (let c = 0; c < 2; c++) {
        const s = channelStats(x, g, c);
        mean[c] = s.mean;
        invStd[c] = 1 / Math.sqrt(s.variance + eps);
      }
      const got = renormBackwardRef({ dy: w, x, dims, mean, invStd, gamma, r, d }, layout);
      const h = 1e-6;
      const central = (f: (delta: number) => number) => (f(h) - f(-h)) / (2 * h);
      for (let k = 0; k < n; k++) {
        const fd = central((delta) => {
          const xx = x.slice();
          xx[k] += delta;
          return loss(xx, gamma, beta);
        });
        expect(Math.abs(got.dx[k] - fd)).toBeLessThan(1e-7);
      }
      for (let c = 0; c < 2; c++) {
        const fdGamma = central((delta) => {
          const gg = gamma.slice();
          gg[c] += delta;
          return loss(x, gg, beta);
        });
        const fdBeta = central((delta) => {
          const bb = beta.slice();
          bb[c] += delta;
          return loss(x, gamma, bb);
        });
        expect(Math.abs(got.dgamma[c] - fdGamma)).toBeLessThan(1e-7);
        expect(Math.abs(got.dbeta[c] - fdBeta)).toBeLessThan(1e-7);
      }
    });
  }
});

describe('residual oracle: backward (dx, dz, dgamma, dbeta) vs central finite differences (float64)', () => {
  for (const layout of ['channels-first', 'channels-last'] as const) {
    for (const relu of [false, true]) it(`${layout}${relu ? ' relu' : ''}`, () => residualFiniteDifferences(layout, relu));
  }
});

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = only && !only.includes(name)
    ? `not in SIMDNORM_TEST_BACKENDS=${only.join(',')}`
    : !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`variants: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} variants suite: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const c of cases) it(c.name, () => c.run(api), 60_000);
  });
}
