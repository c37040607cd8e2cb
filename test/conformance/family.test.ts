/**
 * The normalization family's suite (test/conformance/family-cases.ts): every case against every
 * backend (native, wasm, js) like test/conformance/conformance.test.ts — a backend that cannot
 * load is a loud skip on a developer's machine and a failure in CI — and the float64 oracle's
 * backward (lib/reference/family.ts) against central finite differences of its forward.
 *
 * SIMDNORM_TEST_BACKENDS=js (a comma list) runs only those backends and skips the others loudly
 * (never in CI): for a checkout whose addon is mid-rebuild (a native crash ends the whole file).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { familyCases, gradientChecks } from './family-cases.js';

await api.ready();
const status = api.backends();
const cases = familyCases();
const only = process.env.SIMDNORM_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);

describe('family oracle: backward vs central finite differences (float64)', () => {
  for (const c of gradientChecks()) it(c.name, () => c.run());
});

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = only && !only.includes(name)
    ? `not in SIMDNORM_TEST_BACKENDS=${only.join(',')}`
    : !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`family: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} family suite: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const c of cases) it(c.name, () => c.run(api), 60_000);
  });
}
