/**
 * simdnorm/tfjs: an unchanged tfjs model (conv → BatchNormalization → relu, and a dense net with
 * BatchNormalization) predicts, differentiates and fits the same on simdnorm as on stock tfjs
 * where stock tfjs is right, on tfjs-backend-cpu and tfjs-backend-wasm; where stock tfjs is
 * wrong (channelsFirst: its cpu and wasm kernels index [1, C, 1, 1] parameters as if channels
 * were last) the plugin is compared with a float64 reference and with the channelsLast model.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  FUSED_BATCH_NORM,
  channelGeometry,
  pluginStats,
  register,
  registeredBackends,
  resetPluginStats,
  unregister,
} from '../../lib/tfjs.js';

// tfjs-cpu trains slowly; a loaded machine must not fail these (no wall-clock assertion here).
vi.setConfig({ testTimeout: 120_000 });

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const wasmOk = await tf.setBackend('wasm').catch(() => false);
await tf.setBackend('cpu');
// tfjs-backend-wasm was imported after the plugin's own import ran register(): take it over too.
register();
const BACKENDS = wasmOk ? (['cpu', 'wasm'] as const) : (['cpu'] as const);

afterAll(() => {
  register();
});

type Format = 'channelsLast' | 'channelsFirst';

/** The plugin's mode under test: with the layers' fused training path (the default) or FusedBatchNorm only. */
let layers = true;

/** Runs `f` on stock tfjs (the plugin unregistered), then registers the plugin again. */
async function stock<T>(f: () => T | Promise<T>): Promise<T> {
  unregister();
  try {
    return await f();
  } finally {
    register({ layers });
  }
}

/**
 * Runs `f` on the plugin and checks its BatchNorm calls ran on simdnorm: training (`training`
 * true) through the fused layer kernel or, with `layers: false`, FusedBatchNorm and its gradient.
 */
async function plugin<T>(f: () => T | Promise<T>, training = false): Promise<T> {
  resetPluginStats();
  const r = await f();
  const s = pluginStats();
  expect(s.forward + s.fusedLayer).toBeGreaterThan(0);
  expect(s.fallbackForward).toBe(0);
  expect(s.fallbackBackward).toBe(0);
  if (training) {
    if (layers) expect(s.fusedLayer).toBeGreaterThan(0);
    else expect(s.backward).toBeGreaterThan(0);
  }
  return r;
}

/** max |a − b| / max(1, max |b|): equal up to float32 rounding of the computations' order. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 1;
  let err = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
  return err / scale;
}

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(a, b);
  expect(e, `${what}: relative error ${e}`).toBeLessThan(tol);
}

function seeded(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  // xorshift32: reproducible inputs without tfjs's RNG state
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = lo + ((s >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}

const H = 6;
const W = 5;
const CIN = 3;
const F = 4;

function convModel(format: Format): tf.Sequential {
  const inputShape = format === 'channelsLast' ? [H, W, CIN] : [CIN, H, W];
  return tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape,
        filters: F,
        kernelSize: 3,
        padding: 'same',
        dataFormat: format,
        kernelInitializer: tf.initializers.glorotUniform({ seed: 7 }),
        biasInitializer: tf.initializers.randomNormal({ mean: 2, stddev: 1, seed: 8 }),
      }),
      tf.layers.batchNormalization({
        axis: format === 'channelsLast' ? -1 : 1,
        gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 9 }),
        betaInitializer: tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: 10 }),
        movingMeanInitializer: tf.initializers.randomNormal({ mean: 1.5, stddev: 0.5, seed: 11 }),
        movingVarianceInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 2, seed: 12 }),
      }),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.globalAveragePooling2d({ dataFormat: format }),
      tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 13 }) }),
    ],
  });
}

function denseModel(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [5], units: 8, kernelInitializer: tf.initializers.glorotUniform({ seed: 21 }), biasInitializer: tf.initializers.randomNormal({ mean: 1, stddev: 1, seed: 22 }) }),
      tf.layers.batchNormalization({
        gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 23 }),
        betaInitializer: tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: 24 }),
        movingMeanInitializer: tf.initializers.randomNormal({ mean: 1, stddev: 0.5, seed: 25 }),
        movingVarianceInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 2, seed: 26 }),
      }),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: 27 }) }),
    ],
  });
}

/** The model's weights (trainable and moving statistics) as arrays, in the model's order. */
async function weightsOf(model: tf.LayersModel): Promise<Float32Array[]> {
  return Promise.all(model.getWeights().map(async (w) => (await w.data()) as Float32Array));
}

function setWeights(model: tf.LayersModel, values: readonly Float32Array[]): void {
  const ws = model.getWeights();
  model.setWeights(ws.map((w, i) => tf.tensor(values[i], w.shape)));
}

/** NHWC values of an NCHW array (and back with `toNchw`). */
function toNhwc(a: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    out[((i * h + y) * w + x) * c + k] = a[((i * c + k) * h + y) * w + x];
  }
  return out;
}

function toNchw(a: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    out[((i * c + k) * h + y) * w + x] = a[((i * h + y) * w + x) * c + k];
  }
  return out;
}

/**
 * Predictions (inference), the training-mode output and the gradients of
 * loss = Σ output·probe with respect to the input and to every trainable weight.
 */
async function run(model: tf.LayersModel, x: tf.Tensor, initial: readonly Float32Array[], gradients = true) {
  setWeights(model, initial);
  const predict = (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
  const outShape = (model.predict(x) as tf.Tensor).shape;
  const probe = tf.tensor(seeded(predict.length, 99), outShape);
  const train = (await (model.apply(x, { training: true }) as tf.Tensor).data()) as Float32Array;
  setWeights(model, initial);
  if (!gradients) return { predict, train, weightGrads: [] as Float32Array[], dx: new Float32Array(0) };
  const loss = () => tf.sum(tf.mul(model.apply(x, { training: true }) as tf.Tensor, probe)) as tf.Scalar;
  const { grads } = tf.variableGrads(loss);
  const names = model.trainableWeights.map((w) => w.name);
  const weightGrads = await Promise.all(names.map(async (n) => (await grads[n].data()) as Float32Array));
  setWeights(model, initial);
  const dx = (await tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(model.apply(xx, { training: true }) as tf.Tensor, probe)))(x).data()) as Float32Array;
  return { predict, train, weightGrads, dx };
}

const MODES = BACKENDS.flatMap((backend) => [
  { backend, layers: true },
  { backend, layers: false },
]);

describe.each(MODES)('simdnorm/tfjs on tfjs-backend-$backend (layers: $layers)', ({ backend, layers: mode }) => {
  // tfjs-backend-wasm has no Conv2DBackpropFilter kernel: a conv net cannot train on it, with or
  // without simdnorm; there the conv net is checked forward and the dense net backward.
  const convGradients = backend !== 'wasm';
  beforeEach(async () => {
    await tf.setBackend(backend);
    layers = mode;
    register({ layers });
  });

  it('is registered for this backend', () => {
    expect(registeredBackends()).toContain(backend);
  });

  it('conv → BN → relu, channelsLast: predictions and gradients equal stock tfjs', async () => {
    const model = convModel('channelsLast');
    const initial = await weightsOf(model);
    const x = tf.tensor(seeded(4 * H * W * CIN, 1, -2, 3), [4, H, W, CIN]);
    const s = await stock(() => run(model, x, initial, convGradients));
    const p = await plugin(() => run(model, x, initial, convGradients), convGradients);
    expectClose(p.predict, s.predict, 2e-5, 'predict');
    expectClose(p.train, s.train, 2e-5, 'training output');
    expectClose(p.dx, s.dx, 1e-4, 'dx');
    p.weightGrads.forEach((g, i) => expectClose(g, s.weightGrads[i], 1e-4, `gradient of ${model.trainableWeights[i].name}`));
  });

  it('dense → BN → relu → dense: predictions and gradients equal stock tfjs', async () => {
    const model = denseModel();
    const initial = await weightsOf(model);
    const x = tf.tensor(seeded(16 * 5, 2, -2, 2), [16, 5]);
    const s = await stock(() => run(model, x, initial));
    const p = await plugin(() => run(model, x, initial), true);
    expectClose(p.predict, s.predict, 2e-5, 'predict');
    expectClose(p.train, s.train, 2e-5, 'training output');
    expectClose(p.dx, s.dx, 1e-4, 'dx');
    p.weightGrads.forEach((g, i) => expectClose(g, s.weightGrads[i], 1e-4, `gradient of ${model.trainableWeights[i].name}`));
  });

  it('a sequence [N, L, C] → BN → relu → dense: predictions and gradients equal stock tfjs', async () => {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [6, 3], units: 4, kernelInitializer: tf.initializers.glorotUniform({ seed: 60 }), biasInitializer: tf.initializers.randomNormal({ mean: 1, stddev: 1, seed: 61 }) }),
        tf.layers.batchNormalization({ gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 62 }), movingMeanInitializer: tf.initializers.randomNormal({ mean: 1, stddev: 0.5, seed: 63 }) }),
        tf.layers.activation({ activation: 'relu' }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: 64 }) }),
      ],
    });
    const initial = await weightsOf(model);
    const x = tf.tensor(seeded(5 * 6 * 3, 65, -2, 2), [5, 6, 3]);
    const s = await stock(() => run(model, x, initial));
    const p = await plugin(() => run(model, x, initial), true);
    expectClose(p.predict, s.predict, 2e-5, 'predict');
    expectClose(p.train, s.train, 2e-5, 'training output');
    expectClose(p.dx, s.dx, 1e-4, 'dx');
    p.weightGrads.forEach((g, i) => expectClose(g, s.weightGrads[i], 1e-4, `gradient of ${model.trainableWeights[i].name}`));
  });

  it('conv → BN → relu, channelsFirst: the channelsLast model transposed (where stock tfjs is wrong)', async () => {
    const last = convModel('channelsLast');
    const first = convModel('channelsFirst');
    const initial = await weightsOf(last); // the same shapes in both formats
    const N = 3;
    const nchw = seeded(N * CIN * H * W, 3, -2, 3);
    const xFirst = tf.tensor(nchw, [N, CIN, H, W]);
    const xLast = tf.tensor(toNhwc(nchw, N, CIN, H, W), [N, H, W, CIN]);
    const reference = await stock(() => run(last, xLast, initial, convGradients));
    const p = await plugin(() => run(first, xFirst, initial, convGradients), convGradients);
    expectClose(p.predict, reference.predict, 2e-5, 'predict');
    expectClose(p.train, reference.train, 2e-5, 'training output');
    expectClose(toNhwc(p.dx, N, CIN, H, W), reference.dx, 1e-4, 'dx');
    p.weightGrads.forEach((g, i) => expectClose(g, reference.weightGrads[i], 1e-4, `gradient of ${first.trainableWeights[i].name}`));
    // Stock tfjs's channelsFirst model disagrees with its own channelsLast model (README "With
    // TensorFlow.js"; its gradient of [1, C, 1, 1] statistics throws besides).
    const s = await stock(() => run(first, xFirst, initial, false));
    expect(relErr(s.train, reference.train)).toBeGreaterThan(1e-2);
  });

  it('BatchNormalization({ axis: 1 }) alone equals the float64 reference, forward and backward', async () => {
    const [N, C, h, w] = [4, 3, 4, 5];
    const eps = 1e-3;
    const xv = seeded(N * C * h * w, 4, -1, 4);
    const gamma = seeded(C, 5, 0.5, 1.5);
    const beta = seeded(C, 6, -1, 1);
    const dyv = seeded(N * C * h * w, 7, -1, 1);
    const ref = referenceBatchNorm(xv, dyv, gamma, beta, N, C, h * w, eps);
    const layer = tf.layers.batchNormalization({ axis: 1, epsilon: eps });
    const x = tf.tensor(xv, [N, C, h, w]);
    layer.apply(x); // build
    layer.setWeights([tf.tensor(gamma), tf.tensor(beta), tf.zeros([C]), tf.ones([C])]);
    const dy = tf.tensor(dyv, [N, C, h, w]);
    const out = await plugin(async () => {
      const y = (await (layer.apply(x, { training: true }) as tf.Tensor).data()) as Float32Array;
      const f = () => tf.sum(tf.mul(layer.apply(x, { training: true }) as tf.Tensor, dy)) as tf.Scalar;
      const { grads } = tf.variableGrads(f, layer.trainableWeights.map((v) => (v as unknown as { val: tf.Variable }).val));
      const dx = (await tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(layer.apply(xx, { training: true }) as tf.Tensor, dy)))(x).data()) as Float32Array;
      const [gName, bName] = layer.trainableWeights.map((v) => v.name);
      return { y, dx, dgamma: (await grads[gName].data()) as Float32Array, dbeta: (await grads[bName].data()) as Float32Array };
    }, true);
    expectClose(out.y, ref.y, 1e-5, 'y');
    expectClose(out.dx, ref.dx, 1e-4, 'dx');
    expectClose(out.dgamma, ref.dgamma, 1e-4, 'dgamma');
    expectClose(out.dbeta, ref.dbeta, 1e-4, 'dbeta');
  });

  it.skipIf(!convGradients)('model.fit of the conv net: a few steps give the same weights as stock tfjs (channelsLast), and channelsFirst the same as channelsLast', async () => {
    const N = 8;
    const nchw = seeded(N * CIN * H * W, 8, -2, 3);
    const ys = tf.tensor(seeded(N * 3, 9), [N, 3]);
    const fit = async (model: tf.LayersModel, x: tf.Tensor, initial: readonly Float32Array[]) => {
      setWeights(model, initial);
      model.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });
      await model.fit(x, ys, { epochs: 3, batchSize: 4, shuffle: false, verbose: 0 });
      return weightsOf(model);
    };
    const last = convModel('channelsLast');
    const first = convModel('channelsFirst');
    const initial = await weightsOf(last);
    const xLast = tf.tensor(toNhwc(nchw, N, CIN, H, W), [N, H, W, CIN]);
    const xFirst = tf.tensor(nchw, [N, CIN, H, W]);
    const s = await stock(() => fit(last, xLast, initial));
    const p = await plugin(() => fit(last, xLast, initial), true);
    const pf = await plugin(() => fit(first, xFirst, initial), true);
    const names = last.weights.map((w) => w.name);
    p.forEach((w, i) => expectClose(w, s[i], 1e-4, `${names[i]} after fit`));
    pf.forEach((w, i) => expectClose(w, s[i], 1e-4, `${names[i]} after fit (channelsFirst)`));
    // and the weights moved
    expect(relErr(s[0], initial[0])).toBeGreaterThan(1e-3);
  });

  it('model.fit of the dense net: a few steps give the same weights as stock tfjs', async () => {
    const N = 16;
    const x = tf.tensor(seeded(N * 5, 30, -2, 2), [N, 5]);
    const ys = tf.tensor(seeded(N * 2, 31), [N, 2]);
    const model = denseModel();
    const initial = await weightsOf(model);
    const fit = async () => {
      setWeights(model, initial);
      // SGD, not Adam: the gradient of a bias feeding BatchNorm is 0 up to rounding, and Adam
      // would scale that rounding noise up to full steps in either run.
      model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
      await model.fit(x, ys, { epochs: 4, batchSize: 8, shuffle: false, verbose: 0 });
      return weightsOf(model);
    };
    const s = await stock(fit);
    const p = await plugin(fit, true);
    const names = model.weights.map((w) => w.name);
    p.forEach((w, i) => expectClose(w, s[i], 1e-4, `${names[i]} after fit`));
    expect(relErr(s[0], initial[0])).toBeGreaterThan(1e-3);
  });

  it('second-order gradients (a gradient of a gradient) equal stock tfjs', async () => {
    const model = denseModel();
    const initial = await weightsOf(model);
    const x = tf.tensor(seeded(8 * 5, 50, -2, 2), [8, 5]);
    const probe = tf.tensor(seeded(8 * 2, 51), [8, 2]);
    const m = tf.tensor(seeded(5, 52), [5]);
    const v = tf.tensor(seeded(5, 53, 0.5, 2), [5]);
    const second = async () => {
      setWeights(model, initial);
      const inner = (xx: tf.Tensor) => tf.sum(tf.mul(model.apply(xx, { training: true }) as tf.Tensor, probe));
      const layer = await tf.grad((xx: tf.Tensor) => tf.sum(tf.square(tf.grad(inner)(xx))))(x).data();
      const bn = (xx: tf.Tensor) => tf.sum(tf.square(tf.batchNorm(xx, m, v, tf.zerosLike(m), tf.onesLike(m), 1e-3)));
      const op = await tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.grad(bn)(xx), xx)))(x).data();
      return { layer, op };
    };
    const s = await stock(second);
    const p = await second();
    expectClose(p.layer, s.layer, 1e-4, 'second-order gradient through the layer');
    expectClose(p.op, s.op, 1e-5, 'second-order gradient through tf.batchNorm');
  });

  it('training steps and predictions leave no tensor behind', async () => {
    const model = denseModel();
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
    const x = tf.tensor(seeded(8 * 5, 40), [8, 5]);
    const ys = tf.tensor(seeded(8 * 2, 41), [8, 2]);
    await plugin(async () => {
      await model.trainOnBatch(x, ys); // the optimizer's own state is created on the first step
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        await model.trainOnBatch(x, ys);
        tf.tidy(() => {
          model.predict(x);
          tf.grad((xx: tf.Tensor) => tf.sum(model.apply(xx, { training: true }) as tf.Tensor))(x);
        });
      }
      expect(tf.memory().numTensors).toBe(before);
    }, true);
  });

  it('tf.batchNorm calls it does not take run on tfjs\'s kernel', async () => {
    const x = tf.tensor(seeded(2 * 3 * 4, 10), [2, 3, 4]);
    const m = tf.tensor(seeded(4, 11), [4]);
    const v = tf.tensor(seeded(4, 12, 0.5, 2), [4]);
    resetPluginStats();
    // variance epsilon 0 (simdnorm needs eps > 0)
    const y0 = await tf.batchNorm(x, m, v, undefined, undefined, 0).data();
    // parameters of x's full shape
    const full = tf.tensor(seeded(24, 13), [2, 3, 4]);
    const y1 = await tf.batchNorm(x, full, tf.onesLike(full), full, full).data();
    // int32 x
    await tf.batchNorm(tf.tensor([1, 2, 3, 4], [1, 4], 'int32'), m, v).data();
    expect(pluginStats()).toMatchObject({ forward: 0, fallbackForward: 3 });
    const s0 = await stock(() => tf.batchNorm(x, m, v, undefined, undefined, 0).data());
    const s1 = await stock(() => tf.batchNorm(x, full, tf.onesLike(full), full, full).data());
    expect(Array.from(y0)).toEqual(Array.from(s0));
    expect(Array.from(y1)).toEqual(Array.from(s1));
    // ... and their gradients on tfjs's gradient
    resetPluginStats();
    await tf.grad((xx: tf.Tensor) => tf.batchNorm(xx, full, tf.onesLike(full), full, full))(x).data();
    expect(pluginStats()).toMatchObject({ backward: 0, fallbackBackward: 1 });
  });

  it('tf.batchNorm with single-value parameters and 1-D x: forward equals stock, gradients the float64 formula', async () => {
    const n = 12;
    const xv = seeded(n, 14, -3, 3);
    const [mv, vv, sv, ov, eps] = [0.5, 2, 1.5, -0.25, 1e-3];
    const x = tf.tensor(xv, [n]);
    const [m, v, s, o] = [tf.scalar(mv), tf.scalar(vv), tf.scalar(sv), tf.scalar(ov)];
    const probe = seeded(n, 15);
    const st = await stock(() => tf.batchNorm(x, m, v, o, s, eps).data());
    const p = await plugin(async () => {
      const y = await tf.batchNorm(x, m, v, o, s, eps).data();
      // (stock tfjs's gradient cannot reshape its per-element dmean to a scalar mean's shape)
      const f = (xx: tf.Tensor, mm: tf.Tensor, va: tf.Tensor, ss: tf.Tensor, oo: tf.Tensor) =>
        tf.sum(tf.mul(tf.batchNorm(xx, mm, va, oo, ss, eps), tf.tensor(probe, [n])));
      const g = tf.grads(f)([x, m, v, s, o]);
      return { y, g: await Promise.all(g.map((t) => t.data())) };
    });
    expect(pluginStats().backward).toBeGreaterThan(0);
    expectClose(p.y, st, 1e-6, 'y');
    const invStd = 1 / Math.sqrt(vv + eps);
    let sumDy = 0;
    let sumDyXhat = 0;
    for (let i = 0; i < n; i++) {
      sumDy += probe[i];
      sumDyXhat += probe[i] * (xv[i] - mv) * invStd;
    }
    expectClose(p.g[0], Array.from(probe, (d) => d * sv * invStd), 1e-6, 'dx');
    expectClose(p.g[1], [-sv * invStd * sumDy], 1e-5, 'dmean');
    expectClose(p.g[2], [-0.5 * sv * invStd * invStd * sumDyXhat], 1e-5, 'dvariance');
    expectClose(p.g[3], [sumDyXhat], 1e-5, 'dscale');
    expectClose(p.g[4], [sumDy], 1e-5, 'doffset');
  });
});

describe('registration', () => {
  it('unregister puts back the kernels and the gradient tfjs had; register takes over again', async () => {
    const ours = tf.getKernel(FUSED_BATCH_NORM, 'cpu').kernelFunc;
    const gradient = tf.getGradient(FUSED_BATCH_NORM);
    unregister();
    try {
      expect(registeredBackends()).toEqual([]);
      expect(tf.getKernel(FUSED_BATCH_NORM, 'cpu').kernelFunc).not.toBe(ours);
      expect(tf.getGradient(FUSED_BATCH_NORM)).not.toBe(gradient);
      unregister(); // twice is fine
    } finally {
      const r = register();
      expect(r.backends).toEqual([...BACKENDS]);
      expect(r.gradient).toBe(true);
    }
    expect(register().backends).toEqual([...BACKENDS]); // idempotent
    expect(tf.getGradient(FUSED_BATCH_NORM)).toBe(gradient);
  });

  it('bad options are typed errors naming the option', () => {
    expect(() => register({ backends: ['webgl'] as never })).toThrow(RangeError);
    expect(() => register({ backends: ['webgl'] as never })).toThrow(/options\.backends/);
    expect(() => register({ backends: 'cpu' as never })).toThrow(TypeError);
    expect(() => register({ backend: ['cpu'] } as never)).toThrow(/options\.backend\b/);
    expect(() => register(3 as never)).toThrow(TypeError);
  });

  it('channelGeometry reads the channel axis from the parameters', () => {
    expect(channelGeometry([2, 3, 4, 5], [[5], [5]])).toEqual({ outer: 24, channels: 5, inner: 1 });
    expect(channelGeometry([2, 3, 4, 5], [[1, 3, 1, 1], [1, 3, 1, 1]])).toEqual({ outer: 2, channels: 3, inner: 20 });
    expect(channelGeometry([1, 2, 3, 4], [[1, 3, 1], null])).toEqual({ outer: 2, channels: 3, inner: 4 });
    expect(channelGeometry([2, 3, 4, 5], [[], [1]])).toEqual({ outer: 24, channels: 5, inner: 1 });
    expect(channelGeometry([2, 3, 4, 5], [[3]])).toBeNull(); // modulo indexing: tfjs's kernel
    expect(channelGeometry([2, 3, 4, 5], [[2, 3, 4, 5]])).toBeNull();
    expect(channelGeometry([2, 3, 4, 5], [[5], [1, 3, 1, 1]])).toBeNull();
    expect(channelGeometry([0, 3], [[3]])).toBeNull();
  });

  it("the package's ./tfjs export loads from Node and registers on tfjs's cpu backend", () => {
    const script = [
      "const tf = await import('@tensorflow/tfjs-core'); await import('@tensorflow/tfjs-backend-cpu');",
      "const p = await import('simdnorm/tfjs');",
      'console.log(JSON.stringify(p.registeredBackends()), typeof p.unregister, typeof p.ready);',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('["cpu"] function function');
  });
});

describe('the package', () => {
  it('ships the ./tfjs entry (types, browser and default) and declares tfjs-core an optional peer', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.exports['./tfjs']).toEqual({ types: './dist/tfjs.d.ts', browser: './dist/tfjs-browser.js', default: './dist/tfjs.js' });
    expect(pkg.peerDependencies['@tensorflow/tfjs-core']).toBeDefined();
    expect(pkg.peerDependenciesMeta['@tensorflow/tfjs-core']).toEqual({ optional: true });
    expect(pkg.dependencies?.['@tensorflow/tfjs-core']).toBeUndefined();
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
    for (const f of ['dist/tfjs.js', 'dist/tfjs.d.ts', 'dist/tfjs-browser.js', 'dist/tfjs/plugin.js', 'dist/tfjs/layer.js', 'dist/tfjs/io.js']) {
      expect(files, f).toContain(f);
    }
  });

  it('the browser build of ./tfjs imports no Node built-in, and the main entries do not import tfjs', () => {
    const graph = (file: string, seen = new Map<string, string[]>()): Map<string, string[]> => {
      if (seen.has(file)) return seen;
      const source = readFileSync(file, 'utf8');
      const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)].map(
        (m) => m[1] ?? m[2] ?? m[3],
      );
      seen.set(file, specifiers);
      for (const s of specifiers) if (s.startsWith('.')) graph(resolve(dirname(file), s), seen);
      return seen;
    };
    const builtins = new Set(builtinModules);
    const browser = graph(join(root, 'dist', 'tfjs-browser.js'));
    expect(browser.size).toBeGreaterThan(5);
    expect([...browser.values()].flat()).toContain('@tensorflow/tfjs-core');
    for (const [file, specifiers] of browser) {
      for (const s of specifiers) expect(s.startsWith('node:') || builtins.has(s), `${file} imports ${s}`).toBe(false);
    }
    for (const entry of ['index.js', 'browser.js']) {
      for (const [file, specifiers] of graph(join(root, 'dist', entry))) {
        for (const s of specifiers) expect(s.startsWith('@tensorflow/'), `${file} imports ${s}`).toBe(false);
      }
    }
  });
});

/** Training-mode BatchNorm over x[N][C][S] in float64: y and the gradients for dy. */
function referenceBatchNorm(x: Float32Array, dy: Float32Array, gamma: Float32Array, beta: Float32Array, N: number, C: number, S: number, eps: number) {
  const M = N * S;
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const at = (n: number, c: number, s: number) => (n * C + c) * S + s;
  for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[at(n, c, s)];
    const mean = sum / M;
    let sq = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sq += (x[at(n, c, s)] - mean) ** 2;
    const invStd = 1 / Math.sqrt(sq / M + eps);
    let sdy = 0;
    let sdyx = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) {
      const i = at(n, c, s);
      const xh = (x[i] - mean) * invStd;
      y[i] = gamma[c] * xh + beta[c];
      sdy += dy[i];
      sdyx += dy[i] * xh;
    }
    dgamma[c] = sdyx;
    dbeta[c] = sdy;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) {
      const i = at(n, c, s);
      const xh = (x[i] - mean) * invStd;
      dx[i] = (gamma[c] * invStd / M) * (M * dy[i] - sdy - xh * sdyx);
    }
  }
  return { y, dx, dgamma, dbeta };
}
