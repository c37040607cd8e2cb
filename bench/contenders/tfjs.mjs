/**
 * TensorFlow.js (tfjs-backend-cpu and tfjs-backend-wasm) as contenders. `tf` is the tfjs
 * namespace with gradients registered (in Node: `@tensorflow/tfjs`, plus
 * `@tensorflow/tfjs-backend-wasm` imported for its side effect; in the browser: the UMD bundles).
 *
 * tfjs's `batchNorm` broadcasts its parameters over the LAST axis only, so channels-first needs
 * its own formulation; the ones offered here are each checked against the reference, and the
 * fastest correct one is timed:
 *   - channels-last (and [N, C]): `batchNorm` with [C] parameters; or x·a + b;
 *   - channels-first: transpose to channels-last and back; or explicit broadcasting ops with
 *     [C, 1, 1] parameters; and, for inference, the naive `batchNorm` with [C, 1, 1] parameters,
 *     which the gate is expected to reject (it is the pitfall users hit).
 * Training forward is `tf.moments` + the normalisation; backward is `tf.grads` of that forward
 * (tfjs has no standalone batch-norm backward; the gradient recomputes the forward).
 * The family (LayerNorm, RMSNorm, GroupNorm, InstanceNorm): moments-based formulations and
 * tf.grads, in ./family-tfjs.mjs.
 * Inputs are tensors made once, outside the timed loop; a timed call computes the outputs,
 * reads them into typed arrays (`dataSync()`) and frees them. Async rows: not applicable, as
 * these backends compute on the calling thread either way (`await data()` only defers the read).
 *
 * @typedef {import('../runner.mjs').Contender} Contender
 * @typedef {import('../tasks.mjs').Task} Task
 */
import { EPS, channelsOf, permutations } from '../tasks.mjs';
import { familyTfjsFormulations } from './family-tfjs.mjs';

/** Shape of a per-channel parameter that broadcasts against x with numpy rules. */
function broadcastShape(task) {
  const { shape, layout } = task.case;
  const C = channelsOf(task.case);
  return layout === 'channels-last' || shape.length === 2 ? [C] : [C, ...shape.slice(2).map(() => 1)];
}

/**
 * The forward formulations for a case: name → f(tf, x, t) returning { y, mean, variance }, with
 * t the parameter tensors (gamma, beta as [C]; runningMean, runningVar as [C]).
 * `train` selects batch statistics (tf.moments) or the running ones.
 */
function forwardFormulations(task, train) {
  const { shape, layout } = task.case;
  const rank = shape.length;
  const lastAxis = layout === 'channels-last' || rank === 2;
  const reduceAxes = lastAxis ? shape.slice(0, -1).map((_, i) => i) : [0, ...shape.slice(2).map((_, i) => i + 2)];
  const pShape = broadcastShape(task);
  const stats = (tf, x, t, axes) => (train ? tf.moments(x, axes) : { mean: t.runningMean, variance: t.runningVar });

  const viaBatchNorm = (tf, x, t) => {
    const { mean, variance } = stats(tf, x, t, reduceAxes);
    return { y: tf.batchNorm(x, mean, variance, t.beta, t.gamma, EPS), mean, variance };
  };
  const viaScaleShift = (tf, x, t) => {
    // y = x·a + b with a = gamma·rsqrt(var + eps), b = beta − mean·a, broadcast per channel.
    const { mean, variance } = stats(tf, x, t, reduceAxes);
    const a = tf.mul(t.gamma, tf.rsqrt(tf.add(variance, EPS)));
    const b = tf.sub(t.beta, tf.mul(mean, a));
    return { y: tf.add(tf.mul(x, tf.reshape(a, pShape)), tf.reshape(b, pShape)), mean, variance };
  };
  if (lastAxis) return { 'batchNorm, [C] parameters': viaBatchNorm, 'x·a + b': viaScaleShift };

  const { toLast, toFirst } = permutations(rank);
  const viaTranspose = (tf, x, t) => {
    const xt = tf.transpose(x, toLast);
    const { mean, variance } = stats(tf, xt, t, toLast.slice(0, -1).map((_, i) => i));
    return { y: tf.transpose(tf.batchNorm(xt, mean, variance, t.beta, t.gamma, EPS), toFirst), mean, variance };
  };
  // The pitfall: batchNorm broadcasts its parameters over the last axis only, so [C,1,1]
  // parameters silently give wrong values. Offered once, for inference, for the gate to reject.
  const naive = (tf, x, t) => {
    const r = (p) => tf.reshape(p, pShape);
    return { y: tf.batchNorm(x, r(t.runningMean), r(t.runningVar), r(t.beta), r(t.gamma), EPS) };
  };
  return {
    'transpose → batchNorm → transpose': viaTranspose,
    'broadcasting ops, [C,1,1] parameters': viaScaleShift,
    ...(train ? {} : { 'batchNorm, [C,1,1] parameters (naive)': naive }),
  };
}

/** A runner computing `compute(tensors)` (a record of output tensors) under one tfjs backend. */
async function tfRunner(tf, backend, task, makeInputs, compute, finish = (o) => o) {
  await tf.setBackend(backend);
  const inputs = makeInputs();
  let last = {};
  return {
    async: false,
    enter: () => tf.setBackend(backend),
    run() {
      for (const [k, t] of Object.entries(tf.tidy(() => compute(inputs)))) {
        last[k] = t.dataSync();
        t.dispose();
      }
    },
    outputs: () => finish(last),
    dispose() {
      for (const t of Object.values(inputs)) t.dispose();
      last = {};
    },
  };
}

const invStdOf = (variance) => variance.map((v) => 1 / Math.sqrt(v + EPS));

/** The formulations of one task for one tfjs backend. */
function formulations(tf, backend, task) {
  const { data, op } = task;
  const shape = task.case.shape;
  const C = data.gamma.length;
  const params = (names) => () => Object.fromEntries(names.map((n) => [n, tf.tensor1d(data[n], 'float32')]));
  const withX = (names) => () => ({ x: tf.tensor(data.x, shape, 'float32'), ...params(names)() });
  const forwards = Object.entries(forwardFormulations(task, op !== 'infer'));

  if (op === 'infer') {
    const make = withX(['gamma', 'beta', 'runningMean', 'runningVar']);
    return forwards.map(([name, f]) => ({
      name,
      prepare: () => tfRunner(tf, backend, task, make, (t) => ({ y: f(tf, t.x, t).y })),
    }));
  }
  if (op === 'train') {
    const make = withX(['gamma', 'beta']);
    return forwards.map(([name, f]) => ({
      name: `moments + ${name}`,
      prepare: () =>
        tfRunner(tf, backend, task, make, (t) => f(tf, t.x, t), (o) => ({ y: o.y, mean: o.mean, invStd: invStdOf(o.variance) })),
    }));
  }
  // backward: the gradient of the training forward, given dy.
  const make = () => ({ ...withX(['gamma', 'beta'])(), dy: tf.tensor(data.dy, shape, 'float32') });
  return forwards.map(([name, f]) => ({
    name: `tf.grads of moments + ${name}`,
    prepare() {
      const gradient = tf.grads((x, gamma, beta) => f(tf, x, { gamma, beta }).y);
      return tfRunner(tf, backend, task, make, (t) => {
        const [dx, dgamma, dbeta] = gradient([t.x, t.gamma, t.beta], t.dy);
        return { dx, dgamma: tf.reshape(dgamma, [C]), dbeta: tf.reshape(dbeta, [C]) };
      });
    },
  }));
}

/**
 * One contender per tfjs backend. `loadError` (from loading tfjs or the backend) marks it
 * unavailable.
 * @returns {Contender[]}
 */
export function tfjsContenders(tf, { backends = ['cpu', 'wasm'], errors = {} } = {}) {
  return backends.map((backend) => ({
    id: `tfjs-${backend}`,
    label: `tfjs-${backend}`,
    kind: 'peer',
    ...(errors[backend] || !tf ? { unavailable: errors[backend] ?? 'tfjs not loaded' } : {}),
    formulations(task) {
      if (task.case.dtype !== 'float32') return 'tfjs computes in float32 only';
      if (task.mode === 'async') return 'computes on the calling thread either way (data() only defers the read): see sync';
      if ((task.case.norm ?? 'batchnorm') !== 'batchnorm') return familyTfjsFormulations(tf, backend, task, tfRunner);
      return formulations(tf, backend, task);
    },
  }));
}

/**
 * Initialises the tfjs backends; returns the error text of each one that fails. `wasm` is the
 * tfjs-backend-wasm module; in browsers its .wasm files are found at `wasmPaths` (a URL prefix).
 */
export async function initTfjs(tf, backends, { wasm, wasmPaths } = {}) {
  const errors = {};
  for (const backend of backends) {
    try {
      if (backend === 'wasm' && wasmPaths) wasm.setWasmPaths(wasmPaths);
      if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') failed`);
      await tf.ready();
      tf.tensor([0]).dispose(); // the first write prints tfjs-cpu's Node greeting: get it over with here
    } catch (e) {
      errors[backend] = e instanceof Error ? e.message : String(e);
    }
  }
  return errors;
}
