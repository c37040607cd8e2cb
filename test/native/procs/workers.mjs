// node --expose-gc workers.mjs <scenario> [count]
//   cycles [200]      create a worker, start async calls in it, terminate it mid-call (every
//                     other one also in the middle of a sync call); repeat.
//                     The process must stay alive and its RSS flat (printed, bounded).
//   worker-exit [20]  a worker queues async calls and calls process.exit() itself; repeat.
//   load-at-once [8]  that many workers load the addon at the same moment and call it (sync and
//                     async, checked against each other).
//   main-exit         the main thread queues async calls (more than libuv has threads) and exits.
//   main-exit-busy    the same while workers are mid-call too.
// Sync calls run in the workers as well. Each worker's arrays are its own.
import { Worker } from 'node:worker_threads';
import { addonPath, bnArgs, check, gc, loadAddon, Phase, SLOT_NAMES } from './common.mjs';

const [scenario, countText] = process.argv.slice(2);

// A worker's body: load the addon, start `calls` runAsync calls of each of infer, backward and
// train on the pool path (plus one run), post 'started', then what `then` says: 'wait' (for termination), 'sync-loop'
// (sync calls until terminated), 'exit' (process.exit at once, calls queued) or 'finish' (await
// them, compare with sync, post result).
const workerSource = (then, calls) => `
const { parentPort } = require('node:worker_threads');
const b = require(${JSON.stringify(addonPath)});
const n = 1 << 16, c = 8, inner = n / c / 4;
const make = (seed) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 7) a[i] = (i % 13) * 0.25 + seed;
  return a;
};
const ones = () => new Float32Array(c).fill(1);
// run's arguments (common.mjs bnArgs): phase, [4, c, inner] float32, tensors by slot
const SLOTS = ${JSON.stringify(SLOT_NAMES)};
const call = (phase, t, flags = 0, factor = 0) =>
  [new Float64Array([phase, 0, 1, 4, c, inner, c, 1, inner, flags, 1e-5, factor, 1, 0, 1, 0]), ...SLOTS.map((s) => t[s] ?? null)];
const pending = [];
const expected = [];
for (let i = 0; i < ${calls}; i++) {
  const x = make(i), y = new Float32Array(n), yRef = new Float32Array(n);
  const infer = (out) => call(${Phase.infer}, { x, runningMean: new Float32Array(c), runningVar: ones(), gamma: ones(), beta: new Float32Array(c), y: out });
  pending.push(b.runAsync(...infer(y)).then(() => y));
  b.run(...infer(yRef));
  expected.push(yRef);
  const dy = make(i + 1), dx = new Float32Array(n);
  pending.push(b.runAsync(...call(${Phase.backward}, { dy, x, mean: new Float32Array(c), invStd: ones(), gamma: ones(), dx, dgamma: new Float32Array(c), dbeta: new Float32Array(c) }, 2)).then(() => null));
  pending.push(b.runAsync(...call(${Phase.train}, { x, y: new Float32Array(n), mean: new Float32Array(c), invStd: new Float32Array(c), runningMean: new Float32Array(c), runningVar: ones() }, 0, 0.1)).then(() => null));
}
parentPort.postMessage('started');
${then === 'exit' ? 'process.exit(0);' : ''}
${then === 'sync-loop' ? `{ // terminated in the middle of a sync call (its async calls still queued)
  const args = call(${Phase.infer}, { x: make(9), runningMean: new Float32Array(c), runningVar: ones(), y: new Float32Array(n) });
  for (;;) b.run(...args);
}` : ''}
${then === 'finish' ? `Promise.all(pending).then((outs) => {
  const ys = outs.filter(Boolean);
  let same = true;
  ys.forEach((y, i) => { for (let j = 0; j < n; j++) if (!Object.is(y[j], expected[i][j])) same = false; });
  parentPort.postMessage(same ? 'ok' : 'mismatch');
}, (e) => parentPort.postMessage('rejected: ' + e));` : ''}
`;

const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

async function cycles(count) {
  const samples = [];
  const warmup = Math.min(20, count);
  for (let i = 1; i <= count; i++) {
    // odd cycles: terminated while idle with async calls pending; even: also mid sync call
    const w = new Worker(workerSource(i % 2 ? 'wait' : 'sync-loop', 2), { eval: true });
    await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    await w.terminate();
    if (i === warmup || i % 50 === 0 || i === count) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
      gc();
      samples.push([i, rssMiB()]);
    }
  }
  const base = samples[0][1];
  const last = samples.at(-1)[1];
  console.log(`cycles: ${count} worker create-call-terminate cycles; RSS MiB ${samples
    .map(([i, r]) => `@${i} ${r.toFixed(1)}`).join(', ')}; growth after warm-up ${(last - base).toFixed(1)} MiB`);
  // Each worker's arrays are ~2.5 MiB: a leak of them, or of a worker, would be hundreds of MiB.
  // Under AddressSanitizer, Node itself grows ~0.55 MiB per worker cycle without the addon (ASan's
  // stack depot and thread registry keep growing): there the bound is per cycle, still well below
  // what leaking a worker's arrays would add.
  const asan = /libasan/.test(process.env.LD_PRELOAD ?? '');
  const bound = asan ? 1.5 * (count - warmup) : 96;
  check(last - base < bound, `RSS grew ${(last - base).toFixed(1)} MiB over ${count - warmup} cycles (bound ${bound} MiB${asan ? ', ASan' : ''})`);
}

async function workerExit(count) {
  for (let i = 0; i < count; i++) {
    const w = new Worker(workerSource('exit', 4), { eval: true });
    const code = await new Promise((resolve, reject) => { w.once('exit', resolve); w.once('error', reject); });
    check(code === 0, `a worker that exited with calls queued exited with ${code}`);
  }
  await stillWorks();
  console.log(`worker-exit: ${count} workers exited with async calls queued; the process and the addon still work`);
}

async function loadAtOnce(count) {
  const workers = Array.from({ length: count }, () => new Worker(workerSource('finish', 2), { eval: true }));
  const results = await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.on('message', (m) => { if (m !== 'started') resolve(m); });
    w.once('error', reject);
  })));
  await Promise.all(workers.map((w) => w.terminate()));
  check(results.every((r) => r === 'ok'), `workers loading at once: ${results.join(', ')}`);
  await stillWorks();
  console.log(`load-at-once: ${count} workers loaded the addon at once; every async result matched its sync call`);
}

async function stillWorks() {
  const b = loadAddon();
  const x = new Float32Array(1 << 16).fill(2), y = new Float32Array(1 << 16);
  await b.runAsync(...bnArgs('infer', Float32Array, { outer: 1, channels: 1, inner: 1 << 16 },
    { x, runningMean: new Float32Array(1), runningVar: new Float32Array(1).fill(3), y }, { eps: 1 }));
  check(y[0] === 1 && y[65535] === 1, `the addon gives a wrong result after the workers: ${y[0]}`);
}

function mainExit() {
  const b = loadAddon();
  const n = 1 << 20;
  for (let i = 0; i < 16; i++) {
    const x = new Float32Array(n).fill(i), y = new Float32Array(n);
    b.runAsync(...bnArgs('infer', Float32Array, { outer: 4, channels: 4, inner: n / 16 },
      { x, runningMean: new Float32Array(4), runningVar: new Float32Array(4).fill(1), y }));
  }
  console.log('main-exit: exiting with 16 async calls queued');
  process.exit(0);
}

async function mainExitBusy() {
  const workers = Array.from({ length: 4 }, () => new Worker(workerSource('wait', 4), { eval: true }));
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
  mainExit();
}

const count = Number(countText) || undefined;
if (scenario === 'cycles') await cycles(count ?? 200);
else if (scenario === 'worker-exit') await workerExit(count ?? 20);
else if (scenario === 'load-at-once') await loadAtOnce(count ?? 8);
else if (scenario === 'main-exit') mainExit();
else if (scenario === 'main-exit-busy') await mainExitBusy();
else check(false, `unknown scenario ${scenario}`);
