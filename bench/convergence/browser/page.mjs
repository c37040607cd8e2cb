/**
 * The convergence page: starts the worker (./worker.mjs), redraws the charts of chart.mjs at every
 * evaluation the worker posts, and prints the same summary as the Node driver at the end. Served
 * by bench/browser/run.mjs (`npm run bench:browser -- --serve`, then /bench/convergence/browser/).
 * `?autostart` starts at once; the outcome is left in window.__convergence for a headless driver.
 */
import { accuracyChart, batchChart, distributionChart } from '../chart.mjs';
import { summaryText } from '../report.mjs';
import { PROFILES } from '../train.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const profile = params.has('full') ? 'full' : 'quick';
let worker = null;

function draw(runs) {
  const started = runs.filter((r) => r.curve.length);
  if (started.some((r) => r.experiment === 'a')) $('accuracy').innerHTML = accuracyChart(started);
  const withPercentiles = started.filter((r) => r.experiment === 'a' && r.lrMultiplier === 1);
  if (withPercentiles.length === 2) $('distributions').innerHTML = distributionChart(withPercentiles);
  const finished = started.filter((r) => r.experiment === 'b' && r.final);
  if (finished.length) $('batch').innerHTML = batchChart(finished);
}

function start() {
  $('start').disabled = true;
  $('stop').disabled = false;
  $('status').textContent = 'loading simdnorm (wasm) and the digits…';
  const t0 = performance.now();
  let runs = [];
  let header = '';
  worker = new Worker(new URL('./worker.mjs', import.meta.url), { type: 'module' });
  worker.onerror = (e) => {
    const error = `the worker failed to load or run: ${e.message ?? e}`;
    $('status').textContent = error;
    globalThis.__convergence = { error };
    stop(false);
  };
  worker.onmessage = ({ data: m }) => {
    if (m.type === 'start') {
      runs = m.runs.map((r) => ({ ...r, curve: [], final: null }));
      header = `${profile} profile on ${m.backend}${m.details?.simd ? ` (${m.details.simd})` : ''}: ${m.train} training and ${m.test} test digits, ${runs.length} runs`;
      $('status').textContent = header;
    } else if (m.type === 'eval') {
      const r = runs[m.index];
      r.curve.push(m.point);
      $('status').textContent = `${header}\nrun ${m.index + 1}/${runs.length} (${r.net} ${r.norm}${r.experiment === 'b' ? `, b = ${r.batchSize}` : ''}, lr ${+r.lr.toFixed(4)}): step ${m.point.step}/${r.steps}, test accuracy ${(m.point.testAccuracy * 100).toFixed(1)}%`;
      draw(runs);
    } else if (m.type === 'run') {
      runs[m.index] = m.result;
      console.log(`[convergence] run ${m.index + 1}/${runs.length} ${m.result.net} ${m.result.norm}: ${(m.result.final.testAccuracy * 100).toFixed(1)}% (${m.seconds.toFixed(1)} s)`);
      draw(runs);
    } else if (m.type === 'done') {
      const seconds = (performance.now() - t0) / 1000;
      const results = { profile, settings: PROFILES[profile], seconds, runs };
      $('summary').textContent = summaryText(results);
      $('status').textContent = `${header}\ndone in ${seconds.toFixed(0)} s`;
      globalThis.__convergence = { results };
      stop(false);
    } else if (m.type === 'error') {
      $('status').textContent = `failed: ${m.error}`;
      globalThis.__convergence = { error: m.error };
      stop(false);
    }
  };
  worker.postMessage({ profile });
}

function stop(userStopped = true) {
  worker?.terminate();
  worker = null;
  $('start').disabled = false;
  $('stop').disabled = true;
  if (userStopped) $('status').textContent += '\nstopped';
}

$('start').onclick = start;
$('stop').onclick = () => stop();
if (params.has('autostart')) start();
