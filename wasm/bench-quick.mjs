#!/usr/bin/env node
// Quick timing of the wasm backend on the two reference shapes (float32):
//   NCHW [32, 64, 56, 56] and NHWC [32, 56, 56, 64], train forward / infer / backward,
// each as the median of several runs, next to a same-run baseline: one Float32Array.prototype.set
// copy of the tensor (read 4 + write 4 bytes per element). "copying" = plain JS arrays (copied
// into module memory and back), "zero-copy" = arrays from backend.memory.alloc. Each call is a
// BatchNorm descriptor (dist/core/descriptor.js) run with backend.run.
//
//   npm run build && node wasm/bench-quick.mjs [--reps 9] [--variant simd128|scalar]
import { loadWasmBackendSync } from '../dist/backends/wasm-node.js';
import { Phase, Slot } from '../dist/core/abi.js';
import { makeNorm } from '../dist/core/descriptor.js';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const reps = Number(option('--reps', 9));
const variants = option('--variant', 'simd128,scalar').split(',');

function median(times) {
  const s = [...times].sort((a, b) => a - b);
  return s[s.length >> 1];
}
/** Median time of each function, their runs interleaved; one warm-up run each first. */
function timeInterleaved(fns) {
  for (const fn of fns) fn(); // warm-up (first touch, scratch growth)
  const times = fns.map(() => []);
  for (let i = 0; i < reps; i++) {
    fns.forEach((fn, k) => {
      const start = performance.now();
      fn();
      times[k].push(performance.now() - start);
    });
  }
  return times.map(median);
}

const shapes = [
  { name: 'NCHW [32,64,56,56]', g: { outer: 32, channels: 64, inner: 56 * 56 } },
  { name: 'NHWC [32,56,56,64]', g: { outer: 32 * 56 * 56, channels: 64, inner: 1 } },
];

for (const variant of variants) {
  const backend = loadWasmBackendSync(variant);
  for (const { name, g } of shapes) {
    const n = g.outer * g.channels * g.inner;
    const C = g.channels;
    const fill = (a) => {
      for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 0.37) * 2 + 1;
      return a;
    };
    const js = {
      x: fill(new Float32Array(n)), y: new Float32Array(n), dy: fill(new Float32Array(n)), dx: new Float32Array(n),
    };
    const mem = backend.memory;
    const blocks = { x: mem.alloc(Float32Array, n), y: mem.alloc(Float32Array, n), dy: mem.alloc(Float32Array, n), dx: mem.alloc(Float32Array, n) };
    blocks.x.array.set(js.x);
    blocks.dy.array.set(js.dy);
    const params = () => ({
      gamma: new Float32Array(C).fill(1.5), beta: new Float32Array(C).fill(0.25), mean: new Float32Array(C),
      invStd: new Float32Array(C), dgamma: new Float32Array(C), dbeta: new Float32Array(C),
      runningMean: new Float32Array(C), runningVar: new Float32Array(C).fill(1),
    });
    const p = params();
    // BatchNorm's descriptor: samples 1, outer N, stats C, inner spatial, γ/β by channel.
    const norm = (phase, scalars, tensors) => {
      const d = makeNorm(phase, tensors.x, { samples: 1, outer: g.outer, stats: C, inner: g.inner },
        { groups: C, size: 1, run: Math.max(1, g.inner) }, scalars);
      for (const [slot, a] of Object.entries(tensors)) d.tensors[Slot[slot]] = a;
      return backend.run(d);
    };
    const ops = (t) => ({
      train: () => norm(Phase.train, { eps: 1e-5, factor: 0.1, varScale: 1 }, {
        x: t.x, gamma: p.gamma, beta: p.beta, y: t.y, mean: p.mean, invStd: p.invStd,
        runningMean: p.runningMean, runningVar: p.runningVar,
      }),
      infer: () => norm(Phase.infer, { eps: 1e-5 }, {
        x: t.x, runningMean: p.runningMean, runningVar: p.runningVar, gamma: p.gamma, beta: p.beta, y: t.y,
      }),
      backward: () => norm(Phase.backward, { training: true }, {
        dy: t.dy, x: t.x, mean: p.mean, invStd: p.invStd, gamma: p.gamma, dx: t.dx, dgamma: p.dgamma, dbeta: p.dbeta,
      }),
    });
    const copying = ops(js);
    // Views re-read at each call: the copying runs grow the memory, which detaches older views.
    const zero = ops({
      get x() { return blocks.x.array; }, get y() { return blocks.y.array; },
      get dy() { return blocks.dy.array; }, get dx() { return blocks.dx.array; },
    });
    const copyTarget = new Float32Array(n);
    const copy = () => copyTarget.set(js.x);
    console.log(`${variant} ${name}  (medians of ${reps}; baseline runs interleaved with each op's runs)`);
    for (const op of ['train', 'infer', 'backward']) {
      // Interleaved, so that a noisy neighbour slows baseline and kernel alike.
      const [b, c, z] = timeInterleaved([copy, copying[op], zero[op]]);
      console.log(
        `  ${op.padEnd(8)} copy ${b.toFixed(2).padStart(6)} ms (${((8 * n) / b / 1e6).toFixed(1)} GB/s)` +
          `   copying ${c.toFixed(2).padStart(6)} ms = ${(c / b).toFixed(2)}x copy` +
          `   zero-copy ${z.toFixed(2).padStart(6)} ms = ${(z / b).toFixed(2)}x copy`,
      );
    }
    for (const b of Object.values(blocks)) b.free();
    backend.memory.releaseScratch();
  }
}
