#!/usr/bin/env node
// A long run on one backend, in a process of its own so that what it measures is its own:
//   node --expose-gc test/reliability/long-run.mjs <native|wasm> [smallCalls] [largeCalls]
// Warm-up, then `smallCalls` small calls (float32 [2,3,4,5]: train with running statistics,
// inference, backward, in turn; also through async calls and without caller-owned outputs
// now and then) and `largeCalls` large ones (float32 [16,64,64,64], 4M elements: train and
// inference in turn), with RSS, module memory (wasm), threads and open file descriptors
// measured after warm-up and at the end (after a full GC). On native, workers that load the
// addon then come and go, and the thread count is taken again. Prints one JSON line.
// (Uses dist/: run `npm run build` first; `npm test` does.)
import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import * as simdnorm from '../../dist/index.js';

const [backend = 'native', small = '1000000', large = '1000'] = process.argv.slice(2);
const SMALL = Number(small);
const LARGE = Number(large);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
simdnorm.useBackend(backend);

const threads = () => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const fds = () => readdirSync('/proc/self/fd').length;
const wasmBytes = () => (backend === 'wasm' ? simdnorm.wasmMemory.bytes : 0);
const settle = async () => {
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 20));
  }
};
const snapshot = () => ({ rss: process.memoryUsage().rss, wasm: wasmBytes(), threads: threads(), fds: fds() });

function randomFill(a, seed) {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

// ---- small calls
const sShape = [2, 3, 4, 5];
const sn = 120;
const sC = 3;
const sx = randomFill(new Float32Array(sn), 1);
const sdy = randomFill(new Float32Array(sn), 2);
const sgamma = new Float32Array([1, 0.5, 2]);
const sbeta = new Float32Array([0, 0.1, -0.1]);
const srm = new Float32Array(sC);
const srv = new Float32Array(sC).fill(1);
const sout = { y: new Float32Array(sn), mean: new Float32Array(sC), invStd: new Float32Array(sC) };
const sgrad = { dx: new Float32Array(sn), dgamma: new Float32Array(sC), dbeta: new Float32Array(sC) };
const syInfer = { y: new Float32Array(sn) };

async function smallCall(i) {
  switch (i % 3) {
    case 0: {
      // every 1000th call allocates its outputs (garbage the GC must take back)
      const out = i % 1000 === 0 ? undefined : sout;
      const r = simdnorm.batchNormTrain({ x: sx, shape: sShape, gamma: sgamma, beta: sbeta, runningMean: srm, runningVar: srv, numBatchesTracked: 1 }, { momentum: 0.99, activation: 'relu' }, out);
      if (!r.updated) throw new Error('train did not update');
      if (out === undefined) sout.y.set(r.y), sout.mean.set(r.mean), sout.invStd.set(r.invStd);
      break;
    }
    case 1:
      if (i % 997 === 1) await simdnorm.batchNormInferAsync({ x: sx, shape: sShape, gamma: sgamma, beta: sbeta, runningMean: srm, runningVar: srv }, {}, syInfer);
      else simdnorm.batchNormInfer({ x: sx, shape: sShape, gamma: sgamma, beta: sbeta, runningMean: srm, runningVar: srv }, {}, syInfer);
      break;
    default:
      simdnorm.batchNormBackward({ dy: sdy, x: sx, shape: sShape, mean: sout.mean, invStd: sout.invStd, gamma: sgamma, y: sout.y }, { activation: 'relu' }, sgrad);
  }
}

// ---- large calls: 4M float32 elements
const lShape = [16, 64, 64, 64];
const ln = 16 * 64 * 64 * 64;
const lC = 64;
const lx = randomFill(new Float32Array(ln), 3);
const ly = new Float32Array(ln);
const lrm = new Float32Array(lC);
const lrv = new Float32Array(lC).fill(1);
const lstats = { mean: new Float32Array(lC), invStd: new Float32Array(lC) };

async function largeCall(i) {
  if (i % 2 === 0) {
    simdnorm.batchNormTrain({ x: lx, shape: lShape, runningMean: lrm, runningVar: lrv }, {}, { y: ly, ...lstats });
  } else if (i % 10 === 1) {
    await simdnorm.batchNormInferAsync({ x: lx, shape: lShape, runningMean: lrm, runningVar: lrv }, {}, { y: ly });
  } else {
    simdnorm.batchNormInfer({ x: lx, shape: lShape, runningMean: lrm, runningVar: lrv }, {}, { y: ly });
  }
}

// The results at the end are still right: the last small train's statistics against js.
function check() {
  const x64 = new Float64Array(sx);
  const ref = simdnorm.withBackend('js', () => simdnorm.batchNormTrain({ x: x64, shape: sShape }));
  const got = simdnorm.batchNormTrain({ x: sx, shape: sShape });
  for (let c = 0; c < sC; c++) {
    if (Math.abs(got.mean[c] - ref.mean[c]) > 1e-6 || Math.abs(got.invStd[c] - ref.invStd[c]) > 1e-5 * ref.invStd[c]) {
      throw new Error(`wrong statistics after the long run: ${got.mean} vs ${ref.mean}`);
    }
  }
  if (!srv.every(Number.isFinite) || !lrv.every(Number.isFinite)) throw new Error('running statistics not finite');
}

const t0 = performance.now();
// warm-up: allocator arenas, the scratch areas, the kernels' pool, libuv's pool, JIT
for (let i = 0; i < 30000; i++) await smallCall(i);
for (let i = 0; i < 20; i++) await largeCall(i);
await settle();
const before = snapshot();
let peakRss = before.rss;
const t1 = performance.now();
for (let i = 0; i < SMALL; i++) {
  await (i % 997 === 1 ? smallCall(i) : smallCall(i));
  if (i % 100000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
}
const t2 = performance.now();
for (let i = 0; i < LARGE; i++) {
  await largeCall(i);
  if (i % 50 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
}
const t3 = performance.now();
check();
await settle();
const after = snapshot();

// Workers that load the package (and on native the addon) and exit: no thread or fd left behind.
let workers = null;
if (backend === 'native') {
  const workerUrl = new URL('./workers/batchnorm-worker.mjs', import.meta.url);
  const runOne = () =>
    new Promise((resolve, reject) => {
      const w = new Worker(workerUrl, { workerData: { backend, scenario: 'load' } });
      let ok = false;
      w.on('message', (m) => (ok = m.ok === true && m.backend === backend));
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 && ok ? resolve() : reject(new Error(`worker exit ${code}`))));
    });
  await runOne(); // the first one may start what stays (e.g. nothing, or a pool thread)
  await settle();
  const t = threads();
  const f = fds();
  for (let i = 0; i < 8; i++) await runOne();
  await Promise.all([runOne(), runOne(), runOne(), runOne()]);
  await settle();
  workers = { count: 13, threadsBefore: t, threadsAfter: threads(), fdsBefore: f, fdsAfter: fds() };
}

const info = simdnorm.backends().find((b) => b.name === backend)?.details ?? {};
console.log(
  JSON.stringify({
    backend, small: SMALL, large: LARGE, largeElements: ln,
    before, after, peakRss, workers,
    poolThreads: info.maxThreads ?? 1,
    seconds: { warmup: (t1 - t0) / 1000, small: (t2 - t1) / 1000, large: (t3 - t2) / 1000 },
  }),
);
