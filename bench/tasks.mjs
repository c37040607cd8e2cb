/**
 * What is measured: the cases (which norm, shape, layout, dtype), the ops with the bytes each one
 * must move, the data of a case, and the float64 reference every contender is checked against.
 * BatchNorm cases have the ops train / infer / backward; the family's cases (LayerNorm, RMSNorm,
 * GroupNorm, InstanceNorm) have forward / backward.
 * Runs in Node and in the browser page: `api` is the simdnorm module (public API) and `compare`
 * its dist/compare.js, passed in by the environment.
 */

/** @typedef {'train' | 'infer' | 'forward' | 'backward'} Op */
/** @typedef {'batchnorm' | 'layernorm' | 'rmsnorm' | 'groupnorm' | 'instancenorm'} Norm */
/** @typedef {'sync' | 'async' | 'either'} Mode  either: sync where the contender has it, else async */
/** @typedef {'float32' | 'float64'} DType */
/** @typedef {'channels-first' | 'channels-last'} Layout */

/**
 * @typedef {object} CaseDef
 * @property {string} id
 * @property {string} label   what the table shows
 * @property {number[]} shape
 * @property {Layout} layout
 * @property {DType} dtype
 * @property {Norm} norm
 * @property {number[]} [normalizedShape]  LayerNorm, RMSNorm: the last dims normalised together
 * @property {number} [groups]             GroupNorm: G
 */

/**
 * @typedef {object} Task   one (case, op, mode) measurement
 * @property {CaseDef} case
 * @property {Op} op
 * @property {Mode} mode
 * @property {CaseData} data
 */

/**
 * BatchNorm: elements read or written per tensor element, at minimum (the convention):
 * inference reads x and writes y; training reads x twice (statistics, then normalise) and writes
 * y; backward reads dy and x for the reductions and again for dx, and writes dx (counted as 5).
 */
export const ACCESSES = { infer: 2, train: 3, backward: 5 };

/**
 * The family (LayerNorm, RMSNorm, GroupNorm, InstanceNorm): the strict minimum, as the issue
 * states it — forward reads x once and writes y once (2), backward reads dy and x once and
 * writes dx (3). A two-pass kernel reaches them when a row, group or instance stays in cache
 * between its passes; where it does not, the second pass over x (and dy) shows in the ratio.
 */
export const FAMILY_ACCESSES = { forward: 2, backward: 3 };

/** Accesses per element of an op on a case (BatchNorm's or the family's convention). */
export const accessesOf = (c, op) => ((c.norm ?? 'batchnorm') === 'batchnorm' ? ACCESSES : FAMILY_ACCESSES)[op];

/** The copy the bound is measured with reads and writes each element once. */
export const COPY_ACCESSES = 2;

/** BatchNorm's ops. */
export const OPS = /** @type {const} */ (['train', 'infer', 'backward']);
/** The family's ops. */
export const FAMILY_OPS = /** @type {const} */ (['forward', 'backward']);
/** Every op, in the order tables show them. */
export const ALL_OPS = /** @type {const} */ (['train', 'infer', 'forward', 'backward']);

/** The ops of a case's norm. */
export const opsOf = (c) => ((c.norm ?? 'batchnorm') === 'batchnorm' ? OPS : FAMILY_OPS);

export const OP_LABEL = { train: 'train fwd', infer: 'inference', forward: 'forward', backward: 'backward' };

export const NORM_LABEL = { batchnorm: 'BatchNorm', layernorm: 'LayerNorm', rmsnorm: 'RMSNorm', groupnorm: 'GroupNorm', instancenorm: 'InstanceNorm' };

const make = (id, label, shape, layout = 'channels-first', dtype = 'float32', extra = {}) => ({ id, label, shape, layout, dtype, norm: 'batchnorm', ...extra });

/** LayerNorm or RMSNorm over the last dim of [rows, D]. */
const rows = (norm, key, [r, d]) =>
  make(`${key}-${r}x${d}`, `${NORM_LABEL[norm]} [${r},${d}]`, [r, d], 'channels-first', 'float32', { norm, normalizedShape: [d] });

/** GroupNorm of [N, C, H, W] with G groups, channels-first or (the same N, C, H, W) channels-last. */
function group([n, c, h, w], groups, layout = 'channels-first') {
  const last = layout === 'channels-last';
  const shape = last ? [n, h, w, c] : [n, c, h, w];
  return make(`gn-${last ? 'nhwc' : 'nchw'}-${shape.join('x')}-g${groups}`, `GroupNorm ${last ? 'NHWC' : 'NCHW'} [${shape.join(',')}] G=${groups}`, shape, layout, 'float32', {
    norm: 'groupnorm',
    groups,
  });
}

const instance = (shape) => make(`in-nchw-${shape.join('x')}`, `InstanceNorm NCHW [${shape.join(',')}]`, shape, 'channels-first', 'float32', { norm: 'instancenorm' });

/** The issues' cases, in the order tables and the chart show them: BatchNorm's, then the family's. */
export const CASES = {
  nchw: make('nchw-32x64x56x56', 'BatchNorm NCHW [32,64,56,56]', [32, 64, 56, 56]),
  nhwc: make('nhwc-32x56x56x64', 'BatchNorm NHWC [32,56,56,64]', [32, 56, 56, 64], 'channels-last'),
  nc: make('nc-256x1024', 'BatchNorm NC [256,1024]', [256, 1024]),
  small: make('nchw-8x256x14x14', 'BatchNorm NCHW [8,256,14,14]', [8, 256, 14, 14]),
  nc64: make('nc-256x1024-f64', 'BatchNorm NC [256,1024]', [256, 1024], 'channels-first', 'float64'),
  tiny: make('nchw-2x3x4x5', 'BatchNorm NCHW [2,3,4,5]', [2, 3, 4, 5]),
  'ln-8192x768': rows('layernorm', 'ln', [8192, 768]),
  'ln-2048x4096': rows('layernorm', 'ln', [2048, 4096]),
  'ln-64x128': rows('layernorm', 'ln', [64, 128]),
  'rms-8192x768': rows('rmsnorm', 'rms', [8192, 768]),
  'rms-2048x4096': rows('rmsnorm', 'rms', [2048, 4096]),
  'rms-64x128': rows('rmsnorm', 'rms', [64, 128]),
  'gn-8x320x64x64': group([8, 320, 64, 64], 32),
  'gn-nhwc-8x64x64x320': group([8, 320, 64, 64], 32, 'channels-last'),
  'gn-2x64x32x32': group([2, 64, 32, 32], 8),
  'in-1x64x256x256': instance([1, 64, 256, 256]),
  'in-16x3x224x224': instance([16, 3, 224, 224]),
};

/** The family's case keys (LayerNorm, RMSNorm, GroupNorm, InstanceNorm), in display order. */
export const FAMILY_CASES = Object.keys(CASES).filter((k) => CASES[k].norm !== 'batchnorm');

/** A case's short name: its label, marked " f64" when float64 (float32 is the default). */
export const caseName = (c) => `${c.label}${c.dtype === 'float64' ? ' f64' : ''}`;

/** Position of a case in the display order (sweep cases after the named ones, by size). */
export function displayRank(caseResult) {
  const i = Object.values(CASES).findIndex((c) => c.id === caseResult.id);
  return i >= 0 ? i : 100 + Math.log2(caseResult.elements);
}

/**
 * The size sweep: [N, 64] from 1 Ki to 64 Mi elements, for per-call overhead (small end) and
 * scaling into DRAM (large end). Rank 2, so every peer's plain formulation applies.
 */
export const SWEEP_SHAPE_NOTE = '[N, 64] float32';
export function sweepCases(exponents) {
  return exponents.map((e) => make(`sweep-2^${e}`, formatCount(2 ** e), [2 ** e / 64, 64]));
}

/**
 * The small tensors: NCHW [N, 4, 5, 5] from 100 to 64,000 elements (N = 1 … 640), where a call's
 * time is its per-call overhead (argument checks, the call into the backend) more than its
 * kernel: every backend against the plain JS loop (issue 17's budgets).
 */
export const SMALL_SHAPE_NOTE = 'NCHW [N, 4, 5, 5] float32';
export function smallCases(batches) {
  return batches.map((n) => make(`small-${100 * n}`, String(100 * n), [n, 4, 5, 5]));
}

export function formatCount(n) {
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20}M`;
  if (n >= 2 ** 10 && n % 2 ** 10 === 0) return `${n / 2 ** 10}K`;
  return String(n);
}

export const elementsOf = (c) => c.shape.reduce((a, b) => a * b, 1);
export const bytesPerElement = (c) => (c.dtype === 'float64' ? 8 : 4);
export const channelAxis = (c) => (c.layout === 'channels-first' ? 1 : c.shape.length - 1);
export const channelsOf = (c) => c.shape[channelAxis(c)];

/** Minimal bytes an op must move on this case. */
export const opBytes = (c, op) => elementsOf(c) * bytesPerElement(c) * accessesOf(c, op);

/** x seen as [outer][C][inner] (channels-last: inner = 1), as the kernels see it. */
export function geometry(c) {
  const axis = channelAxis(c);
  const outer = c.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = c.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return { outer, channels: c.shape[axis], inner };
}

/** Axis permutations between channels-first and channels-last for a rank-r tensor. */
export function permutations(rank) {
  const middle = Array.from({ length: rank - 2 }, (_, i) => i + 2);
  return { toLast: [0, ...middle, 1], toFirst: [0, rank - 1, ...middle.map((a) => a - 1)] };
}

export const EPS = 1e-5;

/**
 * @typedef {object} CaseData  the inputs of every op on one case, in the case's dtype
 * @property {Float32Array | Float64Array} x
 * @property {Float32Array | Float64Array} dy
 * @property {Float32Array | Float64Array} gamma
 * @property {Float32Array | Float64Array} beta
 * @property {Float32Array | Float64Array} runningMean
 * @property {Float32Array | Float64Array} runningVar
 * @property {Float32Array | Float64Array} mean    the batch mean (from the reference): backward's input
 * @property {Float32Array | Float64Array} invStd  the batch 1/sqrt(var + eps): backward's input
 * @property {(op: Op) => Reference} reference     computed on first use; reference('train') sets mean/invStd
 */

/**
 * @typedef {object} Reference
 * @property {Record<string, Float64Array>} outputs
 * @property {Record<string, number>} scales   per output, the scale errors are judged at (see worstMismatch)
 */

/**
 * Random data of unit scale (x = N(0,1), as the accuracy contract is stated) and the float64
 * reference of every op, from simdnorm's `js` backend on float64 copies of the same values.
 */
export function makeCaseData(api, c, Random, seed = 1) {
  if ((c.norm ?? 'batchnorm') !== 'batchnorm') return makeFamilyData(api, c, Random, seed);
  const rng = new Random(seed);
  const Type = c.dtype === 'float64' ? Float64Array : Float32Array;
  const n = elementsOf(c);
  const C = channelsOf(c);
  const fill = (length, scale = 1, offset = 0) => rng.fill(new Type(length), scale, offset);
  const x = fill(n);
  let dy = null; // made on first use: only backward needs it
  const gamma = fill(C, 0.5, 1);
  const beta = fill(C);
  const runningMean = fill(C, 0.2);
  const runningVar = fill(C).map((v) => 0.5 + Math.abs(v));

  const f64 = (a) => Float64Array.from(a);
  const shape = c.shape;
  const options = { layout: c.layout, eps: EPS };
  const onReference = (fn) => api.withBackend('js', fn);
  /** @type {Partial<Record<Op, Reference>>} */
  const cache = {};
  const data = {
    x, gamma, beta, runningMean, runningVar,
    get dy() {
      return (dy ??= rng.fill(new Type(n)));
    },
    /** the batch statistics backward takes as inputs, rounded to the dtype as a forward pass would give them */
    mean: /** @type {any} */ (null),
    invStd: /** @type {any} */ (null),
    /** The float64 reference of an op, computed on first use (the size sweep needs only two ops). */
    reference(op) {
      if (cache[op]) return cache[op];
      if (op === 'train') {
        const r = onReference(() => api.batchNormTrain({ x: f64(x), shape, gamma: f64(gamma), beta: f64(beta) }, options));
        data.mean = Type.from(r.mean);
        data.invStd = Type.from(r.invStd);
        cache.train = { outputs: { y: r.y, mean: r.mean, invStd: r.invStd }, scales: {} };
      } else if (op === 'infer') {
        const r = onReference(() =>
          api.batchNormInfer({ x: f64(x), shape, runningMean: f64(runningMean), runningVar: f64(runningVar), gamma: f64(gamma), beta: f64(beta) }, options),
        );
        cache.infer = { outputs: { y: r.y }, scales: {} };
      } else {
        if (!data.mean) data.reference('train');
        const r = onReference(() =>
          api.batchNormBackward(
            { dy: f64(data.dy), x: f64(x), shape, mean: f64(data.mean), invStd: f64(data.invStd), gamma: f64(gamma) },
            { layout: c.layout },
          ),
        );
        // Training dx is a difference of terms of size gamma·invStd·dy: judged at that scale.
        cache.backward = { outputs: { dx: r.dx, dgamma: r.dgamma, dbeta: r.dbeta }, scales: { dx: rmsOfTerms(data.dy, gamma, data.invStd, c) } };
      }
      return cache[op];
    },
  };
  return data;
}

/** LayerNorm / RMSNorm cases as rows × D. */
export function rowsGeometry(c) {
  const size = c.normalizedShape.reduce((a, b) => a * b, 1);
  return { rows: elementsOf(c) / size, size };
}

/**
 * GroupNorm / InstanceNorm cases: N, C, S (spatial positions), G (InstanceNorm: G = C) and
 * K = C/G channels per group.
 */
export function samplesGeometry(c) {
  const last = c.shape.length - 1;
  const channels = c.layout === 'channels-first' ? c.shape[1] : c.shape[last];
  const spatial = c.layout === 'channels-first' ? c.shape.slice(2) : c.shape.slice(1, last);
  const groups = c.norm === 'groupnorm' ? c.groups : channels;
  return { n: c.shape[0], channels, spatial: spatial.reduce((a, b) => a * b, 1), groups, k: channels / groups, layout: c.layout };
}

/**
 * The per-element parameter index and statistic index of a family case, as two functions of the
 * flat index (for the reference's error scale; not timed).
 */
function familyIndex(c) {
  if (c.norm === 'layernorm' || c.norm === 'rmsnorm') {
    const { size } = rowsGeometry(c);
    return { param: (i) => i % size, stat: (i) => Math.floor(i / size) };
  }
  const { channels: C, spatial: S, groups: G, k: K } = samplesGeometry(c);
  const channel = c.layout === 'channels-first' ? (i) => Math.floor(i / S) % C : (i) => i % C;
  const sample = (i) => Math.floor(i / (C * S));
  return { param: channel, stat: (i) => sample(i) * G + Math.floor(channel(i) / K) };
}

/** RMS of dy·param·invStd over the elements: the size of the terms training dx is a difference of. */
function familyTermScale(c, dy, param, invStd) {
  const index = familyIndex(c);
  let sum = 0;
  for (let i = 0; i < dy.length; i++) sum += (dy[i] * param[index.param(i)] * invStd[index.stat(i)]) ** 2;
  return Math.sqrt(sum / dy.length);
}

/**
 * The family's data: x, dy, the affine parameters (LayerNorm: weight, bias over D; RMSNorm:
 * weight; GroupNorm, InstanceNorm: gamma, beta per channel), and after the forward reference the
 * statistics backward takes (mean, invStd; RMSNorm: invRms), rounded to the dtype. The reference
 * is simdnorm's `js` backend on float64 copies (eps = EPS for every op, RMSNorm included, as its
 * own default is dtype-dependent).
 */
function makeFamilyData(api, c, Random, seed) {
  const rng = new Random(seed);
  const Type = c.dtype === 'float64' ? Float64Array : Float32Array;
  const n = elementsOf(c);
  const fill = (length, scale = 1, offset = 0) => rng.fill(new Type(length), scale, offset);
  const x = fill(n);
  let dy = null;
  const f64 = (a) => Float64Array.from(a);
  const shape = c.shape;
  const onReference = (fn) => api.withBackend('js', fn);
  const rowsCase = c.norm === 'layernorm' || c.norm === 'rmsnorm';
  const paramLength = rowsCase ? rowsGeometry(c).size : samplesGeometry(c).channels;
  const params =
    c.norm === 'layernorm'
      ? { weight: fill(paramLength, 0.5, 1), bias: fill(paramLength) }
      : c.norm === 'rmsnorm'
        ? { weight: fill(paramLength, 0.5, 1) }
        : { gamma: fill(paramLength, 0.5, 1), beta: fill(paramLength) };
  const cache = {};
  const data = {
    x,
    ...params,
    get dy() {
      return (dy ??= rng.fill(new Type(n)));
    },
    /** forward's statistics, backward's inputs (null until reference('forward')) */
    mean: /** @type {any} */ (null),
    invStd: /** @type {any} */ (null),
    invRms: /** @type {any} */ (null),
    reference(op) {
      if (cache[op]) return cache[op];
      const p = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, f64(v)]));
      if (op === 'forward') {
        let r;
        if (c.norm === 'layernorm') r = onReference(() => api.layerNorm({ x: f64(x), shape, normalizedShape: c.normalizedShape, ...p }, { eps: EPS }));
        else if (c.norm === 'rmsnorm') r = onReference(() => api.rmsNorm({ x: f64(x), shape, normalizedShape: c.normalizedShape, ...p }, { eps: EPS }));
        else if (c.norm === 'groupnorm') r = onReference(() => api.groupNorm({ x: f64(x), shape, groups: c.groups, ...p }, { eps: EPS, layout: c.layout }));
        else r = onReference(() => api.instanceNorm({ x: f64(x), shape, ...p }, { eps: EPS, layout: c.layout }));
        if (c.norm === 'rmsnorm') {
          data.invRms = Type.from(r.invRms);
          cache.forward = { outputs: { y: r.y, invRms: r.invRms }, scales: {} };
        } else {
          data.mean = Type.from(r.mean);
          data.invStd = Type.from(r.invStd);
          cache.forward = { outputs: { y: r.y, mean: r.mean, invStd: r.invStd }, scales: {} };
        }
      } else {
        if (!cache.forward) data.reference('forward');
        const common = { dy: f64(data.dy), x: f64(x), shape };
        let r;
        if (c.norm === 'layernorm') {
          r = onReference(() => api.layerNormBackward({ ...common, normalizedShape: c.normalizedShape, mean: f64(data.mean), invStd: f64(data.invStd), weight: p.weight }));
        } else if (c.norm === 'rmsnorm') {
          r = onReference(() => api.rmsNormBackward({ ...common, normalizedShape: c.normalizedShape, invRms: f64(data.invRms), weight: p.weight }));
        } else if (c.norm === 'groupnorm') {
          r = onReference(() => api.groupNormBackward({ ...common, groups: c.groups, mean: f64(data.mean), invStd: f64(data.invStd), gamma: p.gamma }, { layout: c.layout }));
        } else {
          r = onReference(() => api.instanceNormBackward({ ...common, mean: f64(data.mean), invStd: f64(data.invStd), gamma: p.gamma }, { layout: c.layout }));
        }
        const { dx, ...rest } = r;
        // dx is a difference of terms of size param·invStd·dy: judged at that scale.
        const scale = familyTermScale(c, data.dy, params.weight ?? params.gamma, data.invRms ?? data.invStd);
        cache.backward = { outputs: { dx, ...rest }, scales: { dx: scale } };
      }
      return cache[op];
    },
  };
  return data;
}

function rmsOfTerms(dy, gamma, invStd, c) {
  const { outer, channels, inner } = geometry(c);
  let sum = 0;
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (let ch = 0; ch < channels; ch++) {
      const k = gamma[ch] * invStd[ch];
      for (let j = 0; j < inner; j++, i++) sum += (dy[i] * k) ** 2;
    }
  }
  return Math.sqrt(sum / dy.length);
}

/**
 * The correctness gate: null when every output the contender produced agrees with the reference
 * within the dtype's tolerance, else the first mismatch as text.
 */
export function checkOutputs(compare, got, reference, dtype) {
  const tolerance = compare.TOLERANCE[dtype];
  const names = Object.keys(got).filter((name) => name in reference.outputs);
  if (names.length === 0) return 'produced none of the reference outputs';
  for (const name of names) {
    const m = compare.worstMismatch(got[name], reference.outputs[name], tolerance, reference.scales[name] ?? 0);
    if (m) return compare.formatMismatch(name, m);
  }
  return null;
}
