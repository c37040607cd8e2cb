/**
 * `simdnorm bench`: a quick benchmark of this installation's own backends, with nothing but the
 * package itself (no peers, no dev dependencies). For each backend and op: warm-up, then
 * interleaved rounds (every subject one sample per round, the copy baseline included), medians
 * with min–max. The baseline is a same-run copy of the tensor (TypedArray.prototype.set), scaled
 * to the bytes each op must move, so "÷ copy" says how close an op runs to memory speed on this
 * machine right now. The full comparison with tfjs and onnxruntime is the repository's
 * `npm run bench` (bench/).
 */
import { batchNormBackward, batchNormInfer, batchNormTrain, type FloatArray, type Layout } from './api.js';
import type { BackendName } from './backend.js';
import { backends, withBackend } from './registry.js';

export interface BenchCase {
  label: string;
  shape: number[];
  layout: Layout;
}

export type BenchOp = 'train' | 'infer' | 'backward';

export interface BenchOptions {
  /** default: every available backend */
  backends?: BackendName[];
  dtype?: 'float32' | 'float64';
  /** interleaved rounds (default 7) */
  rounds?: number;
  /** target duration of one sample in ms (default 20) */
  sampleMs?: number;
  /** cases (default: NCHW [16,64,32,32], NHWC [16,32,32,64], NC [256,1024]) */
  cases?: BenchCase[];
  /** called as the run goes: step `done` of `total`, and what is running */
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface BenchTiming {
  case: string;
  op: BenchOp | 'copy';
  backend: BackendName | 'js-copy';
  /** per call, in ms */
  median: number;
  min: number;
  max: number;
  /** median over the same-run copy time scaled to the op's bytes (1 = as fast as a copy) */
  overCopy?: number;
}

export interface BenchReport {
  dtype: 'float32' | 'float64';
  rounds: number;
  backends: { name: BackendName; details?: Record<string, unknown> }[];
  timings: BenchTiming[];
  text: string;
}

export const DEFAULT_BENCH_CASES: readonly BenchCase[] = Object.freeze([
  { label: 'NCHW [16,64,32,32]', shape: [16, 64, 32, 32], layout: 'channels-first' },
  { label: 'NHWC [16,32,32,64]', shape: [16, 32, 32, 64], layout: 'channels-last' },
  { label: 'NC [256,1024]', shape: [256, 1024], layout: 'channels-first' },
]);

/** Element accesses per element: an op's bytes over a copy's (read + write = 2). */
const ACCESSES: Record<BenchOp, number> = { infer: 2, train: 3, backward: 5 };
const OPS: readonly BenchOp[] = ['train', 'infer', 'backward'];

const now = (): number => performance.now();

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Time per call (ms) of `reps` back-to-back calls. */
function sample(run: () => void, reps: number): number {
  const t0 = now();
  for (let i = 0; i < reps; i++) run();
  return (now() - t0) / reps;
}

/** Warm-up (~3 samples' worth) and the reps that make one sample last about sampleMs. */
function calibrate(run: () => void, sampleMs: number): number {
  let perCall = sample(run, 1);
  let spent = perCall;
  let reps = 1;
  while (spent < 3 * sampleMs) {
    reps = Math.max(1, Math.min(reps * 2, Math.ceil(sampleMs / Math.max(perCall, 1e-4))));
    perCall = sample(run, reps);
    spent += perCall * reps;
  }
  return Math.max(1, Math.round(sampleMs / Math.max(perCall, 1e-4)));
}

function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toPrecision(3)} s`;
  if (ms >= 1) return `${ms.toPrecision(3)} ms`;
  if (ms >= 1e-3) return `${(ms * 1e3).toPrecision(3)} µs`;
  return `${(ms * 1e6).toPrecision(3)} ns`;
}

/** fn with calls going to the subject's backend (the copy baseline needs none). */
function on<R>(s: Subject, fn: () => R): R {
  return s.backend === 'js-copy' ? fn() : withBackend(s.backend, fn);
}

interface Subject {
  backend: BackendName | 'js-copy';
  op: BenchOp | 'copy';
  run: () => void;
  reps: number;
  samples: number[];
}

/** Runs the quick benchmark synchronously (a few seconds to a minute, the js backend being the slow one). */
export function bench(options: BenchOptions = {}): BenchReport {
  const dtype = options.dtype ?? 'float32';
  const rounds = options.rounds ?? 7;
  const sampleMs = options.sampleMs ?? 20;
  const cases = options.cases ?? DEFAULT_BENCH_CASES;
  const status = backends().filter((b) => b.available && (!options.backends || options.backends.includes(b.name)));
  const make = (length: number, fill = 0): FloatArray => {
    const a = dtype === 'float32' ? new Float32Array(length) : new Float64Array(length);
    return fill === 0 ? a : a.fill(fill);
  };
  const timings: BenchTiming[] = [];
  const steps = cases.length * (1 + status.length * OPS.length) * (rounds + 1);
  let done = 0;
  const progress = (what: string) => options.onProgress?.(done, steps, what);

  for (const c of cases) {
    const n = c.shape.reduce((a, b) => a * b, 1);
    const C = c.shape[c.layout === 'channels-first' ? 1 : c.shape.length - 1];
    let seed = 12345;
    const random = (length: number): FloatArray => {
      const a = make(length);
      for (let i = 0; i < length; i++) a[i] = ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2;
      return a;
    };
    const x = random(n);
    const dy = random(n);
    const copyOut = make(n);
    const params = () => ({ gamma: make(C, 1), beta: make(C) });
    const subjects: Subject[] = [{ backend: 'js-copy', op: 'copy', run: () => copyOut.set(x), reps: 1, samples: [] }];
    for (const b of status) {
      const { gamma, beta } = params();
      const runningMean = make(C);
      const runningVar = make(C, 1);
      const y = make(n);
      const dx = make(n);
      const mean = make(C);
      const invStd = make(C);
      const dgamma = make(C);
      const dbeta = make(C);
      const opts = { layout: c.layout };
      const shape = c.shape;
      withBackend(b.name, () => batchNormTrain({ x, shape, gamma, beta }, opts, { y, mean, invStd }));
      const runs: Record<BenchOp, () => void> = {
        train: () => void batchNormTrain({ x, shape, gamma, beta, runningMean, runningVar }, opts, { y, mean, invStd }),
        infer: () => void batchNormInfer({ x, shape, runningMean, runningVar, gamma, beta }, opts, { y }),
        backward: () => void batchNormBackward({ dy, x, shape, mean, invStd, gamma }, opts, { dx, dgamma, dbeta }),
      };
      for (const op of OPS) subjects.push({ backend: b.name, op, run: runs[op], reps: 1, samples: [] });
    }
    for (const s of subjects) {
      progress(`${c.label}: warming up ${s.backend} ${s.op}`);
      s.reps = on(s, () => calibrate(s.run, sampleMs));
      done++;
    }
    for (let r = 0; r < rounds; r++) {
      // Rotating order, so no subject always runs right after the same one.
      for (let k = 0; k < subjects.length; k++) {
        const s = subjects[(k + r) % subjects.length];
        progress(`${c.label}: round ${r + 1}/${rounds} ${s.backend} ${s.op}`);
        s.samples.push(on(s, () => sample(s.run, s.reps)));
        done++;
      }
    }
    const copy = median(subjects[0].samples);
    for (const s of subjects) {
      const m = median(s.samples);
      const t: BenchTiming = { case: c.label, op: s.op, backend: s.backend, median: m, min: Math.min(...s.samples), max: Math.max(...s.samples) };
      if (s.op !== 'copy') t.overCopy = m / ((copy * ACCESSES[s.op]) / 2);
      timings.push(t);
    }
  }
  options.onProgress?.(steps, steps, 'done');

  const lines = [
    `simdnorm bench — ${dtype}, ${rounds} interleaved rounds, per call: median (min–max); ÷copy: time over a same-run copy of the tensor scaled to the op's bytes (1.00 = memory speed)`,
  ];
  for (const b of status) {
    const d = b.details ? Object.entries(b.details).map(([k, v]) => `${k}=${String(v)}`).join(' ') : '';
    lines.push(`  ${b.name}: ${d}`);
  }
  for (const c of cases) {
    const n = c.shape.reduce((a, b) => a * b, 1);
    lines.push('', `${c.label} ${dtype} — ${n} elements`);
    const copy = timings.find((t) => t.case === c.label && t.op === 'copy')!;
    lines.push(`  copy (TypedArray.set): ${formatMs(copy.median)} (${formatMs(copy.min)}–${formatMs(copy.max)})`);
    const header = `  ${''.padEnd(8)}` + OPS.map((op) => `${op.padStart(27)} ${'÷copy'.padStart(6)}`).join('');
    lines.push(header);
    for (const b of status) {
      let row = `  ${b.name.padEnd(8)}`;
      for (const op of OPS) {
        const t = timings.find((x) => x.case === c.label && x.op === op && x.backend === b.name)!;
        const cell = `${formatMs(t.median)} (${formatMs(t.min)}–${formatMs(t.max)})`;
        const ratio = t.overCopy! < 10 ? t.overCopy!.toFixed(2) : t.overCopy!.toPrecision(3);
        row += `${cell.padStart(27)} ${ratio.padStart(6)}`;
      }
      lines.push(row);
    }
  }
  return {
    dtype,
    rounds,
    backends: status.map((b) => ({ name: b.name, details: b.details })),
    timings,
    text: lines.join('\n'),
  };
}
