#!/usr/bin/env node
/**
 * TensorFlow.js with and without simdnorm/tfjs, in the same process: a training step
 * (model.trainOnBatch: forward, backward, SGD update) and a prediction of a small conv net
 * (conv → BN → relu, twice, then global average pooling and a dense layer), and a
 * BatchNormalization layer alone (training-mode forward + backward). Three variants: stock tfjs,
 * the plugin with FusedBatchNorm only (`register({ layers: false })`), and the plugin as imported
 * (the layer's training path fused). They alternate round by round, in a rotating order, so all
 * see the same machine state; each number is the median over the rounds, of the wall time and of
 * the process's CPU time (user + system, all threads: the fairer of the two on a shared machine,
 * where the wall time of a single-threaded tfjs step includes waiting for a core).
 *
 *   node bench/tfjs-plugin.mjs [--backend cpu|wasm] [--rounds 7] [--batch 16] [--size 16] [--filters 16] [--json]
 *
 * tfjs-backend-wasm has no gradient kernels for conv2d: with --backend wasm the conv net's
 * training step is left out.
 *
 * Needs `npm run build` (it imports dist/tfjs.js) and the tfjs dev dependencies.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { performance } from 'node:perf_hooks';
import { currentBackend, pluginStats, register, resetPluginStats, unregister } from '../dist/tfjs.js';

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : args[i + 1];
}
const backend = option('backend', 'cpu');
const rounds = Number(option('rounds', 7));
const batch = Number(option('batch', 16));
const size = Number(option('size', 16));
const filters = Number(option('filters', 16));
const json = args.includes('--json');
for (const [name, v] of [['rounds', rounds], ['batch', batch], ['size', size], ['filters', filters]]) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`tfjs-plugin: --${name} must be a positive integer, received ${option(name)}`);
    process.exit(2);
  }
}
if (!['cpu', 'wasm'].includes(backend)) {
  console.error(`tfjs-plugin: --backend must be cpu or wasm, received ${backend}`);
  process.exit(2);
}

if (!(await tf.setBackend(backend))) {
  console.error(`tfjs-plugin: tfjs backend ${backend} did not initialise`);
  process.exit(1);
}

const log = (s) => {
  if (!json) console.log(s);
};

function convNet() {
  const init = (seed) => tf.initializers.glorotUniform({ seed });
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [size, size, 3], filters, kernelSize: 3, padding: 'same', kernelInitializer: init(1) }),
      tf.layers.batchNormalization(),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', kernelInitializer: init(2) }),
      tf.layers.batchNormalization(),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.globalAveragePooling2d({}),
      tf.layers.dense({ units: 10, kernelInitializer: init(3) }),
    ],
  });
}

const model = convNet();
model.compile({ optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError' });
const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 5);
const y = tf.randomNormal([batch, 10], 0, 1, 'float32', 6);
const initial = model.getWeights().map((w) => w.clone());

const bnShape = [batch, size, size, 4 * filters];
const bnLayer = tf.layers.batchNormalization();
const bnX = tf.randomNormal(bnShape, 1, 2, 'float32', 7);
const bnDy = tf.randomNormal(bnShape, 0, 1, 'float32', 8);
bnLayer.apply(bnX);
const bnStep = () =>
  tf.tidy(() => {
    const g = tf.grad((xx) => tf.sum(tf.mul(bnLayer.apply(xx, { training: true }), bnDy)))(bnX);
    return g.dataSync()[0];
  });

const workloads = {};
if (backend !== 'wasm') {
  workloads['conv net training step (trainOnBatch)'] = async () => {
    await model.trainOnBatch(x, y);
  };
}
Object.assign(workloads, {
  'conv net predict': async () => {
    const out = model.predict(x);
    await out.data();
    out.dispose();
  },
  [`BatchNormalization [${bnShape.join(', ')}] training forward + backward`]: async () => {
    bnStep();
  },
});

const VARIANTS = {
  stock: () => unregister(),
  'FusedBatchNorm only': () => {
    unregister();
    register({ layers: false });
  },
  simdnorm: () => register(),
};
const names = Object.keys(VARIANTS);

async function time(f) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await f();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
}

const median = (a) => {
  const s = [...a].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

log(`tfjs ${tf.version.tfjs} on tfjs-backend-${tf.getBackend()}, simdnorm on ${currentBackend()}; conv net: batch ${batch}, ${size}×${size}×3, ${filters} filters; ${rounds} rounds, medians`);
const results = [];
for (const [name, f] of Object.entries(workloads)) {
  const times = Object.fromEntries(names.map((v) => [v, []]));
  const cpuTimes = Object.fromEntries(names.map((v) => [v, []]));
  const calls = {};
  for (const v of names) {
    VARIANTS[v]();
    await f(); // warm-up: kernel setup, first allocations
  }
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) {
      const v = names[(r + k) % names.length];
      VARIANTS[v]();
      model.setWeights(initial);
      resetPluginStats();
      const t = await time(f);
      times[v].push(t.wall);
      cpuTimes[v].push(t.cpu);
      calls[v] = pluginStats();
    }
  }
  register();
  const medians = Object.fromEntries(names.map((v) => [v, median(times[v])]));
  const cpuMedians = Object.fromEntries(names.map((v) => [v, median(cpuTimes[v])]));
  results.push({
    workload: name,
    medianMs: medians,
    speedup: Object.fromEntries(names.map((v) => [v, medians.stock / medians[v]])),
    medianCpuMs: cpuMedians,
    cpuSpeedup: Object.fromEntries(names.map((v) => [v, cpuMedians.stock / cpuMedians[v]])),
    pluginCalls: calls,
  });
  log(`  ${name}:`);
  for (const v of names) {
    const c = calls[v];
    const how = v === 'stock' ? '' : `  (per step: ${c.forward} FusedBatchNorm, ${c.backward} its gradient, ${c.fusedLayer} fused layer calls; ${c.fallbackForward + c.fallbackBackward} fallbacks)`;
    log(`    ${v.padEnd(20)} wall ${medians[v].toFixed(1).padStart(9)} ms ×${(medians.stock / medians[v]).toFixed(2).padEnd(6)}` +
      ` cpu ${cpuMedians[v].toFixed(1).padStart(9)} ms ×${(cpuMedians.stock / cpuMedians[v]).toFixed(2).padEnd(6)}${how}`);
  }
}
if (json) console.log(JSON.stringify({ tfjs: tf.version.tfjs, backend, simdnorm: currentBackend(), batch, size, filters, rounds, results }, null, 2));
