// A worker of test/reliability/concurrency.test.ts: runs simdnorm (dist/) on tensors that live in
// SharedArrayBuffers the main thread also holds, and writes its results into them.
//
// workerData: { backend, scenario, index, shape, layout, buffers: { name: SharedArrayBuffer }, control }
//   scenario 'functional': phase 1, inference with the shared running statistics (read only);
//     then wait at the barrier (control[0] counts arrivals); phase 2, training on this worker's
//     own batch, where only worker 0 (the owner) updates the shared running statistics.
//   scenario 'layer': a BatchNorm layer loaded from the shared parameters, forward (training)
//     and backward on the shared x and dy; y, dx and the layer's state written back.
import { parentPort, workerData } from 'node:worker_threads';
import * as simdnorm from '../../../dist/index.js';

const { backend, scenario, index, shape, layout, buffers, control, workers } = workerData;
simdnorm.useBackend(backend);
const C = shape ? shape[layout === 'channels-first' ? 1 : shape.length - 1] : 0;
const n = shape ? shape.reduce((a, b) => a * b, 1) : 0;
const f32 = (name, offset = 0, length) => new Float32Array(buffers[name], offset * 4, length);

if (scenario === 'functional') {
  const params = { gamma: f32('gamma'), beta: f32('beta') };
  const x = f32('x', index * n, n); // a subarray of one shared buffer: byteOffset > 0 for index > 0
  simdnorm.batchNormInfer(
    { x, shape, ...params, runningMean: f32('runningMean'), runningVar: f32('runningVar') },
    { layout, activation: 'relu' },
    { y: f32('yInfer', index * n, n) },
  );
  // barrier: every worker has read the running statistics before the owner updates them
  Atomics.add(control, 0, 1);
  Atomics.notify(control, 0);
  while (Atomics.load(control, 0) < workers) Atomics.wait(control, 0, Atomics.load(control, 0), 1000);
  const owner = index === 0;
  const r = simdnorm.batchNormTrain(
    {
      x, shape, ...params,
      runningMean: owner ? f32('runningMean') : null,
      runningVar: owner ? f32('runningVar') : null,
      numBatchesTracked: 7,
    },
    { layout, momentum: 0.8 },
    { y: f32('yTrain', index * n, n), mean: f32('mean', index * C, C), invStd: f32('invStd', index * C, C) },
  );
  parentPort.postMessage({ updated: r.updated, numBatchesTracked: r.numBatchesTracked, backend: simdnorm.currentBackend() });
} else if (scenario === 'layer') {
  const layer = new simdnorm.BatchNorm(C, { layout, activation: 'relu', momentum: 0.7 });
  const p = f32('params'); // weight, bias, running_mean, running_var: C each
  layer.loadState({
    weight: p.subarray(0, C), bias: p.subarray(C, 2 * C), running_mean: p.subarray(2 * C, 3 * C),
    running_var: p.subarray(3 * C, 4 * C), num_batches_tracked: 2,
  });
  const y = layer.forward(f32('x'), shape, { y: f32('y', index * n, n) });
  const dx = layer.backward(f32('dy'), { dx: f32('dx', index * n, n) });
  const state = f32('state', index * 6 * C, 6 * C);
  state.set(layer.runningMean, 0);
  state.set(layer.runningVar, C);
  state.set(layer.dgamma, 2 * C);
  state.set(layer.dbeta, 3 * C);
  state.set(layer.gamma, 4 * C);
  state.set(layer.beta, 5 * C);
  parentPort.postMessage({
    inPlace: y.buffer === buffers.y && dx.buffer === buffers.dx,
    numBatchesTracked: layer.numBatchesTracked,
    backend: simdnorm.currentBackend(),
  });
} else if (scenario === 'load') {
  // loads the addon (through the package) and runs a pool-sized call, then exits
  const x = new Float32Array(1 << 17).fill(1);
  const r = simdnorm.batchNormTrain({ x, shape: [4, 8, 4096] });
  parentPort.postMessage({ ok: r.mean.every((v) => v === 1), backend: simdnorm.currentBackend() });
}
