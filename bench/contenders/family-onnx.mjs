/**
 * ONNX models of the family's forward ops, for the onnxruntime contenders (./onnxruntime.mjs),
 * parameters as initializers. What onnxruntime 1.30 (node and web) was found to run:
 *   - LayerNorm:    LayerNormalization (opset 17), axis = −(normalised dims);
 *   - RMSNorm:      RMSNormalization (opset 23), and SimplifiedLayerNormalization (ORT's contrib op,
 *                   registered in the ai.onnx domain: the com.microsoft spelling is not registered);
 *   - GroupNorm:    GroupNormalization (opset 21: per-channel scale and bias), and opset 18's
 *                   (per-group scale, given as ones) followed by Mul + Add per channel;
 *                   channels-last wrapped in Transposes (ONNX is channels-first);
 *   - InstanceNorm: InstanceNormalization (opset 17).
 * Each formulation is checked against the reference; the fastest correct one is timed. There is
 * no backward: ORT's inference builds have no gradient ops.
 */
import { EPS, permutations, samplesGeometry } from '../tasks.mjs';
import { node } from './onnx-model.mjs';

/** Nodes around a channels-first core: Transposes for a channels-last case. */
function channelsFirst(task, core) {
  const { shape, layout } = task.case;
  if (layout !== 'channels-last') return core('x', 'y');
  const { toLast, toFirst } = permutations(shape.length);
  return [node('Transpose', ['x'], ['x_first'], { perm: toFirst }), ...core('x_first', 'y_first'), node('Transpose', ['y_first'], ['y'], { perm: toLast })];
}

/** Per-channel [C] parameters as [C, 1, …] for broadcasting against channels-first x. */
const perChannelDims = (task, C) => [C, ...task.case.shape.slice(2).map(() => 1)];

/**
 * The forward formulations of a family task: [{ name, model }] with model { nodes, initializers,
 * outputs, opset, domains } around input x (see onnx-model.mjs).
 */
export function familyOnnxModels(task) {
  const c = task.case;
  const { data } = task;
  const { dtype, shape } = c;
  const output = [{ name: 'y', dtype, dims: shape }];
  const param = (name, values, dims = [values.length]) => ({ name, values, dims });
  if (c.norm === 'layernorm') {
    const axis = -c.normalizedShape.length;
    const dims = c.normalizedShape;
    return [
      {
        name: 'LayerNormalization (opset 17)',
        model: {
          nodes: [node('LayerNormalization', ['x', 'scale', 'B'], ['y'], { axis: { int: axis }, epsilon: EPS })],
          initializers: [param('scale', data.weight, dims), param('B', data.bias, dims)],
          outputs: output,
          opset: 17,
        },
      },
    ];
  }
  if (c.norm === 'rmsnorm') {
    const axis = -c.normalizedShape.length;
    const init = [param('scale', data.weight, c.normalizedShape)];
    return [
      {
        name: 'RMSNormalization (opset 23)',
        model: { nodes: [node('RMSNormalization', ['x', 'scale'], ['y'], { axis: { int: axis }, epsilon: EPS })], initializers: init, outputs: output, opset: 23 },
      },
      {
        name: 'SimplifiedLayerNormalization (ORT contrib op)',
        model: { nodes: [node('SimplifiedLayerNormalization', ['x', 'scale'], ['y'], { axis: { int: axis }, epsilon: EPS })], initializers: init, outputs: output, opset: 17 },
      },
    ];
  }
  const g = samplesGeometry(c);
  const transposes = c.layout === 'channels-last' ? ' (in Transposes)' : '';
  if (c.norm === 'groupnorm') {
    const ones = new data.gamma.constructor(g.groups).fill(1);
    const zeros = new data.gamma.constructor(g.groups);
    return [
      {
        name: `GroupNormalization (opset 21)${transposes}`,
        model: {
          nodes: channelsFirst(task, (x, y) => [node('GroupNormalization', [x, 'scale', 'bias'], [y], { num_groups: { int: g.groups }, epsilon: EPS })]),
          initializers: [param('scale', data.gamma), param('bias', data.beta)],
          outputs: output,
          opset: 21,
        },
      },
      {
        name: `GroupNormalization (opset 18, unit per-group scale) + Mul + Add per channel${transposes}`,
        model: {
          nodes: channelsFirst(task, (x, y) => [
            node('GroupNormalization', [x, 'ones', 'zeros'], ['xhat'], { num_groups: { int: g.groups }, epsilon: EPS }),
            node('Mul', ['xhat', 'gamma'], ['scaled']),
            node('Add', ['scaled', 'beta'], [y]),
          ]),
          initializers: [
            param('ones', ones),
            param('zeros', zeros),
            param('gamma', data.gamma, perChannelDims(task, g.channels)),
            param('beta', data.beta, perChannelDims(task, g.channels)),
          ],
          outputs: output,
          opset: 18,
        },
      },
    ];
  }
  return [
    {
      name: `InstanceNormalization (opset 17)${transposes}`,
      model: {
        nodes: channelsFirst(task, (x, y) => [node('InstanceNormalization', [x, 'scale', 'B'], [y], { epsilon: EPS })]),
        initializers: [param('scale', data.gamma), param('B', data.beta)],
        outputs: output,
        opset: 17,
      },
    },
  ];
}
