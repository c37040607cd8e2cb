// node --expose-gc aliasing.mjs
// Aliasing by address: an output that overlaps another array argument is a RangeError naming both,
// thrown (or, async, rejected) before anything is written, however the overlap is disguised: two
// SharedArrayBuffer objects over the same bytes from structuredClone(sab), from a round trip
// through a worker, or a shared WebAssembly.Memory's buffer before and after grow(); or two views
// of one ArrayBuffer. The exact aliases the README allows (y exactly x, dx exactly dy) are taken
// and give the in-place result. Sync and async (inline and pool path).
import { Worker } from 'node:worker_threads';
import { OPS, SHAPES, bytesOf, check, loadAddon, sameBits } from './common.mjs';

const b = loadAddon();

// moments and updateRunningStats have no async variant; their specs for this file only
const SYNC_ONLY = {
  moments: {
    arrays: { 0: 'x', 4: 'mean', 5: 'variance' },
    args(T, s, seed) {
      const c = s.channels;
      const x = OPS.train.args(T, s, seed)[0];
      return [x, s.outer, c, s.inner, new T(c), new T(c)];
    },
  },
  updateRunningStats: {
    arrays: { 0: 'runningMean', 1: 'runningVar', 2: 'batchMean', 3: 'batchVar' },
    args(T, s, seed) {
      const t = OPS.train.args(T, s, seed);
      return [t[11], t[12], t[4], t[5], 0.9, 1.5, false];
    },
  },
};
const specOf = (op) => OPS[op] ?? SYNC_ONLY[op];

const worker = new Worker(
  `const { parentPort } = require('node:worker_threads');
   parentPort.on('message', (sab) => parentPort.postMessage(sab));`,
  { eval: true },
);
worker.unref();
const roundTrip = (sab) => new Promise((resolve) => {
  worker.once('message', resolve);
  worker.postMessage(sab);
});

/** Two buffer objects over the same memory of at least `bytes` bytes, made the `kind` way. */
async function twins(kind, bytes) {
  if (kind === 'same-buffer') {
    const a = new ArrayBuffer(bytes);
    return [a, a];
  }
  if (kind === 'wasm-grow') {
    const pages = Math.ceil(bytes / 65536);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages + 1, shared: true });
    const a = memory.buffer;
    memory.grow(1);
    return [a, memory.buffer];
  }
  const a = new SharedArrayBuffer(bytes);
  return [a, kind === 'structuredClone' ? structuredClone(a) : await roundTrip(a)];
}

// [op, placements {argument index: [buffer 0 or 1, element offset]}, allowed, blamed names]
const CASES = [
  ['train', { 0: [0, 0], 8: [1, 1] }, false, ['y', 'x']],
  ['train', { 11: [0, 0], 12: [1, 0] }, false, ['runningMean', 'runningVar']],
  ['train', { 9: [0, 0], 10: [1, 1] }, false, ['mean', 'invStd']],
  ['train', { 0: [0, 0], 8: [1, 0] }, true],
  ['infer', { 10: [0, 0], 5: [1, 3] }, false, ['y', 'runningVar']],
  ['infer', { 0: [0, 0], 10: [1, 0] }, true],
  ['backward', { 1: [0, 0], 10: [1, 0] }, false, ['dx', 'x']],
  ['backward', { 11: [0, 0], 12: [1, 0] }, false, ['dgamma', 'dbeta']],
  ['backward', { 8: [0, 2], 11: [1, 0] }, false, ['dgamma', 'y']],
  ['backward', { 0: [0, 0], 10: [1, 0] }, true],
  ['moments', { 4: [0, 0], 5: [1, 0] }, false, ['mean', 'variance']],
  ['updateRunningStats', { 0: [0, 0], 1: [1, 0] }, false, ['runningMean', 'runningVar']],
];

let refused = 0, allowed = 0;
for (const kind of ['structuredClone', 'worker', 'wasm-grow', 'same-buffer']) {
  for (const [op, placements, isAllowed, blamed] of CASES) {
    const modes = OPS[op] ? ['sync', 'inline', 'pool'] : ['sync'];
    for (const mode of modes) {
      const s = SHAPES[mode === 'pool' ? 'pool' : 'inline'];
      const spec = specOf(op);
      const args = spec.args(Float32Array, s, 11);
      const bytes = 4 * (Math.max(...Object.keys(placements).map((k) => args[k].length)) + 8);
      const pair = await twins(kind, bytes);
      check(kind === 'same-buffer' || pair[0] !== pair[1], `${kind}: the twins are one object`);
      // highest index first: an in-place output's view gets its input's values last
      for (const [k, [which, offset]] of Object.entries(placements).reverse()) {
        const view = new Float32Array(pair[which], offset * 4, args[k].length);
        view.set(args[k]);
        args[k] = view;
      }
      const label = `${op} ${mode} via ${kind} (${Object.keys(placements).map((k) => spec.arrays[k]).join(', ')})`;
      const memoryBefore = new Uint8Array(pair[0]).slice();
      const plainBefore = args.map((a) => (ArrayBuffer.isView(a) ? bytesOf(a) : null));
      let error = null, result;
      try {
        result = mode === 'sync' ? b[op](...args) : await b[`${op}Async`](...args);
      } catch (e) {
        error = e;
      }
      if (!isAllowed) {
        check(error instanceof RangeError, `${label}: expected a RangeError; got ${error ?? `no error (${result})`}`);
        for (const name of blamed) check(error.message.includes(`'${name}'`), `${label}: the error does not name '${name}': ${error.message}`);
        check(sameBits(new Uint8Array(pair[0]), memoryBefore), `${label}: the shared memory was written`);
        args.forEach((a, i) => {
          if (plainBefore[i]) check(sameBits(a, plainBefore[i]), `${label}: argument ${i + 1} was written`);
        });
        refused++;
      } else {
        check(error === null, `${label}: an allowed in-place alias was refused: ${error}`);
        // the same call in place on plain arrays
        const plain = spec.args(Float32Array, s, 11);
        const [out, into] = Object.keys(placements).map(Number).sort((p, q) => q - p);
        plain[out] = plain[into];
        const expectedResult = b[op](...plain);
        check(result === expectedResult, `${label}: returned ${result}, in place on plain arrays ${expectedResult}`);
        for (const k of Object.keys(spec.arrays).map(Number)) {
          check(sameBits(args[k], plain[k]), `${label}: '${spec.arrays[k]}' differs from the in-place call on plain arrays`);
        }
        allowed++;
      }
    }
  }
}
await worker.terminate();
console.log(`aliasing: ${refused} overlaps refused with nothing written, ${allowed} exact in-place aliases taken`);
