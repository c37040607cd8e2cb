/**
 * Concurrency: many async calls in flight at once, on distinct and on shared inputs, give
 * bitwise what sequential calls give (on native they run on libuv's pool while the kernels' own
 * pool is taken by one of them at a time; the thread count is changed mid-flight too); and
 * simdnorm used from worker_threads over SharedArrayBuffers (the functional API with one owner
 * updating the shared running statistics, and a BatchNorm layer per worker over a shared batch)
 * gives what the main thread computes.
 */
import { Worker } from 'node:worker_threads';
import { beforeAll, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { ensureDist } from './dist.js';
import { BACKENDS, channelsOf, compareOutput, ctor, describeBackend, normalData, product, sameBits, type DType, type FloatArray, type Layout } from './support.js';

beforeAll(() => ensureDist());

type Op = 'train' | 'infer' | 'backward';

interface Problem {
  op: Op;
  dtype: DType;
  layout: Layout;
  shape: number[];
  inPlace: boolean;
  seed: number;
}

const SHAPES: [DType, Layout, number[]][] = [
  ['float32', 'channels-first', [4, 3, 5, 5]], // small: serial
  ['float32', 'channels-first', [8, 16, 32, 32]], // 131072 elements: the kernels' pool
  ['float32', 'channels-last', [16, 24, 24, 8]], // 73728, rows path
  ['float64', 'channels-first', [3, 7, 11]],
  ['float64', 'channels-last', [6, 24, 24, 32]], // 110592 float64
  ['float32', 'channels-first', [2, 1, 70000]], // one channel, many blocks
];

/** 48 calls: every shape × op, in place now and then. */
function problems(): Problem[] {
  const list: Problem[] = [];
  for (let i = 0; i < 48; i++) {
    const [dtype, layout, shape] = SHAPES[i % SHAPES.length]!;
    list.push({ op: (['train', 'infer', 'backward'] as Op[])[Math.floor(i / SHAPES.length) % 3]!, dtype, layout, shape, inPlace: i % 5 === 4, seed: 1000 + i });
  }
  return list;
}

interface Inputs {
  x: FloatArray;
  dy: FloatArray;
  gamma: FloatArray;
  beta: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  yRelu: FloatArray;
}

/** The read-only inputs of a problem (shared between calls of the same shape when `seed` is). */
function inputs(p: Problem, seed: number): Inputs {
  const T = ctor(p.dtype);
  const n = product(p.shape);
  const C = channelsOf(p.shape, p.layout);
  const x = new T(normalData(n, seed, p.dtype, 2, 0.5));
  const gamma = new T(normalData(C, seed + 2, p.dtype, 0.3, 1));
  const beta = new T(normalData(C, seed + 3, p.dtype));
  const fwd = api.withBackend('js', () => api.batchNormTrain({ x, shape: p.shape, gamma, beta }, { layout: p.layout, activation: 'relu' }));
  return { x, dy: new T(normalData(n, seed + 1, p.dtype)), gamma, beta, mean: fwd.mean, invStd: fwd.invStd, yRelu: fwd.y };
}

/** Starts (or runs) one call; returns its outputs once settled. */
function call(p: Problem, inp: Inputs, async: boolean): Promise<FloatArray[]> | FloatArray[] {
  const T = ctor(p.dtype);
  const n = product(p.shape);
  const C = channelsOf(p.shape, p.layout);
  const own = { runningMean: new T(normalData(C, p.seed + 7, p.dtype)), runningVar: new T(C).fill(1.5) };
  const { layout } = p;
  switch (p.op) {
    case 'train': {
      const x = p.inPlace ? inp.x.slice() : inp.x;
      const out = { y: p.inPlace ? x : new T(n), mean: new T(C), invStd: new T(C) };
      const args = [{ x, shape: p.shape, gamma: inp.gamma, beta: inp.beta, ...own, numBatchesTracked: 1 }, { layout, momentum: 0.6 }, out] as const;
      const collect = (r: { updated: boolean }) => [out.y, out.mean, out.invStd, own.runningMean, own.runningVar, new T([r.updated ? 1 : 0])];
      return async ? api.batchNormTrainAsync(...args).then(collect) : collect(api.batchNormTrain(...args));
    }
    case 'infer': {
      const x = p.inPlace ? inp.x.slice() : inp.x;
      const out = { y: p.inPlace ? x : new T(n) };
      const args = [{ x, shape: p.shape, gamma: inp.gamma, beta: inp.beta, runningMean: inp.mean, runningVar: inp.invStd }, { layout, activation: 'relu' as const }, out] as const;
      return async ? api.batchNormInferAsync(...args).then(() => [out.y]) : (api.batchNormInfer(...args), [out.y]);
    }
    case 'backward': {
      const dy = p.inPlace ? inp.dy.slice() : inp.dy;
      const out = { dx: p.inPlace ? dy : new T(n), dgamma: new T(C), dbeta: new T(C) };
      const args = [{ dy, x: inp.x, shape: p.shape, mean: inp.mean, invStd: inp.invStd, gamma: inp.gamma, y: inp.yRelu }, { layout, activation: 'relu' as const }, out] as const;
      return async ? api.batchNormBackwardAsync(...args).then(() => [out.dx, out.dgamma, out.dbeta]) : (api.batchNormBackward(...args), [out.dx, out.dgamma, out.dbeta]);
    }
  }
}

function expectSame(label: string, got: FloatArray[], want: FloatArray[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((a, i) => expect(sameBits(a, want[i]!), `${label}: output ${i} differs from the sequential call`).toBe(true));
}

for (const backend of BACKENDS) {
  describeBackend(backend, 'concurrency', () => {
    beforeAll(() => api.useBackend(backend));

    it('48 async calls in flight at once on distinct inputs give bitwise the sequential results', async () => {
      const list = problems();
      const sequential = list.map((p) => call(p, inputs(p, p.seed), false) as FloatArray[]);
      const pending = list.map((p) => call(p, inputs(p, p.seed), true));
      const results = await Promise.all(pending);
      results.forEach((r, i) => expectSame(`call ${i} (${list[i]!.op} ${list[i]!.shape})`, r, sequential[i]!));
    }, 120_000);

    it('48 async calls in flight on shared inputs (one x, dy, gamma, beta and saved statistics per shape), with the thread count changed mid-flight', async () => {
      const list = problems();
      const shared = new Map<string, Inputs>();
      const inputsOf = (p: Problem) => {
        const key = `${p.dtype} ${p.layout} ${p.shape}`;
        if (!shared.has(key)) shared.set(key, inputs(p, 77));
        return shared.get(key)!;
      };
      const sequential = list.map((p) => call(p, inputsOf(p), false) as FloatArray[]);
      const before = [...shared.values()].flatMap((s) => Object.values(s).map((a: FloatArray) => a.slice()));
      const pending: Promise<FloatArray[]>[] = [];
      list.forEach((p, i) => {
        pending.push(call(p, inputsOf(p), true) as Promise<FloatArray[]>);
        if (i % 16 === 5) api.setThreads(1);
        if (i % 16 === 10) api.setThreads(3);
      });
      api.setThreads(0);
      const results = await Promise.all(pending);
      results.forEach((r, i) => expectSame(`call ${i} (${list[i]!.op} ${list[i]!.shape})`, r, sequential[i]!));
      // the shared inputs were only read
      const after = [...shared.values()].flatMap((s) => Object.values(s) as FloatArray[]);
      after.forEach((a, i) => expect(sameBits(a, before[i]!), `shared input ${i} was written`).toBe(true));
    }, 120_000);
  });
}

// ---------------------------------------------------------------------------------------------
// worker_threads over SharedArrayBuffer

const workerUrl = new URL('./workers/batchnorm-worker.mjs', import.meta.url);

function sharedF32(length: number, fill?: Float64Array): Float32Array {
  const a = new Float32Array(new SharedArrayBuffer(length * 4));
  if (fill) a.set(fill);
  return a;
}

function runWorkers(count: number, data: (index: number) => object): Promise<Record<string, unknown>[]> {
  return Promise.all(
    Array.from({ length: count }, (_, index) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const w = new Worker(workerUrl, { workerData: { index, workers: count, ...data(index) } });
        let message: Record<string, unknown> | undefined;
        w.on('message', (m) => (message = m));
        w.on('error', reject);
        w.on('exit', (code) => (code === 0 && message ? resolve(message) : reject(new Error(`worker ${index} exited with ${code}`))));
      }),
    ),
  );
}

for (const backend of BACKENDS) {
  describeBackend(backend, 'worker_threads over SharedArrayBuffer', () => {
    it('four workers: inference on the shared running statistics, then training where one owner updates them; every result is what the main thread computes', async () => {
      const shape = [8, 16, 24, 24];
      const layout: Layout = 'channels-first';
      const K = 4;
      const n = product(shape);
      const C = 16;
      const buffers = {
        x: sharedF32(K * n, normalData(K * n, 1, 'float32', 2, 1)),
        yInfer: sharedF32(K * n),
        yTrain: sharedF32(K * n),
        mean: sharedF32(K * C),
        invStd: sharedF32(K * C),
        gamma: sharedF32(C, normalData(C, 2, 'float32', 0.3, 1)),
        beta: sharedF32(C, normalData(C, 3, 'float32')),
        runningMean: sharedF32(C, normalData(C, 4, 'float32')),
        runningVar: sharedF32(C, normalData(C, 5, 'float32').map((v) => 0.5 + Math.abs(v))),
      };
      const initial = { runningMean: buffers.runningMean.slice(), runningVar: buffers.runningVar.slice() };
      const control = new Int32Array(new SharedArrayBuffer(4));
      const sabs = Object.fromEntries(Object.entries(buffers).map(([k, v]) => [k, v.buffer]));
      const messages = await runWorkers(K, () => ({ backend, scenario: 'functional', shape, layout, buffers: sabs, control }));
      expect(messages.map((m) => m.backend)).toEqual(new Array(K).fill(backend));
      expect(messages.map((m) => m.updated)).toEqual([true, false, false, false]);
      expect(messages[0]!.numBatchesTracked).toBe(8);

      // the main thread, same backend: bitwise; the float64 reference: within tolerance
      const rm = initial.runningMean.slice();
      const rv = initial.runningVar.slice();
      for (let i = 0; i < K; i++) {
        const x = buffers.x.slice(i * n, (i + 1) * n);
        const params = { gamma: buffers.gamma, beta: buffers.beta };
        const inf = api.withBackend(backend, () => api.batchNormInfer({ x, shape, ...params, ...initial }, { layout, activation: 'relu' }));
        expect(sameBits(inf.y, buffers.yInfer.subarray(i * n, (i + 1) * n)), `worker ${i} inference`).toBe(true);
        const tr = api.withBackend(backend, () =>
          api.batchNormTrain({ x, shape, ...params, runningMean: i === 0 ? rm : null, runningVar: i === 0 ? rv : null }, { layout, momentum: 0.8 }),
        );
        expect(sameBits(tr.y, buffers.yTrain.subarray(i * n, (i + 1) * n)), `worker ${i} training y`).toBe(true);
        expect(sameBits(tr.mean, buffers.mean.subarray(i * C, (i + 1) * C)) && sameBits(tr.invStd, buffers.invStd.subarray(i * C, (i + 1) * C))).toBe(true);
        const ref = api.withBackend('js', () => api.batchNormTrain({ x: new Float64Array(x), shape, gamma: new Float64Array(params.gamma), beta: new Float64Array(params.beta) }, { layout }));
        expect(compareOutput('y', buffers.yTrain.subarray(i * n, (i + 1) * n), ref.y)).toBeNull();
      }
      expect(sameBits(buffers.runningMean, rm) && sameBits(buffers.runningVar, rv), 'the owner updated the shared running statistics').toBe(true);
    }, 120_000);

    it('three workers, each with its own BatchNorm layer over one shared batch: forward and backward agree bit for bit with each other and with the main thread', async () => {
      const shape = [6, 20, 20, 12];
      const layout: Layout = 'channels-last';
      const K = 3;
      const n = product(shape);
      const C = 12;
      const paramsInit = new Float64Array([...normalData(C, 6, 'float32', 0.3, 1), ...normalData(C, 7, 'float32'), ...normalData(C, 8, 'float32'), ...normalData(C, 9, 'float32').map((v) => 0.5 + Math.abs(v))]);
      const buffers = {
        params: sharedF32(4 * C, paramsInit),
        x: sharedF32(n, normalData(n, 10, 'float32', 3, -1)),
        dy: sharedF32(n, normalData(n, 11, 'float32')),
        y: sharedF32(K * n),
        dx: sharedF32(K * n),
        state: sharedF32(K * 6 * C),
      };
      const sabs = Object.fromEntries(Object.entries(buffers).map(([k, v]) => [k, v.buffer]));
      const messages = await runWorkers(K, () => ({ backend, scenario: 'layer', shape, layout, buffers: sabs }));
      expect(messages.every((m) => m.inPlace === true && m.numBatchesTracked === 3 && m.backend === backend)).toBe(true);

      const main = new api.BatchNorm(C, { layout, activation: 'relu', momentum: 0.7 });
      const p = buffers.params;
      main.loadState({ weight: p.subarray(0, C), bias: p.subarray(C, 2 * C), running_mean: p.subarray(2 * C, 3 * C), running_var: p.subarray(3 * C, 4 * C), num_batches_tracked: 2 });
      const y = api.withBackend(backend, () => main.forward(buffers.x, shape));
      const dx = api.withBackend(backend, () => main.backward(buffers.dy));
      const state = [main.runningMean!, main.runningVar!, main.dgamma!, main.dbeta!, main.gamma!, main.beta!];
      for (let i = 0; i < K; i++) {
        expect(sameBits(buffers.y.subarray(i * n, (i + 1) * n), y), `worker ${i} y`).toBe(true);
        expect(sameBits(buffers.dx.subarray(i * n, (i + 1) * n), dx), `worker ${i} dx`).toBe(true);
        state.forEach((a, k) => expect(sameBits(buffers.state.subarray((i * 6 + k) * C, (i * 6 + k + 1) * C), a), `worker ${i} state ${k}`).toBe(true));
      }
      const ref = new api.BatchNorm<Float64Array>(C, { layout, activation: 'relu', momentum: 0.7, dtype: 'float64' });
      ref.loadState({ weight: p.subarray(0, C), bias: p.subarray(C, 2 * C), running_mean: p.subarray(2 * C, 3 * C), running_var: p.subarray(3 * C, 4 * C) });
      const refY = api.withBackend('js', () => ref.forward(new Float64Array(buffers.x), shape));
      expect(compareOutput('layer y', y, refY)).toBeNull();
      expect(compareOutput('layer runningVar', main.runningVar!, ref.runningVar!)).toBeNull();
    }, 120_000);
  });
}

export type { BackendName };
