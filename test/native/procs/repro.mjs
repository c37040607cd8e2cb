// node --expose-gc repro.mjs <raw|facade>
// Issue 12's repros, as its reporter wrote them: the buffer of out.y, x or a running stat is
// transferred while an async call runs, the clone dropped, gc(), and eight large "victim" arrays
// allocated; the call must settle with the right values and no victim may be written (it was a
// SIGSEGV or heap corruption). An array over a resizable ArrayBuffer disguised with an own
// `resizable: false` or a getter that transfers out.y and collects is refused and can then be
// shrunk (it was a SIGSEGV and "free(): invalid pointer"). `raw` calls the binding; `facade` the
// public API on the native backend (dist/index.js: run `npm run build` first).
import { pathToFileURL } from 'node:url';
import { bnArgs, check, gc, loadAddon, root } from './common.mjs';

const mode = process.argv[2];
let infer, train, api;
if (mode === 'facade') {
  api = await import(pathToFileURL(`${root}dist/index.js`).href);
  api.useBackend('native');
  check(api.currentBackend() === 'native', `the native backend is not in use: ${api.currentBackend()}`);
  infer = (x, shape, runningMean, runningVar, y) =>
    api.batchNormInferAsync({ x, shape, runningMean, runningVar }, {}, { y });
  train = (x, shape, runningMean, runningVar, y) =>
    api.batchNormTrainAsync({ x, shape, runningMean, runningVar }, {}, { y }).then((r) => r.updated);
} else {
  const b = loadAddon();
  const geometry = ([n, c, h, w]) => ({ outer: n, channels: c, inner: h * w });
  infer = (x, shape, runningMean, runningVar, y) =>
    b.runAsync(...bnArgs('infer', Float32Array, geometry(shape), { x, runningMean, runningVar, y }));
  train = (x, shape, runningMean, runningVar, y) => b.runAsync(...bnArgs('train', Float32Array, geometry(shape), {
    x, y, mean: new Float32Array(shape[1]), invStd: new Float32Array(shape[1]), runningMean, runningVar,
  }, { factor: 0.9 })).then((written) => written === 1);
}

const SENTINEL = 7.25;
async function transferMidCall(what, shape) {
  const n = shape.reduce((p, q) => p * q, 1), c = shape[1];
  const arrays = {
    x: new Float32Array(n).fill(3),
    runningMean: new Float32Array(c).fill(1),
    runningVar: new Float32Array(c).fill(4),
    y: new Float32Array(n),
  };
  const call = what === 'infer-y' ? infer : train;
  const p = call(arrays.x, shape, arrays.runningMean, arrays.runningVar, arrays.y);
  const victim = what === 'infer-y' ? 'y' : what.slice('train-'.length);
  structuredClone(arrays[victim].buffer, { transfer: [arrays[victim].buffer] }); // clone dropped at once
  arrays[victim] = null;
  gc();
  gc();
  const victims = [];
  for (let k = 0; k < 8; k++) victims.push(new Float32Array(n).fill(SENTINEL));
  const result = await p;
  for (const v of victims) for (let i = 0; i < n; i += 61) check(v[i] === SENTINEL, `${what}: a victim was written`);
  if (arrays.y) {
    const expected = what === 'infer-y' ? 1 : what === 'train-x' ? NaN : 0; // (3-1)/sqrt(4); training: x - mean = 0
    if (what !== 'train-x') check(Math.abs(arrays.y[n - 1] - expected) < 1e-3, `${what}: y = ${arrays.y[n - 1]}, expected ${expected}`);
  }
  if (what === 'train-runningVar') check(result === true, `${what}: resolved ${result}`);
  if (what === 'train-x') {
    // x's memory moved away but stayed alive: y is (3 - 3) * invStd = 0 all the same
    check(arrays.y[0] === 0 && arrays.y[n - 1] === 0, `${what}: y = ${arrays.y[0]}`);
  }
}

await transferMidCall('infer-y', [64, 64, 64, 64]); // the issue's own shape: 16.8M elements
await transferMidCall('train-x', [32, 32, 64, 64]);
await transferMidCall('train-runningVar', [32, 32, 64, 64]);
await transferMidCall('train-y', [32, 32, 64, 64]);

// Resizable buffers in disguise, inline (120 elements) and pool path (393216).
for (const n of [120, 6 << 16]) {
  for (const disguise of ['own-false', 'getter']) {
    const shape = [2, 3, n / 6, 1];
    const buffer = new ArrayBuffer(n * 4, { maxByteLength: n * 8 });
    const x = new Float32Array(buffer).fill(2);
    let y = new Float32Array(n);
    const runningMean = new Float32Array(3), runningVar = new Float32Array(3).fill(1);
    if (disguise === 'own-false') Object.defineProperty(buffer, 'resizable', { value: false });
    else {
      Object.defineProperty(buffer, 'resizable', {
        get() { // the attack: transfer out.y and collect from inside the call
          structuredClone(y.buffer, { transfer: [y.buffer] });
          gc();
          return false;
        },
      });
    }
    let outcome;
    try {
      await train(x, shape, runningMean, runningVar, y);
      outcome = 'resolved';
    } catch (e) {
      outcome = e;
    }
    buffer.resize(4); // shrink at once: no kernel may be using it
    gc();
    check(outcome instanceof TypeError || outcome instanceof RangeError || outcome === 'resolved',
      `resizable x (${disguise}, ${n}): ${outcome}`);
    if (mode === 'raw') check(outcome instanceof TypeError, `raw binding: resizable x (${disguise}, ${n}) was not refused: ${outcome}`);
    check(runningVar[0] === 1 || outcome === 'resolved', `resizable x (${disguise}, ${n}): refused but runningVar written`);
    y = null;
  }
}
if (api) {
  // Issue 12 item 4 through the public API: two SharedArrayBuffer objects over the same bytes.
  const shape = [4, 8, 64, 64], n = 4 * 8 * 64 * 64, c = 8;
  const sab = new SharedArrayBuffer((n + 2 * c + 1) * 4);
  const twin = structuredClone(sab);
  const x = new Float32Array(sab, 0, n).fill(1.5);
  const stats = new Float32Array(sab, n * 4, c).fill(0.5);
  const attempts = {
    'runningMean and runningVar over the same bytes': (call) =>
      call({ x, shape, runningMean: stats, runningVar: new Float32Array(twin, n * 4, c) }, {}),
    "out.y over x shifted by one element": (call) =>
      call({ x, shape }, {}, { y: new Float32Array(twin, 4, n) }),
  };
  for (const [what, attempt] of Object.entries(attempts)) {
    for (const call of [api.batchNormTrain, api.batchNormTrainAsync]) {
      const before = new Uint8Array(sab).slice();
      let error = null;
      try {
        await attempt(call);
      } catch (e) {
        error = e;
      }
      check(error instanceof RangeError, `public API, ${call.name}: ${what}: expected a RangeError; got ${error ?? 'success'}`);
      const after = new Uint8Array(sab);
      for (let i = 0; i < after.length; i++) check(after[i] === before[i], `public API, ${call.name}: ${what}: memory written at byte ${i}`);
    }
  }
}
console.log(`repro (${mode}): transfers of y, x, runningVar and y mid-call held; resizable buffers in disguise refused`);
