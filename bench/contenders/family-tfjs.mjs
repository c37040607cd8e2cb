/**
 * tfjs formulations of the family (LayerNorm, RMSNorm, GroupNorm, InstanceNorm), for the tfjs
 * contenders (./tfjs.mjs). tfjs has no fused op for any of them with explicit parameters
 * (tf.layers.layerNormalization is a layer owning its weights), so each is the moments-based
 * formulation a tfjs user writes:
 *   - LayerNorm:    tf.moments over the normalised (last) axes, keepDims; (x − μ)·rsqrt(σ² + eps)·w + b;
 *   - RMSNorm:      mean(x²) over the last axes; x·rsqrt(ms + eps)·w;
 *   - GroupNorm:    reshape to [N, G, K·S] (channels-first) or [N, S, G, K] (channels-last),
 *                   tf.moments over the group's axes, reshape back, ·γ + β per channel;
 *   - InstanceNorm: tf.moments over the spatial axes, keepDims, ·γ + β per channel.
 * Backward is tf.grads of that forward (x and the parameters), given dy.
 */
import { EPS, samplesGeometry } from '../tasks.mjs';

/** The forward of a family case: (tf, x, params) → y. */
function forwardOf(c) {
  const rank = c.shape.length;
  if (c.norm === 'layernorm' || c.norm === 'rmsnorm') {
    const axes = c.normalizedShape.map((_, i) => rank - c.normalizedShape.length + i);
    if (c.norm === 'rmsnorm') {
      return (tf, x, p) => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), axes, true), EPS))), p.weight);
    }
    return (tf, x, p) => {
      const { mean, variance } = tf.moments(x, axes, true);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, EPS))), p.weight), p.bias);
    };
  }
  const g = samplesGeometry(c);
  const last = c.layout === 'channels-last';
  const pShape = last ? [g.channels] : [g.channels, ...c.shape.slice(2).map(() => 1)];
  const affine = (tf, xh, p) => tf.add(tf.mul(xh, tf.reshape(p.gamma, pShape)), tf.reshape(p.beta, pShape));
  if (c.norm === 'instancenorm' && !last) {
    const axes = c.shape.slice(2).map((_, i) => i + 2);
    return (tf, x, p) => {
      const { mean, variance } = tf.moments(x, axes, true);
      return affine(tf, tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, EPS))), p);
    };
  }
  // GroupNorm (and channels-last InstanceNorm, G = C) through a grouped reshape.
  const grouped = last ? [g.n, g.spatial, g.groups, g.k] : [g.n, g.groups, g.k * g.spatial];
  const axes = last ? [1, 3] : [2];
  return (tf, x, p) => {
    const xr = tf.reshape(x, grouped);
    const { mean, variance } = tf.moments(xr, axes, true);
    return affine(tf, tf.reshape(tf.mul(tf.sub(xr, mean), tf.rsqrt(tf.add(variance, EPS))), c.shape), p);
  };
}

const FORMULATION = {
  layernorm: 'moments over the last axis',
  rmsnorm: 'mean(x²) over the last axis',
  groupnorm: 'grouped reshape + moments',
  instancenorm: 'moments over the spatial axes',
};

/** The parameter names of a norm, in the order tf.grads takes and returns them, and their gradient names. */
const PARAMS = {
  layernorm: [['weight', 'dweight'], ['bias', 'dbias']],
  rmsnorm: [['weight', 'dweight']],
  groupnorm: [['gamma', 'dgamma'], ['beta', 'dbeta']],
  instancenorm: [['gamma', 'dgamma'], ['beta', 'dbeta']],
};

/**
 * The formulations of a family task for one tfjs backend. `tfRunner` is ./tfjs.mjs's runner
 * (tensors made once outside the timed loop; a timed call computes, reads with dataSync, frees).
 */
export function familyTfjsFormulations(tf, backend, task, tfRunner) {
  const c = task.case;
  const { data, op } = task;
  const forward = forwardOf(c);
  const params = PARAMS[c.norm];
  const paramShape = c.norm === 'layernorm' || c.norm === 'rmsnorm' ? c.normalizedShape : [samplesGeometry(c).channels];
  const makeInputs = (withDy) => () => ({
    x: tf.tensor(data.x, c.shape, 'float32'),
    ...(withDy ? { dy: tf.tensor(data.dy, c.shape, 'float32') } : {}),
    ...Object.fromEntries(params.map(([name]) => [name, tf.tensor(data[name], paramShape, 'float32')])),
  });
  if (op === 'forward') {
    return [{ name: FORMULATION[c.norm], prepare: () => tfRunner(tf, backend, task, makeInputs(false), (t) => ({ y: forward(tf, t.x, t) })) }];
  }
  return [
    {
      name: `tf.grads of ${FORMULATION[c.norm]}`,
      prepare() {
        const gradient = tf.grads((x, ...ps) => forward(tf, x, Object.fromEntries(params.map(([name], i) => [name, ps[i]]))));
        return tfRunner(tf, backend, task, makeInputs(true), (t) => {
          const [dx, ...dps] = gradient([t.x, ...params.map(([name]) => t[name])], t.dy);
          return { dx, ...Object.fromEntries(params.map(([, grad], i) => [grad, dps[i]])) };
        });
      },
    },
  ];
}
