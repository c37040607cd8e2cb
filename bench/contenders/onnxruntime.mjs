/**
 * ONNX Runtime (onnxruntime-node: native CPU execution provider; onnxruntime-web: its WASM
 * build) as contenders, each on a model built in code (./onnx-model.mjs) whose parameters are
 * initializers, as in a deployed model.
 *
 *   - inference: BatchNormalization (channels-last wrapped in Transposes, as ONNX is
 *     channels-first), or x·a + b as Mul + Add with a, b folded into initializers;
 *   - training forward: BatchNormalization with training_mode = 1 (it also writes the running
 *     statistics);
 *   - backward: not available (no BatchNormalization gradient outside ORT's training builds);
 *   - sync: not available (InferenceSession.run is async only), so ORT appears in async rows;
 *   - the family (LayerNorm, RMSNorm, GroupNorm, InstanceNorm): forward on the ops listed in
 *     ./family-onnx.mjs; no backward.
 * onnxruntime-node writes into pre-allocated outputs; onnxruntime-web ignores them, so there
 * each run allocates its output.
 *
 * @typedef {import('../runner.mjs').Contender} Contender
 * @typedef {import('../tasks.mjs').Task} Task
 */
import { EPS, channelsOf, permutations } from '../tasks.mjs';
import { familyOnnxModels } from './family-onnx.mjs';
import { node, onnxModel } from './onnx-model.mjs';

/** The model of a formulation: { nodes, initializers, outputs } around input x. */
function batchNormModel(task, training) {
  const { shape, layout, dtype } = task.case;
  const { data } = task;
  const C = channelsOf(task.case);
  const transposed = layout === 'channels-last' && shape.length > 2;
  const { toLast, toFirst } = permutations(shape.length);
  const bnIn = transposed ? 'x_first' : 'x';
  const bnOut = transposed ? 'y_first' : 'y';
  const running = training ? ['running_mean', 'running_var'] : [];
  const nodes = [
    ...(transposed ? [node('Transpose', ['x'], [bnIn], { perm: toFirst })] : []),
    node('BatchNormalization', [bnIn, 'scale', 'B', 'input_mean', 'input_var'], [bnOut, ...running], {
      epsilon: EPS,
      momentum: 0.9,
      training_mode: { int: training ? 1 : 0 },
    }),
    ...(transposed ? [node('Transpose', [bnOut], ['y'], { perm: toLast })] : []),
  ];
  const param = (name, values) => ({ name, values, dims: [C] });
  return {
    nodes,
    initializers: [param('scale', data.gamma), param('B', data.beta), param('input_mean', data.runningMean), param('input_var', data.runningVar)],
    outputs: [{ name: 'y', dtype, dims: shape }, ...running.map((name) => ({ name, dtype, dims: [C] }))],
  };
}

/** Inference as Mul + Add with a = gamma/sqrt(var + eps), b = beta − mean·a broadcast per channel. */
function scaleShiftModel(task) {
  const { shape, layout, dtype } = task.case;
  const { data } = task;
  const C = channelsOf(task.case);
  const a = data.gamma.map((g, c) => g / Math.sqrt(data.runningVar[c] + EPS));
  const b = data.beta.map((v, c) => v - data.runningMean[c] * a[c]);
  const dims = layout === 'channels-last' || shape.length === 2 ? [C] : [C, ...shape.slice(2).map(() => 1)];
  return {
    nodes: [node('Mul', ['x', 'a'], ['xa']), node('Add', ['xa', 'b'], ['y'])],
    initializers: [{ name: 'a', values: a, dims }, { name: 'b', values: b, dims }],
    outputs: [{ name: 'y', dtype, dims: shape }],
  };
}

/** A runner over one ORT session of `model`. */
async function sessionRunner(peer, task, model) {
  const { ort, sessionOptions, preallocate } = peer;
  const { shape, dtype } = task.case;
  const bytes = onnxModel({ ...model, inputs: [{ name: 'x', dtype, dims: shape }] });
  const session = await ort.InferenceSession.create(bytes, sessionOptions);
  const feeds = { x: new ort.Tensor(dtype, task.data.x, shape) };
  const y = preallocate ? new task.data.x.constructor(task.data.x.length) : null;
  const fetches = y ? { y: new ort.Tensor(dtype, y, shape) } : undefined;
  let last;
  return {
    async: true,
    run: fetches ? async () => (last = await session.run(feeds, fetches)) : async () => (last = await session.run(feeds)),
    outputs: () => ({ y: y ?? last.y.data }),
    dispose: () => session.release(),
  };
}

/**
 * @param {{ id: string, ort?: any, error?: string, preallocate: boolean, sessionOptions: object }[]} peers
 * @returns {Contender[]}
 */
export function onnxruntimeContenders(peers) {
  return peers.map((peer) => ({
    id: peer.id,
    label: peer.id,
    kind: 'peer',
    ...(peer.error ? { unavailable: peer.error } : {}),
    formulations(task) {
      if (task.mode === 'sync') return 'InferenceSession.run is async only';
      if ((task.case.norm ?? 'batchnorm') !== 'batchnorm') {
        if (task.op === 'backward') return 'no gradient ops (only in ORT training builds)';
        return familyOnnxModels(task).map(({ name, model }) => ({ name, prepare: () => sessionRunner(peer, task, model) }));
      }
      if (task.op === 'backward') return 'no BatchNormalization gradient (only in ORT training builds)';
      const transposes = task.case.layout === 'channels-last' && task.case.shape.length > 2 ? ' (in Transposes)' : '';
      if (task.op === 'train') {
        return [{ name: `BatchNormalization training_mode=1${transposes}`, prepare: () => sessionRunner(peer, task, batchNormModel(task, true)) }];
      }
      return [
        { name: `BatchNormalization${transposes}`, prepare: () => sessionRunner(peer, task, batchNormModel(task, false)) },
        { name: 'Mul + Add, a and b folded', prepare: () => sessionRunner(peer, task, scaleShiftModel(task)) },
      ];
    },
  }));
}
