// SyncBatchNorm's cost: one training step (forward + backward) of NCHW [32, 64, 56, 56] float32
// split over 2 worker_threads ranks (each [16, 64, 56, 56] on one native thread, the
// SharedArrayBuffer collective), against one batchNormTrain + batchNormBackward over the whole
// batch on the native backend with 2 threads, in this process. Also, per rank: the same step on
// its shard without any exchange (batchNormTrain/Backward, async), and the time spent inside
// allGather (the exchange, including waiting for the slower rank), and allGather's latency with
// both ranks ready.
// Reports medians over the steps (after warm-up); nothing here is a pass/fail threshold.
//
//   npm run build && node bench/sync.mjs [--steps 30] [--shape 32,64,56,56]
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { existsSync } from 'node:fs';

const dist = new URL('../dist/index.js', import.meta.url);
if (!existsSync(dist)) {
  console.error('bench/sync.mjs runs dist/: npm run build first');
  process.exit(1);
}
const simdnorm = await import(dist.href);

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function fill(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

if (isMainThread) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const steps = Number(arg('steps', 30));
  const warmup = 5;
  const shape = arg('shape', '32,64,56,56').split(',').map(Number);
  const ranks = 2;
  const [N, C] = shape;
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  await simdnorm.ready();
  simdnorm.useBackend('native');

  // One BatchNorm over the whole batch, native with 2 threads.
  simdnorm.setThreads(2);
  const x = fill(N * per, 1);
  const dy = fill(N * per, 2);
  const gamma = new Float32Array(C).fill(1);
  const beta = new Float32Array(C);
  const runningMean = new Float32Array(C);
  const runningVar = new Float32Array(C).fill(1);
  const y = new Float32Array(N * per);
  const dx = new Float32Array(N * per);
  const whole = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const t = simdnorm.batchNormTrain({ x, shape, gamma, beta, runningMean, runningVar }, {}, { y });
    simdnorm.batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, gamma }, {}, { dx });
    if (i >= warmup) whole.push(performance.now() - t0);
  }

  // The same batch in 2 shards over 2 workers.
  const group = simdnorm.createSharedCollectiveGroup(ranks);
  const shards = Array.from({ length: ranks }, (_, r) => N / ranks * (r + 1) - N / ranks * r);
  const results = await Promise.all(
    shards.map(
      (n, r) =>
        new Promise((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { group, rank: r, shape: [n, ...shape.slice(1)], steps, warmup } });
          w.on('message', resolve);
          w.on('error', reject);
        }),
    ),
  );
  const step = results.map((r) => median(r.step));
  const local = results.map((r) => median(r.local));
  const exchange = results.map((r) => median(r.exchange));
  const latency = results.map((r) => median(r.latency));
  const baseline = median(whole);
  const syncStep = Math.max(...step);
  console.log(`SyncBatchNorm training step (forward + backward), float32 NCHW [${shape.join(', ')}], medians of ${steps} steps`);
  console.log(`  one batchNormTrain + batchNormBackward, whole batch, native, 2 threads: ${baseline.toFixed(2)} ms`);
  console.log(`  syncBatchNormTrain + syncBatchNormBackward, ${ranks} worker_threads ranks of [${shards[0]}, ${shape.slice(1).join(', ')}], 1 thread each: ${syncStep.toFixed(2)} ms (ranks ${step.map((s) => s.toFixed(2)).join(', ')})`);
  console.log(`  the same step on each shard without exchange (batchNormTrainAsync + batchNormBackwardAsync): ${local.map((s) => s.toFixed(2)).join(', ')} ms`);
  console.log(`  time inside allGather per step (2 exchanges, waiting for the other rank included): ${exchange.map((s) => s.toFixed(3)).join(', ')} ms`);
  console.log(`  allGather latency with both ranks ready (${2 * C + 20} values), median: ${latency.map((s) => (s * 1000).toFixed(0)).join(', ')} µs; 2 per step = ${((2 * Math.max(...latency) / syncStep) * 100).toFixed(2)}% of the step`);
  const overhead = syncStep - Math.max(...local);
  console.log(`  SyncBatchNorm over the shard's own BatchNorm: ${overhead.toFixed(2)} ms per step (${((overhead / syncStep) * 100).toFixed(1)}% of the step); blocked in allGather (waiting for the other rank included): ${((Math.max(...exchange) / syncStep) * 100).toFixed(1)}% of the step`);
  console.log(`  sync step / whole-batch step: ${(syncStep / baseline).toFixed(2)}x`);
} else {
  const { group, rank, shape, steps, warmup } = workerData;
  simdnorm.useBackend('native');
  simdnorm.setThreads(1);
  const inner = simdnorm.sharedCollective(group, rank);
  let inGather = 0;
  const collective = {
    rank: inner.rank,
    size: inner.size,
    async allGather(data) {
      const t0 = performance.now();
      try {
        return await inner.allGather(data);
      } finally {
        inGather += performance.now() - t0;
      }
    },
  };
  const C = shape[1];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = fill(n, 10 + rank);
  const dy = fill(n, 20 + rank);
  const gamma = new Float32Array(C).fill(1);
  const beta = new Float32Array(C);
  const runningMean = new Float32Array(C);
  const runningVar = new Float32Array(C).fill(1);
  const y = new Float32Array(n);
  const dx = new Float32Array(n);
  const step = [];
  const exchange = [];
  const local = [];
  for (let i = 0; i < warmup + steps; i++) {
    inGather = 0;
    const t0 = performance.now();
    const t = await simdnorm.syncBatchNormTrain({ x, shape, gamma, beta, runningMean, runningVar }, {}, collective, { y });
    await simdnorm.syncBatchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, gamma }, {}, collective, { dx });
    const t1 = performance.now();
    const gathered = inGather;
    const l = await simdnorm.batchNormTrainAsync({ x, shape, gamma, beta, runningMean, runningVar }, {}, { y });
    await simdnorm.batchNormBackwardAsync({ dy, x, shape, mean: l.mean, invStd: l.invStd, gamma }, {}, { dx });
    const t2 = performance.now();
    // keep the ranks in step before the next synchronised step
    await collective.allGather(new Float64Array(1));
    if (i >= warmup) {
      step.push(t1 - t0);
      local.push(t2 - t1);
      exchange.push(gathered);
    }
  }
  // The exchange alone: allGather of a forward step's payload (1 + 2·C values and the signature)
  // with both ranks ready, latency per call.
  const payload = new Float64Array(2 * C + 20);
  const latency = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await inner.allGather(payload);
    latency.push(performance.now() - t0);
  }
  parentPort.postMessage({ step, local, exchange, latency: latency.slice(20) });
}
