#!/usr/bin/env node
// Per-call overhead on small tensors against issue 17's budgets: µs per call (process CPU time,
// medians of interleaved rounds, the plain JS loop timed in the same rounds), through the public
// API of a built tree (dist/).
//
//   node bench/overhead.mjs [--dist <dir>] [--base <dir>] [--rounds 15] [--json] [--wall]
//
// --dist: another tree's dist/ instead of this one's. --base: a second tree's dist/ (a base
// worktree, as bench/ab.mjs makes) loaded in the same process and timed in the same interleaved
// rounds: a before/after table from one run.
// A tool, not a test: not run by npm test or CI.
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { plainJsCalls } from './contenders/plainjs.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: args } = parseArgs({
  options: {
    dist: { type: 'string' }, base: { type: 'string' }, rounds: { type: 'string', default: '15' }, json: { type: 'boolean', default: false },
    wall: { type: 'boolean', default: false },
  },
});
const dist = resolve(args.dist ?? join(root, 'dist'));
delete process.env.SIMDNORM_NATIVE_PATH; // each side loads the addon of its own tree
delete process.env.SIMDNORM_BACKEND;
const load = async (dir) => {
  const api = await import(pathToFileURL(join(dir, 'index.js')).href);
  await api.ready();
  return api;
};
// sides[0] is measured; sides[1] (--base) is the before column
const sides = [await load(dist), ...(args.base ? [await load(resolve(args.base))] : [])];
const rounds = Math.max(5, Number(args.rounds));

function filled(n, seed, scale = 1, offset = 0) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = offset + scale * (s / 4294967296 - 0.5);
  }
  return a;
}

/** The data of an NC… shape: inputs and caller-owned outputs. */
function dataOf(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const C = shape[1];
  return {
    shape, x: filled(n, 1, 4, 3), dy: filled(n, 2), gamma: filled(C, 3, 0.5, 1), beta: filled(C, 4),
    runningMean: filled(C, 5), runningVar: filled(C, 6, 0.2, 1), mean: filled(C, 7, 0.2, 3), invStd: filled(C, 8, 0.2, 1),
    y: new Float32Array(n), bmean: new Float32Array(C), binvStd: new Float32Array(C), dx: new Float32Array(n), dgamma: new Float32Array(C), dbeta: new Float32Array(C),
  };
}

/** One op through the public functions of `api`, outputs given, on `backend`. */
function apiCall(api, op, d, backend) {
  const { x, shape, gamma, beta, dy } = d;
  const rm = d.runningMean.slice(), rv = d.runningVar.slice();
  const enter = () => api.useBackend(backend);
  const call = {
    infer: () => api.batchNormInfer({ x, shape, runningMean: d.runningMean, runningVar: d.runningVar, gamma, beta }, undefined, { y: d.y }),
    train: () => api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm, runningVar: rv }, undefined, { y: d.y, mean: d.bmean, invStd: d.binvStd }),
    backward: () => api.batchNormBackward({ dy, x, shape, mean: d.mean, invStd: d.invStd, gamma }, undefined, { dx: d.dx, dgamma: d.dgamma, dbeta: d.dbeta }),
  }[op];
  return { enter, call };
}

/** The BatchNorm layer's training step: forward then backward, its outputs in caller buffers. */
function layerStep(api, d, backend) {
  const layer = new api.BatchNorm(d.shape[1]);
  const enter = () => api.useBackend(backend);
  return { enter, call: () => { layer.forward(d.x, d.shape, { y: d.y }); layer.backward(d.dy, { dx: d.dx }); } };
}

/** µs per call by the wall clock (the in-cache rows: two threads' span, not their work). */
function wallTime(call, reps) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) call();
  return Number(process.hrtime.bigint() - t0) / 1000 / reps;
}

function cpuTime(call, reps) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) call();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / reps; // µs per call
}
const median = (v) => {
  const s = [...v].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Medians (µs) of each subject over interleaved rounds of ~5–10 ms batches. */
function measure(subjects, time = cpuTime) {
  const reps = subjects.map((s) => {
    s.enter?.();
    // Warm up, then calibrate: the JIT (and wasm's tier-up) needs tens of thousands of calls
    // before a small call reaches its steady time.
    for (let spent = 0, r = 64; spent < 300000; r = Math.min(r * 2, 1 << 16)) spent += cpuTime(s.call, r) * r;
    let r = 1;
    while (cpuTime(s.call, r) * r < 5000 && r < 1 << 22) r *= 2;
    return r;
  });
  const samples = subjects.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < subjects.length; k++) {
      const i = (k + round) % subjects.length;
      subjects[i].enter?.();
      samples[i].push(time(subjects[i].call, reps[i]));
    }
  }
  return samples.map(median);
}

const available = new Set(sides[0].backends().filter((b) => b.available).map((b) => b.name));
const rows = [];
const add = (what, budget, us, baseline) => {
  rows.push({ what, budget, us, baseline });
  if (args.json) return;
  const b = budget === null ? '' : `<= ${budget}`;
  const before = us.length > 1 ? ` ${us[1].toFixed(2).padStart(8)} ->` : '';
  const ratio = us.length > 1 ? ` (${(us[0] / us[1]).toFixed(2)}x)` : '';
  const plain = baseline === undefined ? '' : `  ${what.includes('vs copy') ? 'in-cache copy' : 'plain JS'} ${baseline.toFixed(2)} us (${(us[0] / baseline).toFixed(2)}x)`;
  console.log(`${what.padEnd(40)}${before} ${us[0].toFixed(2).padStart(8)} us${ratio.padEnd(9)} ${b.padEnd(7)}${plain}`);
};

if (!args.json) {
  console.log(`${dist}${args.base ? ` (after) against ${resolve(args.base)} (before), in the same rounds` : ''}`);
  console.log(`us per call, process CPU time, medians of ${rounds} interleaved rounds`);
}
const TINY = [2, 3, 4, 5];
const MLP = [64, 256];
const budgets = { tiny: { infer: 1, train: 2, backward: 2 }, mlp: { train: 4, backward: 4 } };
/** Each op on every side and the plain loop, in the same rounds; add() a row per op. */
function cells(shape, ops, backend, label, budgetOf) {
  const d = dataOf(shape);
  const plain = plainJsCalls(d);
  const subjects = ops.flatMap((op) => [...sides.map((api) => apiCall(api, op, d, backend)), { call: plain[op] }]);
  const t = measure(subjects);
  const k = sides.length + 1;
  ops.forEach((op, i) => add(`${label} ${op}`, budgetOf(op), t.slice(k * i, k * i + sides.length), t[k * i + sides.length]));
}
for (const backend of ['auto', 'wasm']) {
  if (backend !== 'auto' && !available.has(backend)) continue;
  const scale = backend === 'wasm' ? 1.5 : 1;
  cells(TINY, Object.keys(budgets.tiny), backend, `${backend} [2,3,4,5]`, (op) => budgets.tiny[op] * scale);
  cells(MLP, Object.keys(budgets.mlp), backend, `${backend} [64,256]`, (op) => budgets.mlp[op] * scale);
}
// js against the plain JS loop under 1 K elements: at most 2x.
for (const shape of [TINY, [16, 60]]) cells(shape, ['infer', 'train', 'backward'], 'js', `js [${shape.join(',')}]`, () => null);
{
  const d = dataOf(MLP);
  const t = measure(sides.map((api) => layerStep(api, d, 'auto')));
  add('auto BatchNorm layer [64,256] fwd+bwd', 8, t);
}
// Issue 17's in-cache kernels: training forward and backward of tensors that fit in L2, native on
// one and on two threads, against an in-cache copy of x (Float32Array.prototype.set, one thread)
// timed in the same rounds. Process CPU time like the rest (x2: the work of both threads, which
// preemption on a shared machine does not stretch); --wall: the wall clock (x2: their span, what
// "two threads faster than one" asks, meaningful only on an otherwise idle machine). The copy is
// the floor of a pass that reads x and writes y.
for (const shape of [[256, 1024], [8, 256, 14, 14]]) {
  if (!available.has('native')) break;
  const d = dataOf(shape);
  const copy = { call: () => d.y.set(d.x) };
  for (const op of ['train', 'backward']) {
    const subjects = [];
    for (const threads of [1, 2]) {
      for (const api of sides) {
        const s = apiCall(api, op, d, 'native');
        subjects.push({ enter: () => { s.enter(); api.setThreads(threads); }, call: s.call });
      }
    }
    const t = measure([...subjects, copy], args.wall ? wallTime : cpuTime);
    const k = sides.length;
    for (let i = 0; i < 2; i++) add(`native x${i + 1} [${shape.join(',')}] ${op} (vs copy)`, null, t.slice(k * i, k * i + k), t[2 * k]);
  }
}
for (const api of sides) api.setThreads(0);
for (const api of sides) api.useBackend('auto');
if (args.json) console.log(JSON.stringify(rows, null, 1));
