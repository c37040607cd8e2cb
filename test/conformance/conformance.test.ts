/**
 * Runs the one conformance suite (test/conformance/cases.ts) against every backend.
 * A backend that cannot load is a loud skip on a developer's machine and a failure in CI.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { conformanceCases } from './cases.js';

await api.ready();
const status = api.backends();
const cases = conformanceCases();

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`conformance: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} conformance suite: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const c of cases) it(c.name, () => c.run(api), 120_000);
  });
}
