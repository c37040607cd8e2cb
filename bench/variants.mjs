// The BatchNorm variants against plain BatchNorm in the same run (issue 15's "at most 1.1×"):
// Batch Renormalization and ghost BatchNorm training forward and backward, and the fused
// BatchNorm + residual add + ReLU (README "BatchNorm variants": training forward, inference and
// backward) against BatchNorm + relu alone (the fusion moves one more tensor: z read in the
// forward, dz written in the backward) and against BatchNorm followed by a separate add and relu
// in JS, on NCHW [32, 64, 56, 56] float32 with the native backend on 1 thread.
// Rows are timed interleaved (one sample of every row per round, the order rotating by round);
// the table gives each row's median time per call, its min–max, and its ratio to the first row
// of the same op; after it, each fused row's ratio to the unfused composition of its op.
// A measurement, not a test: nothing here is a pass/fail threshold.
//
// --clock cpu (the default) times each sample by the process's CPU time (process.cpuUsage: on a
// machine shared with other work, waiting for a core stretches wall time, not CPU time; with
// --threads 1 the kernels run on this thread alone); --clock wall by performance.now().
//
//   npm run build && node bench/variants.mjs [--rounds 15] [--shape 32,64,56,56] [--threads 1]
//                                            [--backend native] [--filter <regex>] [--clock cpu|wall]
import { existsSync } from 'node:fs';

const dist = new URL('../dist/index.js', import.meta.url);
if (!existsSync(dist)) {
  console.error('bench/variants.mjs runs dist/: npm run build first');
  process.exit(1);
}
const simdnorm = await import(dist.href);

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const rounds = Number(arg('rounds', 15));
const shape = arg('shape', '32,64,56,56').split(',').map(Number);
const threads = Number(arg('threads', 1));
const backend = arg('backend', 'native');
const filter = new RegExp(arg('filter', '.'));
const sampleMs = 40; // one sample: calls repeated to about this long
const clock = arg('clock', 'cpu');
const now = clock === 'cpu' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function fill(n, seed, offset = 0) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = offset + s / 2 ** 32 - 0.5;
  }
  return a;
}

await simdnorm.ready();
simdnorm.useBackend(backend);
if (backend !== 'js') simdnorm.setThreads(threads);
const [N, C] = shape;
const elements = shape.reduce((a, b) => a * b, 1);
const x = fill(elements, 1, 0.25);
const dy = fill(elements, 2);
const z = fill(elements, 3); // the residual
const gamma = new Float32Array(C).fill(1.5);
const beta = new Float32Array(C).fill(0.1);
const runningMean = new Float32Array(C).fill(0.1);
const runningVar = new Float32Array(C).fill(0.9);
const y = new Float32Array(elements);
const dx = new Float32Array(elements);
const mean = new Float32Array(C);
const invStd = new Float32Array(C);
const hasFused = typeof simdnorm.batchNormTrain === 'function' && fusedSupported();
const ghost = 4; // virtual batches
const gMean = new Float32Array(ghost * C);
const gInvStd = new Float32Array(ghost * C);
const renorm = { rmax: 3, dmax: 5 };
const base = { x, shape, gamma, beta, runningMean, runningVar };
// Saved statistics and r/d for the backward rows (one forward call each, untimed).
const bnSaved = simdnorm.batchNormTrain(base, {}, { y: new Float32Array(elements), mean, invStd });
const rnSaved = simdnorm.batchNormTrain(base, { renorm }, { y: new Float32Array(elements), mean: new Float32Array(C), invStd: new Float32Array(C) });
simdnorm.batchNormTrain(base, { virtualBatchSize: N / ghost }, { y: new Float32Array(elements), mean: gMean, invStd: gInvStd });
const reluY = simdnorm.batchNormTrain(base, { activation: 'relu' }, { y: new Float32Array(elements), mean: new Float32Array(C), invStd: new Float32Array(C) });
const fusedSaved = hasFused
  ? simdnorm.batchNormTrain({ ...base, residual: z }, { activation: 'relu' }, { y: new Float32Array(elements), mean: new Float32Array(C), invStd: new Float32Array(C) })
  : null;
const dz = new Float32Array(elements);
const sum = new Float32Array(elements);

/** Whether this build's batchNormTrain takes a residual (y changes with it). */
function fusedSupported() {
  try {
    const small = { x: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), shape: [4, 2] };
    const plain = simdnorm.batchNormTrain(small).y;
    const fused = simdnorm.batchNormTrain({ ...small, residual: new Float32Array(8).fill(10) }).y;
    return fused[0] !== plain[0];
  } catch {
    return false;
  }
}

/** y = max(a + b, 0), the add and relu a framework runs after an unfused BatchNorm. */
function addRelu(a, b, out) {
  for (let i = 0; i < out.length; i++) {
    const v = a[i] + b[i];
    out[i] = v < 0 ? 0 : v;
  }
}
/** The backward of addRelu: dz = dy masked by out > 0 (also the gradient of the BatchNorm output). */
function addReluBackward(grad, out, res) {
  for (let i = 0; i < res.length; i++) res[i] = out[i] > 0 ? grad[i] : 0;
}

// Each row: [group (the op), label, call]; the first row of a group is the baseline of its ratio.
const rows = [
  ['train fwd', 'BatchNorm', () => simdnorm.batchNormTrain(base, {}, { y, mean, invStd })],
  ['train fwd', 'Batch Renorm (rmax 3, dmax 5)', () => simdnorm.batchNormTrain(base, { renorm }, { y, mean, invStd })],
  ['train fwd', `ghost BatchNorm (virtualBatchSize ${N / ghost})`, () => simdnorm.batchNormTrain(base, { virtualBatchSize: N / ghost }, { y, mean: gMean, invStd: gInvStd })],
  ['backward', 'BatchNorm', () => simdnorm.batchNormBackward({ dy, x, shape, mean: bnSaved.mean, invStd: bnSaved.invStd, gamma }, {}, { dx })],
  ['backward', 'Batch Renorm', () => simdnorm.batchNormBackward({ dy, x, shape, mean: rnSaved.mean, invStd: rnSaved.invStd, gamma, r: rnSaved.r, d: rnSaved.d }, {}, { dx })],
  ['backward', 'ghost BatchNorm', () => simdnorm.batchNormBackward({ dy, x, shape, mean: gMean, invStd: gInvStd, gamma }, { virtualBatchSize: N / ghost }, { dx })],
  ['residual fwd', 'BatchNorm + relu (fused, no residual)', () => simdnorm.batchNormTrain(base, { activation: 'relu' }, { y, mean, invStd })],
  ['residual fwd', 'BatchNorm, then add + relu in JS', () => {
    simdnorm.batchNormTrain(base, {}, { y, mean, invStd });
    addRelu(y, z, sum);
  }],
  ['residual infer', 'BatchNorm inference + relu (fused, no residual)', () => simdnorm.batchNormInfer(base, { activation: 'relu' }, { y })],
  ['residual infer', 'BatchNorm inference, then add + relu in JS', () => {
    simdnorm.batchNormInfer(base, {}, { y });
    addRelu(y, z, sum);
  }],
  ['residual bwd', 'BatchNorm backward + relu mask', () => simdnorm.batchNormBackward({ dy, x, shape, mean, invStd, gamma, y: reluY.y }, { activation: 'relu' }, { dx })],
  ['residual bwd', 'relu mask in JS, then BatchNorm backward', () => {
    addReluBackward(dy, reluY.y, dz);
    simdnorm.batchNormBackward({ dy: dz, x, shape, mean, invStd, gamma }, {}, { dx });
  }],
];
/** The fused row of a group goes right after its first row (the first is the ratio's baseline). */
const insertAfterFirst = (group, row) => rows.splice(rows.findIndex(([g]) => g === group) + 1, 0, row);
if (fusedSaved) {
  insertAfterFirst('residual fwd', ['residual fwd', 'BatchNorm + residual + relu (fused)', () => simdnorm.batchNormTrain({ ...base, residual: z }, { activation: 'relu' }, { y, mean, invStd })]);
  insertAfterFirst('residual infer', ['residual infer', 'BatchNorm inference + residual + relu (fused)', () => simdnorm.batchNormInfer({ ...base, residual: z }, { activation: 'relu' }, { y })]);
  insertAfterFirst('residual bwd', ['residual bwd', 'fused backward (dx, dz)', () =>
    simdnorm.batchNormBackward({ dy, x, shape, mean: fusedSaved.mean, invStd: fusedSaved.invStd, gamma, y: fusedSaved.y, residual: z }, { activation: 'relu' }, { dx, dz })]);
}
const chosen = rows.filter(([group, label]) => filter.test(`${group} ${label}`));

// Calibration: calls per sample, so one sample takes about sampleMs.
const reps = chosen.map(([, , call]) => {
  for (let i = 0; i < 3; i++) call();
  const t0 = now();
  call();
  return Math.max(1, Math.round(sampleMs / Math.max(now() - t0, 0.01)));
});
const samples = chosen.map(() => []);
for (let round = 0; round < rounds; round++) {
  for (let k = 0; k < chosen.length; k++) {
    const i = (k + round) % chosen.length;
    const call = chosen[i][2];
    const t0 = now();
    for (let r = 0; r < reps[i]; r++) call();
    samples[i].push((now() - t0) / reps[i]);
  }
}

const details = simdnorm.backendDetails?.() ?? {};
console.log(`NCHW [${shape.join(',')}] float32 · ${backend} ×${threads}${details.simd ? ` (${details.simd})` : ''} · ${clock} clock · ${rounds} interleaved rounds · median (min–max) per call`);
console.log('| op | row | median ms | min–max ms | vs first row |');
console.log('|---|---|---:|---:|---:|');
const baseline = {};
for (let i = 0; i < chosen.length; i++) {
  const [group, label] = chosen[i];
  const m = median(samples[i]);
  baseline[group] ??= m;
  const lo = Math.min(...samples[i]);
  const hi = Math.max(...samples[i]);
  console.log(`| ${group} | ${label} | ${m.toFixed(2)} | ${lo.toFixed(2)}–${hi.toFixed(2)} | ${(m / baseline[group]).toFixed(2)}× |`);
}
// The fusion's value: each fused row against the composition (BatchNorm, then add + relu in JS) of its op.
for (const group of ['residual fwd', 'residual infer', 'residual bwd']) {
  const at = (pattern) => chosen.findIndex(([g, label]) => g === group && pattern.test(label));
  const fused = at(/residual \+ relu \(fused\)|fused backward/);
  const composed = at(/in JS/);
  if (fused < 0 || composed < 0) continue;
  const ratio = median(samples[fused]) / median(samples[composed]);
  console.log(`${group}: fused ${ratio.toFixed(2)}× the time of the composition (${chosen[composed][1]})`);
}
