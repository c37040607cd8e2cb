// The normalization ABI, stated once. `node native/abi/generate.mjs` turns this table into
//   native/kernels/abi_table.h  the C enums, the sn_norm descriptor and the per-phase slot roles
//                               (the kernels, the N-API addon, the wasm exports and the tests' C++),
//   lib/core/abi.ts             the same for the façade and the backends,
//   wasm/exports.cmake          the wasm module's export list;
// test/package/abi.test.ts fails when a generated file is stale.
//
// A call is a descriptor: the scalars below (one float64 each on the wire) and a table of tensor
// pointers, one per slot. Every op family is a builder of descriptors (lib/ops/*.ts); the kernels
// have one entry per phase over the descriptor (native/kernels/norm.h).

/** Bumped when anything below changes incompatibly (the wasm loader checks it). */
export const abiVersion = 5;

/** What a call computes. */
export const phases = [
  ['moments', 'per-statistic mean and biased variance of x'],
  ['train', 'training forward: batch statistics, y, and the running update when running stats are given'],
  ['infer', 'inference forward with the running statistics'],
  ['backward', 'dx, dgamma, dbeta from dy and the saved statistics'],
  ['update', 'the running-statistics update alone, from a batch mean and biased variance'],
];

export const dtypes = [
  ['f32', 4],
  ['f64', 8],
];

/**
 * The geometry: x is x[samples][outer][stats][inner] (row-major). Statistic (n, s) reduces over
 * outer and inner and sits at index n * stats + s. γ/β of element (n, o, s, j) sit at
 * (s mod affineGroups) * affineSize + (j / affineRun) mod affineSize.
 */
export const scalars = [
  ['phase', 'enum', 'one of phases'],
  ['dtype', 'enum', 'one of dtypes'],
  ['samples', 'count', 'independent problems, each with its own statistics'],
  ['outer', 'count', 'reduced, outside the statistics index'],
  ['stats', 'count', 'statistics per sample'],
  ['inner', 'count', 'reduced, inside the statistics index'],
  ['affineGroups', 'count', 'γ/β index: statistic s uses group s mod affineGroups'],
  ['affineSize', 'count', 'γ/β entries per group'],
  ['affineRun', 'count', 'inner elements sharing one γ/β entry'],
  ['flags', 'flags', 'a sum of flags'],
  ['eps', 'real', 'added to the variance; finite, > 0'],
  ['factor', 'real', 'running update: weight of the new batch, in [0, 1]'],
  ['varScale', 'real', 'running update: M/(M-1) for the unbiased running variance, else 1; >= 0'],
  ['sumsCount', 'real', 'backward with givenSums: values per statistic the given sums came from (M of the whole batch); a count >= 1'],
  ['rmax', 'real', 'train with renorm: r is clipped to [1/rmax, rmax]; >= 1 (Infinity: no clip)'],
  ['dmax', 'real', 'train with renorm: d is clipped to [-dmax, dmax]; >= 0 (Infinity: no clip)'],
];

export const flags = [
  ['relu', 1, 'y = max(y, 0) (forward); dy masked by y > 0 (backward, y given)'],
  ['training', 2, 'backward through batch statistics (else through fixed statistics)'],
  ['skipNonFinite', 4, 'a batch with a non-finite statistic leaves the running stats untouched'],
  ['rms', 8, 'statistics about zero (RMSNorm): mean written as 0, variance = mean of squares; backward without the mean term'],
  ['givenSums', 16, 'backward (training, γ/β one per statistic, one sample, no rms): dgamma/dbeta are inputs holding Σg·x̂ and Σg over a batch of `sumsCount` values per statistic (e.g. all workers\' shards); only dx is computed'],
  ['sumsOnly', 32, 'backward (γ/β one per statistic, one sample, no rms): only dgamma = Σg·x̂ and dbeta = Σg are computed; dx is not used'],
  ['renorm', 64, 'train (γ/β one per statistic, one sample, no rms): Batch Renormalization, README "BatchNorm variants": per statistic r = clip(σ_B/σ, 1/rmax, rmax), d = clip((μ_B − runningMean)/σ, −dmax, dmax) with σ from the running statistics before the update, written to r and d, and y normalised with γ·r for γ and β + γ·d for β (each rounded to the dtype)'],
  ['residual', 128, 'train, infer, backward (γ/β one per statistic, no rms, not givenSums/sumsOnly): BatchNorm + residual add (+ relu), README "BatchNorm variants": forward y = act(BN(x) + residual), the normalised value rounded to the dtype, then the add in the dtype; backward also writes dz = dy (masked by y > 0 with relu) in the dx pass'],
];

/** Tensor lengths, in elements, by the geometry. */
export const sizes = [
  ['elements', 'samples * outer * stats * inner'],
  ['statistics', 'samples * stats'],
  ['channels', 'stats'],
  ['affine', 'affineGroups * affineSize'],
];

/** The tensor table: every slot's name and length. */
export const slots = [
  ['x', 'elements'],
  ['y', 'elements'],
  ['dy', 'elements'],
  ['dx', 'elements'],
  ['gamma', 'affine'],
  ['beta', 'affine'],
  ['mean', 'statistics'],
  ['invStd', 'statistics'],
  ['variance', 'statistics'],
  ['runningMean', 'channels'],
  ['runningVar', 'channels'],
  ['dgamma', 'affine'],
  ['dbeta', 'affine'],
  ['r', 'channels'],
  ['d', 'channels'],
  ['residual', 'elements'],
  ['dz', 'elements'],
];

/**
 * What each phase does with each slot: in (read, required), in? (read when not null), out
 * (written, required), inout (read and written, required), pair? (read and written, optional:
 * every pair? slot of a phase is given or none is). Slots not named must be null.
 */
export const roles = {
  moments: { x: 'in', mean: 'out', variance: 'out' },
  train: {
    x: 'in', gamma: 'in?', beta: 'in?', y: 'out', mean: 'out', invStd: 'out',
    runningMean: 'pair?', runningVar: 'pair?',
  },
  infer: { x: 'in', runningMean: 'in', runningVar: 'in', gamma: 'in?', beta: 'in?', y: 'out' },
  backward: {
    dy: 'in', x: 'in', mean: 'in', invStd: 'in', gamma: 'in?', y: 'in?',
    dx: 'out', dgamma: 'out', dbeta: 'out',
  },
  update: { mean: 'in', variance: 'in', runningMean: 'inout', runningVar: 'inout' },
};

/**
 * Roles that a flag changes: under flag f, phase p's slots take these roles instead of those of
 * `roles` (null: unused); with several such flags set, each applies in table order.
 */
export const flagRoles = {
  givenSums: { backward: { dgamma: 'in', dbeta: 'in' } },
  sumsOnly: { backward: { dx: null } },
  renorm: { train: { runningMean: 'inout', runningVar: 'inout', r: 'out', d: 'out' } },
  residual: { train: { residual: 'in' }, infer: { residual: 'in' }, backward: { dz: 'out' } },
};

/**
 * The overlaps allowed between an output and another tensor of a call: exactly the same memory.
 * The first pair of a phase is the one the wasm marshaller lets share a copy.
 */
export const aliases = {
  train: [['y', 'x'], ['y', 'residual']],
  infer: [['y', 'x'], ['y', 'residual']],
  backward: [['dx', 'dy'], ['dz', 'dy']],
};

/** Errors: a call returns >= 0, or -(code << 8 | argument), argument = 1 + a scalar's or slot's index (0: none). */
export const errors = [
  ['badScalar', 1, 'a scalar is out of its range (argument: the scalar)'],
  ['tooLarge', 2, 'the geometry overflows the address space (argument: the scalar)'],
  ['missing', 3, 'a required tensor is null, or one of a pair given without the other (argument: the null one)'],
  ['unexpected', 4, 'a tensor the phase does not use is given (argument: the slot)'],
  ['tooShort', 5, 'a tensor holds fewer bytes than its length needs (argument: the slot)'],
  ['misaligned', 6, 'a tensor is not aligned to its element size (argument: the slot)'],
  ['overlap', 7, 'an output overlaps another tensor but for an allowed alias (argument: the slot)'],
  ['wrongType', 8, 'a tensor is not of the dtype (argument: the slot; the N-API addon only)'],
  ['unsupported', 9, 'no kernel for this descriptor yet'],
  ['noMemory', 10, 'scratch memory could not be allocated'],
];

/** The wasm module's exports (C names without the leading underscore). */
export const wasmExports = [
  'sn_abi_version', 'sn_simd_level', 'sn_alloc', 'sn_free', 'sn_in_block', 'sn_set_scratch_limit', 'sn_run',
];
