// The page of test/sync/browser.test.ts: Web Worker ranks (worker.mjs) over the SharedArrayBuffer
// collective (when the page is cross-origin isolated) or the channel collective (a hub over the
// Worker objects), on wasm and js, against one batchNormTrain/batchNormBackward of the whole batch
// on the page; then a stalled rank. window.__report: { isolated, results: [{ name, ok, error }] }.
import * as simdnorm from '/dist/browser.js';

const mode = new URLSearchParams(location.search).get('mode'); // 'shared' | 'channel'

function lcg(n, seed, scale = 1, offset = 0) {
  const a = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * scale + offset;
  }
  return a;
}

const maxRel = (a, b) => {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
};
const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

async function runRanks({ backend, dtype, layout, shards, stall = -1, timeout = 20000 }) {
  const T = dtype === 'float32' ? Float32Array : Float64Array;
  const C = 5, S = [4, 3];
  const N = shards.reduce((a, b) => a + b, 0);
  const dimsOf = (n) => (layout === 'channels-first' ? [n, C, ...S] : [n, ...S, C]);
  const per = C * S[0] * S[1];
  const x = T.from(lcg(N * per, 1, 4, 1.5));
  const dy = T.from(lcg(N * per, 2));
  const gamma = T.from(lcg(C, 3, 1, 1)), beta = T.from(lcg(C, 4));
  const runningMean = new T(C), runningVar = new T(C).fill(1);
  const options = { layout };
  const size = shards.length;
  const group = mode === 'shared' ? simdnorm.createSharedCollectiveGroup(size) : undefined;
  const workers = shards.map(() => new Worker('/test/sync/browser/worker.mjs', { type: 'module' }));
  const hub = mode === 'channel' ? simdnorm.createCollectiveHub(workers, { timeout: timeout / 2 }) : undefined;
  let start = 0;
  const outs = await Promise.all(
    workers.map((w, r) => {
      const from = shards.slice(0, r).reduce((a, b) => a + b, 0) * per;
      const done = r === stall
        ? Promise.resolve(null)
        : new Promise((resolve) => {
            w.addEventListener('message', (e) => e.data?.tag === 'result' && resolve(e.data));
            w.addEventListener('error', (e) => resolve({ error: `worker ${r}: ${e.message}` }));
            setTimeout(() => resolve({ error: `worker ${r}: no result within ${timeout + 5000} ms` }), timeout + 5000);
          });
      w.postMessage({
        tag: 'config', backend, group, rank: r, size, timeout, stall: r === stall, options,
        x: x.slice(from, from + shards[r] * per), dy: dy.slice(from, from + shards[r] * per), shape: dimsOf(shards[r]),
        gamma, beta, runningMean, runningVar,
      });
      return done;
    }),
  );
  hub?.close();
  workers.forEach((w) => w.terminate());
  simdnorm.useBackend(backend);
  const whole = dimsOf(N);
  const rm = runningMean.slice(), rv = runningVar.slice();
  const t = simdnorm.batchNormTrain({ x, shape: whole, gamma, beta, runningMean: rm, runningVar: rv }, options);
  const g = simdnorm.batchNormBackward({ dy, x, shape: whole, mean: t.mean, invStd: t.invStd, gamma }, options);
  return { outs, ref: { y: t.y, mean: t.mean, invStd: t.invStd, runningMean: rm, runningVar: rv, dx: g.dx, dgamma: g.dgamma, dbeta: g.dbeta }, dtype, start };
}

function check({ outs, ref, dtype }) {
  const tol = dtype === 'float32' ? 1e-5 : 1e-11;
  const errs = [];
  const cat = (k) => { const parts = outs.map((o) => o[k]); const a = new Float64Array(parts.reduce((s, p) => s + p.length, 0)); let at = 0; for (const p of parts) { a.set(p, at); at += p.length; } return a; };
  for (const o of outs) if (o.error) errs.push(o.error);
  if (errs.length) return errs.join('; ');
  for (const k of ['y', 'dx']) { const e = maxRel(cat(k), ref[k]); if (!(e <= tol)) errs.push(`${k} relative error ${e}`); }
  for (const k of ['mean', 'invStd', 'runningMean', 'runningVar', 'dgamma', 'dbeta']) {
    const e = maxRel(outs[0][k], ref[k]);
    if (!(e <= tol)) errs.push(`${k} relative error ${e}`);
    if (!outs.every((o) => same(o[k], outs[0][k]))) errs.push(`${k} differs across ranks`);
  }
  return errs.join('; ');
}

async function main() {
  const results = [];
  await simdnorm.ready();
  for (const backend of ['wasm', 'js']) {
    for (const dtype of ['float32', 'float64']) {
      for (const layout of ['channels-first', 'channels-last']) {
        const name = `${mode} ${backend} ${dtype} ${layout}, 3 Web Workers, shards [3, 0, 2]`;
        try {
          const error = check(await runRanks({ backend, dtype, layout, shards: [3, 0, 2] }));
          results.push({ name, ok: error === '', error });
        } catch (e) {
          results.push({ name, ok: false, error: `${e.name}: ${e.message}` });
        }
      }
    }
  }
  const name = `${mode}: a stalled rank makes the others reject naming it, running stats untouched`;
  try {
    const { outs } = await runRanks({ backend: 'wasm', dtype: 'float32', layout: 'channels-first', shards: [2, 2, 2], stall: 1, timeout: 1500 });
    const bad = [0, 2].filter((r) => !(outs[r].error && /rank 1 of 3 did not arrive at exchange 0/.test(outs[r].error) && outs[r].ranks?.[0] === 1 && outs[r].untouched));
    results.push({ name, ok: bad.length === 0, error: bad.map((r) => JSON.stringify(outs[r])).join('; ') });
  } catch (e) {
    results.push({ name, ok: false, error: `${e.name}: ${e.message}` });
  }
  return { isolated: self.crossOriginIsolated, results };
}

window.__report = main().catch((e) => ({ isolated: self.crossOriginIsolated, results: [{ name: 'page', ok: false, error: String(e) }] }));
