/** A chain of every layer for the wasm-home tests: BatchNorm → GroupNorm → InstanceNorm → LayerNorm → RMSNorm. */
import * as api from '../../lib/index.js';

type Layer = api.BatchNorm | api.GroupNorm | api.InstanceNorm | api.LayerNorm | api.RMSNorm;

export interface Chain {
  layers: Layer[];
  /** forward through every layer, loss sum(y²)/2, backward: every output (y then dx per layer) and the input's dx */
  step(x: Float32Array, shape: number[]): { outputs: Float32Array[]; dx: Float32Array };
  /** every parameter and gradient array (current views) */
  params(): Float32Array[];
}

/** On the backend current now; shape [N, C, S, S]. */
export function chain(C: number, S: number): Chain {
  const layers: Layer[] = [
    new api.BatchNorm(C),
    new api.GroupNorm(C / 2, C, { activation: 'relu' }),
    new api.InstanceNorm(C, { affine: true, trackRunningStats: true }),
    new api.LayerNorm([S, S]),
    new api.RMSNorm(S),
  ];
  // parameters that are not ones and zeros
  let k = 0;
  for (const layer of layers) {
    for (const p of paramsOf(layer)) for (let i = 0; i < p.length; i++) p[i] = 1 + 0.1 * Math.sin(++k);
  }
  return {
    layers,
    step(x, shape) {
      const outputs: Float32Array[] = [];
      let h = x;
      for (const layer of layers) {
        h = layer.forward(h, shape);
        outputs.push(h);
      }
      let g = h; // d(sum(y²)/2)/dy = y
      for (let i = layers.length - 1; i >= 0; i--) {
        g = layers[i].backward(g);
        outputs.push(g);
      }
      // every view read again: a later call may have grown (and detached) an earlier one
      return { outputs: outputs.map((o) => o), dx: g };
    },
    params: () => layers.flatMap(paramsOf),
  };
}

function paramsOf(layer: Layer): Float32Array[] {
  const l = layer as unknown as Record<string, Float32Array | null>;
  return ['gamma', 'beta', 'weight', 'bias', 'dgamma', 'dbeta', 'dweight', 'dbias']
    .map((name) => l[name])
    .filter((a): a is Float32Array => a !== null && a !== undefined);
}

/** max |a - b| / max(1, max |b|) (Infinity for a length mismatch). */
export function maxRelative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst / scale;
}
