/**
 * The layers' training step (forward + backward) on wasm, with the layer's arrays in the module
 * memory (a layer made on wasm: README "Layers on WASM") against the same layer of ordinary JS
 * arrays (its calls copy in and out), on 1 thread and on every thread, and against native ×1 —
 * in one process, interleaved rounds (each subject one sample per round, rotating order), medians.
 *
 *   node bench/layers.mjs [--layer batchnorm|groupnorm|layernorm] [--shape 32,64,56,56] [--layout nchw|nhwc]
 *                         [--rounds 9] [--clock wall|cpu]
 *
 * The input and the upstream gradient are in module memory for the zero-copy layer (as the
 * previous layer's output would be) and ordinary arrays for the copying one. A tool, not run by CI;
 * needs `npm run build` first (it measures dist/).
 */
import { performance } from 'node:perf_hooks';
import * as s from '../dist/index.js';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const layerName = args.layer ?? 'batchnorm';
const layout = args.layout ?? 'nchw';
const shape = (args.shape ?? (layout === 'nhwc' ? '32,56,56,64' : '32,64,56,56')).split(',').map(Number);
const rounds = Number(args.rounds ?? 9);
const clock = args.clock ?? 'wall';
const n = shape.reduce((a, b) => a * b, 1);
const C = layout === 'nhwc' ? shape[shape.length - 1] : shape[1];
const opts = { layout: layout === 'nhwc' ? 'channels-last' : 'channels-first' };

await s.ready();
const now = clock === 'cpu' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();

function makeLayer() {
  if (layerName === 'batchnorm') return new s.BatchNorm(C, opts);
  if (layerName === 'groupnorm') return new s.GroupNorm(C / 2 >= 32 ? 32 : 1, C, opts);
  if (layerName === 'layernorm') return new s.LayerNorm(shape.slice(1));
  throw new RangeError(`--layer must be batchnorm, groupnorm or layernorm, received ${layerName}`);
}

const fill = (a) => { for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 0.37) * 2 + 0.5; return a; };
const xPlain = fill(new Float32Array(n));
const dyPlain = fill(new Float32Array(n)).map((v) => v * 1e-3);

const wasmThreads = (s.backends().find((b) => b.name === 'wasm')?.details?.workers ?? 0) + 1;
const subjects = [];
/** madeOn: the backend the layer is made on (wasm: arrays in module memory); runOn: the one its steps run on. */
function subject(label, madeOn, runOn, threads) {
  s.useBackend(madeOn);
  const layer = makeLayer();
  const zeroCopy = layer.inWasmMemory;
  let x = () => xPlain, dy = () => dyPlain;
  if (zeroCopy) {
    const xb = s.wasmMemory.alloc(Float32Array, n), db = s.wasmMemory.alloc(Float32Array, n);
    xb.array.set(xPlain);
    db.array.set(dyPlain);
    x = () => xb.array; // read again: the memory may have grown
    dy = () => db.array;
  }
  subjects.push({
    label,
    zeroCopy,
    step() {
      s.useBackend(runOn);
      s.setThreads(threads);
      layer.forward(x(), shape);
      layer.backward(dy());
    },
    times: [],
  });
}
subject('native ×1', 'native', 'native', 1);
subject('wasm ×1, JS arrays (copied)', 'js', 'wasm', 1);
subject('wasm ×1, layer made on wasm (zero-copy)', 'wasm', 'wasm', 1);
if (wasmThreads > 1) {
  subject(`native ×${wasmThreads}`, 'native', 'native', wasmThreads);
  subject(`wasm ×${wasmThreads}, JS arrays (copied)`, 'js', 'wasm', wasmThreads);
  subject(`wasm ×${wasmThreads}, layer made on wasm (zero-copy)`, 'wasm', 'wasm', wasmThreads);
}
for (const sub of subjects) sub.step(); // warm-up (allocates every layer's blocks)
for (const sub of subjects) sub.step();
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < subjects.length; k++) {
    const sub = subjects[(k + r) % subjects.length];
    const t0 = now();
    sub.step();
    sub.times.push(now() - t0);
  }
}
s.useBackend('auto');
s.setThreads(0);
const median = (a) => { const b = [...a].sort((p, q) => p - q); return b[b.length >> 1]; };
const base = median(subjects[0].times);
console.log(`${layerName} training step (forward + backward), ${layout.toUpperCase()} [${shape}], ${rounds} interleaved rounds, ${clock} clock, median ms (÷ native ×1)`);
for (const sub of subjects) {
  const m = median(sub.times);
  console.log(`  ${sub.label.padEnd(48)} ${m.toFixed(2).padStart(9)} ms  ×${(m / base).toFixed(2)}${sub.zeroCopy ? '  (arrays in module memory)' : ''}`);
}
