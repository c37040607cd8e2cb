/**
 * The browser page of the benchmark: the same suite, contenders, table and chart as the Node
 * driver, over the contenders a browser has (simdnorm wasm and js, the plain JS loop, tfjs cpu
 * and wasm, onnxruntime-web). Served by ./serve.mjs (the package root, with COOP/COEP so that
 * threaded WASM peers can use their threads); `npm run bench:browser` drives it headless.
 * Progress goes to the console as "[bench] …"; the result is left in window.__bench.
 */
import * as api from '/dist/browser.js';
import * as compare from '/dist/compare.js';
import { Random } from '/dist/random.js';
import { svgChart } from '../chart.mjs';
import { onnxruntimeContenders } from '../contenders/onnxruntime.mjs';
import { plainJsContender } from '../contenders/plainjs.mjs';
import { backendFacts, simdnormContenders } from '../contenders/simdnorm.mjs';
import { initTfjs, tfjsContenders } from '../contenders/tfjs.mjs';
import { fullReport } from '../report.mjs';
import { PROFILES, QUICK_CASES, runSuite } from '../suite.mjs';

const $ = (id) => document.getElementById(id);
const message = (e) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

function log(line, transient = false) {
  $('progress').textContent = line;
  if (!transient) console.log(`[bench] ${line}`);
}

async function loadContenders(threads) {
  // simdnorm: `native` is Node-only, so only wasm and js appear here.
  await api.ready();
  const wasmMemory = api.wasmMemory ?? (await import('/dist/backends/wasm.js').then((m) => m.wasmMemory, () => undefined));
  const own = simdnormContenders(api, { wasmMemory }).filter((c) => !c.id.startsWith('native'));

  const tf = globalThis.tf;
  const tfErrors = tf
    ? await initTfjs(tf, ['cpu', 'wasm'], { wasm: tf.wasm, wasmPaths: '/node_modules/@tensorflow/tfjs-backend-wasm/dist/' })
    : { cpu: 'the tfjs bundle did not load', wasm: 'the tfjs bundle did not load' };

  let ortPeer;
  try {
    const ort = await import('/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
    ort.env.wasm.numThreads = crossOriginIsolated ? threads : 1;
    ortPeer = { id: 'onnxruntime-web', ort, preallocate: false, sessionOptions: { executionProviders: ['wasm'], graphOptimizationLevel: 'all' } };
  } catch (e) {
    ortPeer = { id: 'onnxruntime-web', error: `onnxruntime-web: ${message(e)}` };
  }
  return [...own, plainJsContender(), ...tfjsContenders(tf, { errors: tfErrors }), ...onnxruntimeContenders([ortPeer])];
}

async function main() {
  const quick = new URLSearchParams(location.search).has('quick');
  const profile = quick ? { ...PROFILES.browser, cases: QUICK_CASES, settings: PROFILES.quick.settings } : PROFILES.browser;
  const threads = navigator.hardwareConcurrency || 1;
  const facts = await fetch('/__bench/facts.json').then((r) => r.json());
  const contenders = await loadContenders(threads);
  for (const c of contenders.filter((k) => k.unavailable)) log(`missing: ${c.label} — ${c.unavailable}`);

  const suite = await runSuite(profile, { api, compare, Random, contenders, native: null, threads, log });
  const browser = navigator.userAgent.match(/(HeadlessChrome|Chrome|Firefox|Safari)\/[\d.]+/)?.[0] ?? navigator.userAgent;
  const results = {
    schema: 'simdnorm-bench/1',
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    environment: `browser: ${browser}${crossOriginIsolated ? ', cross-origin isolated' : ''}`,
    quick,
    profile: quick ? 'browser-quick' : 'browser',
    machine: { ...facts.machine, threads },
    versions: { ...facts.versions, runtime: browser },
    simdnorm: backendFacts(api).filter((b) => b.name !== 'native'),
    settings: profile.settings,
    tolerance: compare.TOLERANCE,
    contenders: contenders.map(({ id, label, kind, unavailable }) => ({ id, label, kind, ...(unavailable ? { unavailable } : {}) })),
    ...suite,
  };
  const text = fullReport(results);
  $('table').textContent = text;
  $('chart').innerHTML = svgChart(results);
  log(`done in ${suite.seconds.toFixed(0)} s`);
  globalThis.__bench = { results, text };
}

main().catch((e) => {
  log(`failed: ${e instanceof Error ? e.stack ?? e.message : e}`);
  globalThis.__bench = { error: String(e instanceof Error ? e.stack ?? e.message : e) };
});
