#!/usr/bin/env node
// Same-run A/B: the working tree against a base revision, both loaded in ONE process and timed
// interleaved, for refactors that must not lose performance (issue 13).
//
//   node bench/ab.mjs --base <git rev> [--rounds 15] [--filter <regex>] [--no-rerun] [--reruns 5]
//                     [--committed-wasm] [--quick] [--clock wall|cpu]
//
// The base is checked out with `git worktree add --detach` into /tmp/simdnorm-ab-<sha> (kept and
// reused by later runs; `git worktree remove` it when done) and built there: lib/ with tsc into
// its dist/, the addon with node-gyp (native/build.mjs --gyp), the wasm module with emscripten
// (wasm/build.mjs; --committed-wasm uses the base's committed wasm/bin instead, which CI's
// check:wasm keeps equal to a fresh build). The current side is the working tree as built: run
// `npm run build`, `npm run build:native` (and `npm run build:wasm` after kernel changes) first.
//
// Each side is driven through its OWN public API (dist/index.js of its tree, which loads that
// tree's addon and wasm), so the harness survives changes of the backend interface or the ABI;
// the façade's per-call work is measured on both sides (it matters only for tiny shapes).
// Per task (shape × op × mode): the outputs of both sides are compared bit for bit once, then
// each of ≥ 15 rounds times a batch of calls on each side (the order alternating by round; both
// sides read the same inputs and write the same output arrays, so that where an allocation
// happens to start is not charged to one side); the
// table gives each side's median time per call and the ratio after/before (current/base);
// tasks above 1.05 are rerun in --reruns (5) new processes each, after a warm-up pass, with twice
// the rounds, and the median process's row kept (--no-rerun: not), and --filter <regex>
// (matched against "shape op mode", e.g. 'NHWC.*infer.*x2') runs a subset.
// A tool, not a test: not run by npm test or CI.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1];
}
const flag = (name) => process.argv.includes(name);

const baseRev = option('--base');
if (!baseRev) {
  console.error('usage: node bench/ab.mjs --base <git rev> [--rounds 15] [--filter <regex>] [--no-rerun] [--reruns 5] [--committed-wasm] [--quick] [--clock wall|cpu]');
  process.exit(2);
}
const rounds = Math.max(15, Number(option('--rounds', '15')));
const quick = flag('--quick');
const targetMs = quick ? 4 : 10; // time of one side's batch of calls in a round
// --clock cpu: the process's CPU time (user + system, every thread) instead of wall time. On a
// machine shared with other work, preemption stretches wall time but not CPU time; for the ×1 and
// wasm modes CPU time is the call's time, for ×2 it is the work of both threads (not their span).
const clock = option('--clock', 'wall');
if (clock !== 'wall' && clock !== 'cpu') {
  console.error(`--clock must be wall or cpu, received ${clock}`);
  process.exit(2);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

// ---- the base: a worktree, built ----------------------------------------------------------

const sha = execFileSync('git', ['rev-parse', '--verify', `${baseRev}^{commit}`], { cwd: root, encoding: 'utf8' }).trim();
const tree = `/tmp/simdnorm-ab-${sha.slice(0, 12)}`;
if (!existsSync(join(tree, 'package.json'))) {
  console.log(`base ${baseRev} = ${sha.slice(0, 12)}: git worktree add ${tree}`);
  run('git', ['worktree', 'add', '--detach', tree, sha], root);
}
if (!existsSync(join(tree, 'node_modules'))) symlinkSync(join(root, 'node_modules'), join(tree, 'node_modules'));
if (!existsSync(join(tree, 'dist', 'index.js'))) {
  console.log('base: tsc -> dist/');
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], tree);
}
if (!existsSync(join(tree, 'build', 'Release', 'simdnorm.node'))) {
  console.log('base: node native/build.mjs --gyp (a few minutes)');
  run(process.execPath, ['native/build.mjs', '--gyp'], tree);
}
if (!flag('--committed-wasm') && !existsSync(join(tree, 'build', 'ab-wasm-built'))) {
  console.log('base: node wasm/build.mjs (emscripten)');
  run(process.execPath, ['wasm/build.mjs'], tree);
  run('touch', [join('build', 'ab-wasm-built')], tree);
}
for (const [side, dir] of [['current', root], ['base', tree]]) {
  if (!existsSync(join(dir, 'dist', 'index.js'))) throw new Error(`${side}: ${dir}/dist/index.js missing (npm run build)`);
}
// The current side is measured as built: say so when a build is older than its sources.
function newest(dir, ext) {
  let t = 0;
  for (const f of readdirSync(join(root, dir), { recursive: true })) {
    if (ext.some((e) => String(f).endsWith(e))) t = Math.max(t, statSync(join(root, dir, String(f))).mtimeMs);
  }
  return t;
}
const mtime = (f) => (existsSync(join(root, f)) ? statSync(join(root, f)).mtimeMs : 0);
const stale = [
  [newest('lib', ['.ts']) > mtime('dist/index.js'), 'dist/ is older than lib/: npm run build'],
  [newest('native', ['.cpp', '.h']) > mtime('build/Release/simdnorm.node'), 'build/Release/simdnorm.node is older than native/: npm run build:native'],
  [Math.max(newest('native/kernels', ['.cpp', '.h']), mtime('wasm/abi.cpp')) > mtime('wasm/bin/simdnorm-simd.wasm'), 'wasm/bin is older than the kernels: npm run build:wasm'],
].filter(([is]) => is);
for (const [, what] of stale) console.warn(`*** current side: ${what}, if they changed: it is measured as built`);

// ---- both sides in this process ---------------------------------------------------------------

delete process.env.SIMDNORM_NATIVE_PATH; // each side loads the addon of its own tree
delete process.env.SIMDNORM_BACKEND;
const sides = {
  base: await import(pathToFileURL(join(tree, 'dist', 'index.js')).href),
  current: await import(pathToFileURL(join(root, 'dist', 'index.js')).href),
};
for (const [side, api] of Object.entries(sides)) {
  const found = api.backends().map((b) => `${b.name}${b.available ? '' : ' (unavailable)'}`);
  const native = api.withBackend('native', () => api.backends().find((b) => b.name === 'native'));
  const wasm = api.withBackend('wasm', () => api.backends().find((b) => b.name === 'wasm'));
  console.log(
    `${side.padEnd(7)} ${side === 'base' ? tree : root}: native ${native?.details?.simd} (${native?.details?.path}), wasm ${wasm?.details?.variant ?? wasm?.details?.simd}; backends ${found.join(', ')}`,
  );
}

const SHAPES = [
  { label: 'NCHW [32,64,56,56]', shape: [32, 64, 56, 56], layout: 'channels-first' },
  { label: 'NHWC [32,56,56,64]', shape: [32, 56, 56, 64], layout: 'channels-last' },
  { label: 'NC [256,1024]', shape: [256, 1024], layout: 'channels-first' },
  { label: 'NCHW [8,256,14,14]', shape: [8, 256, 14, 14], layout: 'channels-first' },
  { label: 'NCHW [2,3,4,5]', shape: [2, 3, 4, 5], layout: 'channels-first' },
];
const MODES = [
  { label: 'native x1', backend: 'native', threads: 1 },
  { label: 'native x2', backend: 'native', threads: 2 },
  // Each side's WASM variant as Node picks it (the header names them): the base's single-threaded
  // SIMD128 module, the current's threaded one since it exists (on one thread here).
  { label: 'wasm', backend: 'wasm', threads: 1 },
];
const OPS = ['train', 'infer', 'backward'];

function filled(n, seed, scale = 1, offset = 0) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = offset + scale * (s / 4294967296 - 0.5);
  }
  return a;
}

/** Outputs for one task: `into` of a task's two callers are the same arrays (see measure). */
function outputsFor(d) {
  const C = d.gamma.length, n = d.x.length;
  return { y: new Float32Array(n), mean: new Float32Array(C), invStd: new Float32Array(C), dx: new Float32Array(n), dgamma: new Float32Array(C), dbeta: new Float32Array(C) };
}

/** One side's call of an op on prepared data, writing into the outputs `o`. */
function caller(api, op, d, layout, o) {
  const rm = d.runningMean.slice(), rv = d.runningVar.slice();
  const { x, shape, gamma, beta, dy } = d;
  const calls = {
    train: () => api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm, runningVar: rv }, { layout }, { y: o.y, mean: o.mean, invStd: o.invStd }),
    infer: () => api.batchNormInfer({ x, shape, runningMean: d.runningMean, runningVar: d.runningVar, gamma, beta }, { layout }, { y: o.y }),
    backward: () => api.batchNormBackward({ dy, x, shape, mean: d.mean, invStd: d.invStd, gamma }, { layout }, { dx: o.dx, dgamma: o.dgamma, dbeta: o.dbeta }),
  };
  const outputs = op === 'backward' ? [o.dx, o.dgamma, o.dbeta] : op === 'train' ? [o.y, o.mean, o.invStd] : [o.y];
  return { call: calls[op], outputs };
}

const sameBits = (a, b) => a.every((x, i) => Buffer.from(x.buffer).equals(Buffer.from(b[i].buffer)));
const median = (v) => {
  const s = [...v].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
function time(call, reps) {
  if (clock === 'cpu') {
    const c0 = process.cpuUsage();
    for (let i = 0; i < reps; i++) call();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1e3 / reps;
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) call();
  return Number(process.hrtime.bigint() - t0) / 1e6 / reps;
}

/** The wall time in ms of the fastest of three batches of `reps` calls (for calibrating). */
function fastestBatch(call, reps) {
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) call();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const filter = option('--filter') ? new RegExp(option('--filter')) : null;
const datas = new Map();
function dataOf(s) {
  if (datas.has(s)) return datas.get(s);
  const n = s.shape.reduce((a, b) => a * b, 1);
  const C = s.shape[s.layout === 'channels-first' ? 1 : s.shape.length - 1];
  const d = {
    shape: s.shape, x: filled(n, 1, 4, 3), dy: filled(n, 2), gamma: filled(C, 3, 0.5, 1), beta: filled(C, 4),
    runningMean: filled(C, 5), runningVar: filled(C, 6, 0.2, 1), mean: filled(C, 7, 0.2, 3), invStd: filled(C, 8, 0.2, 1),
  };
  datas.clear(); // one shape's data alive at a time
  datas.set(s, d);
  return d;
}

/** Times one task: medians of `count` rounds per side, the order alternating by round. */
function measure(s, op, m, count) {
  const d = dataOf(s);
  for (const api of Object.values(sides)) {
    api.useBackend(m.backend);
    api.setThreads(m.threads);
  }
  // The bits: each side once into outputs of its own.
  const bOnce = caller(sides.base, op, d, s.layout, outputsFor(d)), cOnce = caller(sides.current, op, d, s.layout, outputsFor(d));
  bOnce.call();
  cOnce.call();
  const bits = sameBits(bOnce.outputs, cOnce.outputs) ? 'same' : 'DIFFER';
  // The times: both sides write the same output arrays. Two allocations of y differ in where they
  // start relative to x (mod 64 bytes), which moves a streaming kernel's time by up to 20% (NHWC
  // [32,56,56,64] infer native: 1.68 ms with x and y alike, 2.05 ms otherwise, either side), so
  // outputs of their own would charge an allocation to one side.
  const shared = outputsFor(d);
  const b = caller(sides.base, op, d, s.layout, shared), c = caller(sides.current, op, d, s.layout, shared);
  // Calibrate on the base, by the wall clock and the fastest of three batches, then warm both.
  // (The process CPU clock counts V8's background threads too: a batch that caught a burst of
  // them looked 5x slower, and a task that calibrated on it timed batches of 1 ms.)
  let reps = 1;
  while (fastestBatch(b.call, reps) < targetMs / 2 && reps < 1 << 20) reps *= 2;
  time(b.call, reps);
  time(c.call, reps);
  const tb = [], tc = [];
  for (let r = 0; r < count; r++) {
    if (r % 2 === 0) {
      tb.push(time(b.call, reps));
      tc.push(time(c.call, reps));
    } else {
      tc.push(time(c.call, reps));
      tb.push(time(b.call, reps));
    }
  }
  const mb = median(tb), mc = median(tc);
  return { shape: s.label, op, mode: m.label, base: mb, current: mc, ratio: mc / mb, bits, s, m };
}

const line = (r, note = '') =>
  `${r.shape.padEnd(20)} ${r.op.padEnd(9)} ${r.mode.padEnd(10)} ${r.base.toFixed(4).padStart(10)} ${r.current.toFixed(4).padStart(11)} ${r.ratio.toFixed(3).padStart(13)}  ${r.bits}${note}`;
const header = `${'shape'.padEnd(20)} ${'op'.padEnd(9)} ${'mode'.padEnd(10)} ${'base ms'.padStart(10)} ${'current ms'.padStart(11)} ${'after/before'.padStart(13)}  bits`;

const taskName = (s, op, m) => `${s.label} ${op} ${m.label}`;

// --child: one task (--filter), measured after a discarded warm-up pass, printed as JSON: the
// fresh-process rerun of an outlier (below).
if (flag('--child')) {
  const [s, op, m] = SHAPES.flatMap((s) => OPS.flatMap((op) => MODES.map((m) => [s, op, m]))).find(([s, op, m]) => filter?.test(taskName(s, op, m))) ?? [];
  if (!s) throw new Error(`--child: no task matches --filter ${option('--filter')}`);
  // The JIT and the memory of both sides settled, as in a full run: the process CPU clock also
  // counts V8's background compilation, which goes on for a while in a new process (wasm mode,
  // one task: ratios of 0.6-2.2 without this pass).
  measure(s, op, m, 45);
  const r = measure(s, op, m, rounds);
  console.log(`JSON ${JSON.stringify({ base: r.base, current: r.current, ratio: r.ratio, bits: r.bits })}`);
  process.exit(0);
}

/**
 * An outlier measured again in a new process: a rerun in this one keeps the same memory layout
 * (each side's wasm memory and scratch area, the heap's placement of its arrays), which moves a
 * task's time by several percent either way and would repeat the first outcome.
 */
function rerunFresh(o) {
  const exact = taskName(o.s, o.op, o.m).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const args = [fileURLToPath(import.meta.url), '--base', sha, '--clock', clock, '--rounds', String(2 * rounds), '--filter', `^${exact}$`, '--child'];
  if (flag('--committed-wasm')) args.push('--committed-wasm');
  if (quick) args.push('--quick');
  const out = run(process.execPath, args, root);
  const json = out.split('\n').find((l) => l.startsWith('JSON '));
  if (!json) throw new Error(`rerun of ${taskName(o.s, o.op, o.m)} printed no result:\n${out}`);
  return { ...o, ...JSON.parse(json.slice(5)) };
}

let rows = [];
console.log(`\n${rounds} rounds per task, each side's batch ~${targetMs} ms, order alternating; times are medians per call (${clock === 'cpu' ? 'process CPU time' : 'wall time'})`);
console.log(header);
for (const s of SHAPES) {
  for (const op of OPS) {
    for (const m of MODES) {
      if (filter && !filter.test(taskName(s, op, m))) continue;
      const row = measure(s, op, m, rounds);
      rows.push(row);
      console.log(line(row));
    }
  }
}
// Outliers (above 1.05) again, each in `reruns` new processes with twice the rounds: the row of
// the process with the median ratio replaces the first. One process's ratio is one draw of its
// memory placement (physical pages, hence cache sets, differ from process to process, and a
// tensor of 1-2 MiB moves by ±10% with them); the median of several draws is the code's.
const outliers = rows.filter((r) => r.ratio > 1.05);
const reruns = Math.max(1, Number(option('--reruns', '5')));
if (outliers.length && !flag('--no-rerun')) {
  console.log(`\nrerun of the ${outliers.length} above 1.05, each in ${reruns} new processes after a warm-up pass, ${2 * rounds} rounds; the median process:`);
  console.log(header);
  for (const o of outliers) {
    const draws = Array.from({ length: reruns }, () => rerunFresh(o)).sort((a, b) => a.ratio - b.ratio);
    const again = draws[(reruns - 1) >> 1];
    console.log(line(again, `   (first: ${o.ratio.toFixed(3)}; processes: ${draws.map((d) => d.ratio.toFixed(3)).join(' ')})`));
    rows = rows.map((r) => (r === o ? again : r));
  }
}
for (const api of Object.values(sides)) {
  api.setThreads(0);
  api.useBackend('auto');
}
const worst = rows.reduce((w, r) => (r.ratio > w.ratio ? r : w));
const ratios = rows.map((r) => r.ratio);
console.log(
  `\nafter/before: median ${median(ratios).toFixed(3)}, min ${Math.min(...ratios).toFixed(3)}, max ${worst.ratio.toFixed(3)} (${worst.shape} ${worst.op} ${worst.mode}); ` +
    `${rows.filter((r) => r.ratio > 1.05).length} of ${rows.length} above 1.05`,
);
