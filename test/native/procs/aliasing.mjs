// node --expose-gc aliasing.mjs
// Aliasing by address: an output that overlaps another tensor of the call is refused (an
// `internal error: <phase>: overlap (tensor <output>)`) before anything is written, however the
// overlap is disguised: two SharedArrayBuffer objects over the same bytes from
// structuredClone(sab), from a round trip through a worker, or a shared WebAssembly.Memory's
// buffer before and after grow(); or two views of one ArrayBuffer. The exact aliases the ABI
// table allows (y exactly x, dx exactly dy) are taken and give the in-place result. run and
// runAsync (inline and pool path), every phase.
import { Worker } from 'node:worker_threads';
import { OPS, SHAPES, bnArgs, bytesOf, check, fill, loadAddon, sameBits, Slot, SLOT_NAMES } from './common.mjs';

const b = loadAddon();

// moments and update, for this file only
const MORE = {
  moments: {
    args(T, s, seed) {
      const c = s.channels;
      return bnArgs('moments', T, s, { x: fill(new T(s.outer * c * s.inner), seed), mean: new T(c), variance: new T(c) });
    },
  },
  update: {
    args(T, s, seed) {
      const c = s.channels;
      return bnArgs('update', T, s, {
        mean: fill(new T(c), seed), variance: fill(new T(c), seed + 1, 0.5, 1),
        runningMean: fill(new T(c), seed + 2), runningVar: fill(new T(c), seed + 3, 0.5, 1),
      }, { factor: 0.9, varScale: 1.5 });
    },
  },
};
const specOf = (op) => OPS[op] ?? MORE[op];
const at = (name) => 1 + Slot[name];

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

// [phase, placements {slot: [buffer 0 or 1, element offset]}, allowed, the output blamed]
const CASES = [
  ['train', { x: [0, 0], y: [1, 1] }, false, 'y'],
  ['train', { runningMean: [0, 0], runningVar: [1, 0] }, false, 'runningMean'],
  ['train', { mean: [0, 0], invStd: [1, 1] }, false, 'mean'],
  ['train', { x: [0, 0], y: [1, 0] }, true],
  ['infer', { y: [0, 0], runningVar: [1, 3] }, false, 'y'],
  ['infer', { x: [0, 0], y: [1, 0] }, true],
  ['backward', { x: [0, 0], dx: [1, 0] }, false, 'dx'],
  ['backward', { dgamma: [0, 0], dbeta: [1, 0] }, false, 'dgamma'],
  ['backward', { y: [0, 2], dgamma: [1, 0] }, false, 'dgamma'],
  ['backward', { dy: [0, 0], dx: [1, 0] }, true],
  ['moments', { mean: [0, 0], variance: [1, 0] }, false, 'mean'],
  ['update', { runningMean: [0, 0], runningVar: [1, 0] }, false, 'runningMean'],
  ['update', { mean: [0, 0], runningVar: [1, 1] }, false, 'runningVar'],
];

let refused = 0, allowed = 0;
for (const kind of ['structuredClone', 'worker', 'wasm-grow', 'same-buffer']) {
  for (const [op, placements, isAllowed, blamed] of CASES) {
    const modes = OPS[op] ? ['sync', 'inline', 'pool'] : ['sync', 'inline'];
    for (const mode of modes) {
      const s = SHAPES[mode === 'pool' ? 'pool' : 'inline'];
      const spec = specOf(op);
      const args = spec.args(Float32Array, s, 11);
      const names = Object.keys(placements);
      const bytes = 4 * (Math.max(...names.map((k) => args[at(k)].length)) + 8);
      const pair = await twins(kind, bytes);
      check(kind === 'same-buffer' || pair[0] !== pair[1], `${kind}: the twins are one object`);
      // highest slot first: an in-place output's view gets its input's values last
      for (const name of names.sort((p, q) => at(q) - at(p))) {
        const [which, offset] = placements[name];
        const view = new Float32Array(pair[which], offset * 4, args[at(name)].length);
        view.set(args[at(name)]);
        args[at(name)] = view;
      }
      const label = `${op} ${mode} via ${kind} (${names.join(', ')})`;
      const memoryBefore = new Uint8Array(pair[0]).slice();
      const plainBefore = args.map((a) => (a ? bytesOf(a) : null));
      let error = null, result;
      try {
        result = mode === 'sync' ? b.run(...args) : await b.runAsync(...args);
      } catch (e) {
        error = e;
      }
      if (!isAllowed) {
        check(error instanceof Error && error.message === `internal error: ${op}: overlap (tensor ${blamed})`,
          `${label}: expected an overlap naming tensor ${blamed}; got ${error ?? `no error (${result})`}`);
        check(sameBits(new Uint8Array(pair[0]), memoryBefore), `${label}: the shared memory was written`);
        args.forEach((a, i) => {
          if (plainBefore[i]) check(sameBits(a, plainBefore[i]), `${label}: argument ${i + 1} was written`);
        });
        refused++;
      } else {
        check(error === null, `${label}: an allowed in-place alias was refused: ${error}`);
        // the same call in place on plain arrays
        const plain = spec.args(Float32Array, s, 11);
        const [out, into] = names.map(at).sort((p, q) => q - p);
        plain[out] = plain[into];
        const expectedResult = b.run(...plain);
        check(result === expectedResult, `${label}: returned ${result}, in place on plain arrays ${expectedResult}`);
        plain.forEach((a, k) => {
          if (k > 0 && a) check(sameBits(args[k], a), `${label}: '${SLOT_NAMES[k - 1]}' differs from the in-place call on plain arrays`);
        });
        allowed++;
      }
    }
  }
}
await worker.terminate();
console.log(`aliasing: ${refused} overlaps refused with nothing written, ${allowed} exact in-place aliases taken`);
