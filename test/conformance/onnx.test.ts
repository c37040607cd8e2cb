/**
 * The ONNX project's own operator test vectors for the normalization ops (BatchNormalization,
 * LayerNormalization, RMSNormalization, GroupNormalization, InstanceNormalization), decoded to
 * JSON in ../shared/external (its README says how, and what each field is), run through our API
 * on every backend, with Float32Arrays (as ONNX) and with Float64Array copies of the same values.
 *
 * The directory lives beside the repository, not in it: a user's clone has no ../shared/external,
 * so the suite is then a loud skip — but never with CI set (then it fails). SIMDNORM_EXTERNAL
 * names another location. SIMDNORM_TEST_BACKENDS=js (a comma list) runs only those backends.
 *
 * ONNX attributes → our options: epsilon → eps (the float32 value the model carries; RMSNorm's
 * ONNX default 1e-5 is passed explicitly, ours follows PyTorch); axis → normalizedShape =
 * shape[axis:] (negative axis + rank); num_groups → groups; BatchNormalization's momentum is the
 * weight of the old running value, as ours, and its training_mode outputs running_mean/var use the
 * biased batch variance (unbiasedRunningVar: false). GroupNormalization before opset 21 has one
 * scale/bias per group: repeated per channel (README "Differences from PyTorch and ONNX").
 *
 * The expected outputs are numpy's float32 evaluation: compared at the float32 bar (lib/compare.ts,
 * tol 1e-5 of max(|expected|, rms(expected))) whatever our dtype.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { formatMismatch, TOLERANCE, worstMismatch } from '../../lib/compare.js';

type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';

const root = fileURLToPath(new URL('../../', import.meta.url));
const EXTERNAL = process.env.SIMDNORM_EXTERNAL ? resolve(process.env.SIMDNORM_EXTERNAL) : resolve(root, '../shared/external');
const FOLDERS = ['onnx-batchnorm', 'onnx-layernorm', 'onnx-rmsnorm', 'onnx-groupnorm', 'onnx-instancenorm'];

interface Tensor {
  dims: number[];
  dtype: string;
  data: number[];
}

/** A family vector (op, node_inputs …) or a BatchNormalization one (shape, expected …), normalised. */
interface Vector {
  file: string;
  name: string;
  op: string;
  opset: number;
  attributes: Record<string, number>;
  /** positional, as the node names them */
  inputs: (Tensor | undefined)[];
  /** the node's output names, positional ('' where an optional output is not produced) */
  outputNames: string[];
  /** the expected outputs (those the vector has) */
  outputs: { name: string; tensor: Tensor }[];
  /** BatchNormalization only */
  batchNorm?: { shape: number[]; epsilon: number; momentum: number; trainingMode: boolean };
}

function loadVectors(): Vector[] {
  const vectors: Vector[] = [];
  for (const folder of FOLDERS) {
    const dir = join(EXTERNAL, folder);
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
      const j = JSON.parse(readFileSync(join(dir, file), 'utf8'));
      const path = `${folder}/${file}`;
      if (typeof j.op === 'string') {
        vectors.push({
          file: path,
          name: j.name,
          op: j.op,
          opset: j.opset,
          attributes: j.attributes ?? {},
          inputs: (j.node_inputs as string[]).map((n) => (n === '' ? undefined : j.inputs[n])),
          outputNames: j.node_outputs,
          outputs: (j.node_outputs as string[]).filter((n) => n !== '' && j.outputs[n]).map((n) => ({ name: n, tensor: j.outputs[n] })),
        });
      } else {
        // onnx-batchnorm/README.md's format: inputs {X, scale, B, input_mean, input_var}, expected {Y[, running_mean, running_var]}.
        const t = (data: number[], dims: number[]): Tensor => ({ dims, dtype: 'float32', data });
        const C = j.shape[1];
        vectors.push({
          file: path,
          name: j.name,
          op: 'BatchNormalization',
          opset: j.opset,
          attributes: j.attributes ?? {},
          inputs: ['X', 'scale', 'B', 'input_mean', 'input_var'].map((n) => t(j.inputs[n], n === 'X' ? j.shape : [C])),
          outputNames: ['Y', 'running_mean', 'running_var'],
          outputs: Object.keys(j.expected).map((n) => ({ name: n, tensor: t(j.expected[n], n === 'Y' ? j.shape : [C]) })),
          batchNorm: { shape: j.shape, epsilon: j.epsilon, momentum: j.momentum, trainingMode: !!j.training_mode },
        });
      }
    }
  }
  return vectors;
}

const KNOWN_ATTRIBUTES: Record<string, string[]> = {
  BatchNormalization: ['epsilon', 'momentum', 'training_mode', 'is_test', 'spatial'],
  LayerNormalization: ['axis', 'epsilon', 'stash_type'],
  RMSNormalization: ['axis', 'epsilon', 'stash_type'],
  GroupNormalization: ['epsilon', 'num_groups', 'stash_type'],
  InstanceNormalization: ['epsilon'],
};

/** Why a vector cannot be run as it stands, or undefined (an unknown op or attribute fails loudly instead). */
function unsupported(v: Vector): string | undefined {
  const known = KNOWN_ATTRIBUTES[v.op];
  if (!known) throw new Error(`${v.file}: op ${v.op} is not mapped to simdnorm`);
  for (const a of Object.keys(v.attributes)) {
    if (!known.includes(a)) throw new Error(`${v.file}: attribute ${a} = ${v.attributes[a]} of ${v.op} is not mapped`);
  }
  if (v.attributes.stash_type !== undefined && v.attributes.stash_type !== 1) {
    return `stash_type ${v.attributes.stash_type} (statistics in the input's type) is not float32 statistics`;
  }
  if (v.op === 'BatchNormalization' && v.attributes.spatial === 0) return 'spatial = 0 (per-element statistics, opset < 9) has no simdnorm equivalent';
  return undefined;
}

/** epsilon as the model carries it (a float32), or ONNX's default. */
const epsOf = (v: Vector): number => Math.fround(v.attributes.epsilon ?? v.batchNorm?.epsilon ?? 1e-5);

function arrayOf(t: Tensor | undefined, dtype: DType): FloatArray | null {
  if (!t) return null;
  return dtype === 'float32' ? Float32Array.from(t.data) : Float64Array.from(t.data);
}

/** Runs one vector on the current backend; returns the outputs by ONNX name. */
function runVector(v: Vector, dtype: DType): Record<string, ArrayLike<number>> {
  const [xT] = v.inputs;
  const x = arrayOf(xT, dtype)!;
  const shape = xT!.dims;
  const rank = shape.length;
  const eps = epsOf(v);
  // our results in the node's output order (Y, Mean, InvStdDev), by the node's names
  const byPosition = (values: ArrayLike<number>[]): Record<string, ArrayLike<number>> => {
    const out: Record<string, ArrayLike<number>> = {};
    v.outputNames.forEach((n, i) => {
      if (n !== '' && i < values.length) out[n] = values[i];
    });
    return out;
  };
  switch (v.op) {
    case 'LayerNormalization': {
      const axis = v.attributes.axis ?? -1;
      const a = axis < 0 ? axis + rank : axis;
      const normalizedShape = shape.slice(a);
      const r = api.layerNorm({ x, shape, normalizedShape, weight: arrayOf(v.inputs[1], dtype), bias: arrayOf(v.inputs[2], dtype) }, { eps });
      return byPosition([r.y, r.mean, r.invStd]);
    }
    case 'RMSNormalization': {
      const axis = v.attributes.axis ?? -1;
      const a = axis < 0 ? axis + rank : axis;
      const r = api.rmsNorm({ x, shape, normalizedShape: shape.slice(a), weight: arrayOf(v.inputs[1], dtype) }, { eps });
      return byPosition([r.y]);
    }
    case 'GroupNormalization': {
      const groups = v.attributes.num_groups;
      const C = shape[1];
      let gamma = arrayOf(v.inputs[1], dtype);
      let beta = arrayOf(v.inputs[2], dtype);
      if (v.opset < 21 && groups !== C) {
        // Opset 18's scale/bias are per group: repeat each for the group's C/G channels.
        const perChannel = (a: FloatArray | null) => a && (a.constructor as typeof Float32Array).from({ length: C }, (_, c) => a[Math.floor(c / (C / groups))]);
        gamma = perChannel(gamma);
        beta = perChannel(beta);
      }
      const r = api.groupNorm({ x, shape, groups, gamma, beta }, { eps });
      return byPosition([r.y]);
    }
    case 'InstanceNormalization': {
      const r = api.instanceNorm({ x, shape, gamma: arrayOf(v.inputs[1], dtype), beta: arrayOf(v.inputs[2], dtype) }, { eps });
      return byPosition([r.y]);
    }
    case 'BatchNormalization': {
      const [, scale, bias, mean, variance] = v.inputs.map((t) => arrayOf(t, dtype)!);
      const bn = v.batchNorm!;
      if (bn.trainingMode) {
        const momentum = v.attributes.momentum ?? bn.momentum;
        const runningMean = mean.slice();
        const runningVar = variance.slice();
        const r = api.batchNormTrain({ x, shape, gamma: scale, beta: bias, runningMean, runningVar }, { eps, momentum, unbiasedRunningVar: false });
        return { Y: r.y, running_mean: runningMean, running_var: runningVar };
      }
      const r = api.batchNormInfer({ x, shape, gamma: scale, beta: bias, runningMean: mean, runningVar: variance }, { eps });
      return { Y: r.y };
    }
    default:
      throw new Error(`${v.file}: op ${v.op} is not mapped to simdnorm`);
  }
}

function checkVector(v: Vector, dtype: DType): void {
  const got = runVector(v, dtype);
  const failures: string[] = [];
  for (const { name, tensor } of v.outputs) {
    const g = got[name];
    if (!g) {
      failures.push(`${name}: not produced`);
      continue;
    }
    const m = worstMismatch(g, tensor.data, TOLERANCE.float32, 0, 2 ** -149);
    if (m) failures.push(formatMismatch(name, m));
  }
  if (failures.length) throw new Error(`${v.file} (${v.op}-${v.opset}, ${dtype}): ${failures.join('; ')}`);
}

const present = existsSync(EXTERNAL);
await api.ready();
const status = api.backends();

describe(`ONNX operator vectors (needs ${EXTERNAL}, ../shared/external beside the repository)`, () => {
  if (!present) {
    if (process.env.CI) {
      it('the ONNX vectors are present (CI never skips)', () => {
        throw new Error(`CI: ${EXTERNAL} (../shared/external) is missing; the ONNX vectors cannot be checked`);
      });
    } else {
      console.warn(`\n*** SKIPPING the ONNX vectors: ${EXTERNAL} (../shared/external) is not there (a clone of the repository alone has no vectors) ***\n`);
      it.skip(`needs ${EXTERNAL}`, () => {});
    }
    return;
  }
  const vectors = loadVectors();
  it(`found vectors for every op (${vectors.length} in all)`, () => {
    const ops = new Set(vectors.map((v) => v.op));
    for (const op of Object.keys(KNOWN_ATTRIBUTES)) if (!ops.has(op)) throw new Error(`no ${op} vectors in ${EXTERNAL}`);
  });
  const only = process.env.SIMDNORM_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);
  for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
    const s = status.find((b) => b.name === name);
    const reason = only && !only.includes(name) ? `not in SIMDNORM_TEST_BACKENDS=${only.join(',')}` : !s ? 'not registered' : s.available ? undefined : s.reason;
    describe(`onnx: ${name}`, () => {
      if (reason !== undefined) {
        if (process.env.CI) {
          it(`${name} backend is available (CI never skips)`, () => {
            throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
          });
        } else {
          console.warn(`\n*** SKIPPING the ONNX vectors on ${name}: ${reason} ***\n`);
          it.skip(`${name} unavailable: ${reason}`, () => {});
        }
        return;
      }
      beforeAll(() => api.useBackend(name));
      afterAll(() => api.useBackend('auto'));
      for (const v of vectors) {
        for (const dtype of ['float32', 'float64'] as const) {
          it(`${v.op}-${v.opset} ${v.name} ${dtype}`, (ctx) => {
            const why = unsupported(v);
            if (why !== undefined) {
              console.warn(`*** SKIPPING ${v.file} on ${name}: ${why} ***`);
              return ctx.skip(why);
            }
            checkVector(v, dtype);
          });
        }
      }
    });
  }
});
