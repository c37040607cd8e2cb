/**
 * The bad-input matrix of the raw addon (test/native/validation.test.ts): a valid BatchNorm
 * descriptor per phase and dtype, passed as run's positional arguments, with one thing spoiled —
 * the scalars argument, one scalar, or one tensor (wrong type, too short, detached, absent when
 * required, given when unexpected, over memory another tensor of the call uses). Every case must
 * be refused (the C ABI's sn_prepare, native/node/operations.h) before anything is written. Only
 * the error's class and its `internal error` prefix are asserted: the façade words the errors
 * users see (test/reliability/bad-inputs.ts), the addon only guards memory.
 */
import { Flag, ROLES, SCALAR_NAMES, Scalar } from '../../lib/core/abi.js';
import { detachedArray, filled, lyingLength, posingObject } from '../reliability/bad-inputs.js';
import { bnProblem, bnStep, PHASES, runArgs, SLOT_NAMES, type FloatArray, type FloatCtor, type Shape } from './helpers.js';

export const SHAPE: Shape = { outer: 2, channels: 3, inner: 4 };

export interface BadCall {
  what: string;
  args: unknown[];
  /** a TypeError (a value of the wrong type), else a plain Error */
  type: boolean;
}

/** run's arguments for a valid call of `phase` (train: with running stats, relu). */
export function validCall(phase: (typeof PHASES)[number], T: FloatCtor): unknown[] {
  return runArgs(bnStep(phase, T, SHAPE, bnProblem(T, SHAPE, 7), { relu: true }));
}

const ROLE_IN_OPTIONAL = 2;
const ROLE_PAIR = 5;
const IS_OUTPUT = new Set([3, 4, 5]);

function scalarsSpoiled(valid: Float64Array): [string, unknown][] {
  const short = valid.slice(0, valid.length - 1);
  return [
    ['a Float32Array', Float32Array.from(valid)],
    ['one value short', short],
    ['detached', detachedArray(Float64Array, valid.length)],
    ['a plain Array', Array.from(valid)],
    ['a DataView', new DataView(valid.slice().buffer)],
    ['a Proxy', new Proxy(valid.slice(), {})],
    ['an object inheriting from it', Object.create(valid.slice()) as unknown],
    ['null', null],
    ['undefined', undefined],
    ['a number', 1],
  ];
}

/** Values each scalar is refused with (the counts, the flags; eps, factor, varScale where used). */
function scalarSpoils(name: string, phase: string): number[] {
  const counts = ['samples', 'outer', 'stats', 'inner', 'affineGroups', 'affineSize', 'affineRun'];
  if (name === 'phase') return [NaN, -1, 5, 1.5, Infinity];
  if (name === 'dtype') return [NaN, -1, 2, 0.5];
  if (counts.includes(name)) return [NaN, -1, -0.5, 1.5, Infinity, 1e300, 2 ** 53 + 2];
  const nextFlag = 2 * Math.max(...Object.values(Flag));
  if (name === 'flags') return [NaN, -1, 0.5, nextFlag, nextFlag + 1, 2 ** 40];
  if (name === 'eps' && (phase === 'train' || phase === 'infer')) return [0, -1e-5, NaN, Infinity, -Infinity];
  if (name === 'factor' && (phase === 'train' || phase === 'update')) return [-0.1, 1.1, NaN, Infinity];
  if (name === 'varScale' && (phase === 'train' || phase === 'update')) return [-1, NaN, Infinity, -Infinity];
  return [];
}

/** Geometries that do not fit the tensors or overflow the address space. */
function geometrySpoils(): [string, Partial<Record<keyof typeof Scalar, number>>][] {
  return [
    ['one more statistic (tensors too short)', { stats: SHAPE.channels + 1, affineGroups: SHAPE.channels + 1 }],
    ['no γ/β group with statistics', { affineGroups: 0 }],
    ['a γ/β size of 0 with statistics', { affineSize: 0 }],
    ['outer * stats past 2^62 bytes', { outer: 2 ** 40, stats: 2 ** 30, affineGroups: 2 ** 30 }],
    ['2^53 samples and statistics', { samples: 2 ** 53, stats: 2 ** 53 }],
    ['affineGroups * affineSize past 2^62 bytes', { affineGroups: 2 ** 40, affineSize: 2 ** 40 }],
  ];
}

/** The ways a tensor of `n` elements is refused: wrong types (TypeError), too few bytes. */
function tensorSpoils(T: FloatCtor, valid: FloatArray): [string, unknown, boolean][] {
  const n = valid.length;
  const other = T === Float32Array ? Float64Array : Float32Array;
  const bytes = n * T.BYTES_PER_ELEMENT;
  const list: [string, unknown, boolean][] = [
    ['a plain Array', Array.from(valid), true],
    ['an Int32Array', new Int32Array(n), true],
    ['a Uint8Array of the same bytes', new Uint8Array(bytes), true],
    ['a BigInt64Array', new BigInt64Array(n), true],
    ['a DataView', new DataView(new ArrayBuffer(bytes)), true],
    ['an ArrayBuffer', new ArrayBuffer(bytes), true],
    ['an object posing as a typed array', posingObject(T, n), true],
    ['an object inheriting from a typed array', Object.create(valid) as unknown, true],
    ['a Proxy of a typed array', new Proxy(valid, {}), true],
    ['a number', 3, true],
    ['a string', 'x', true],
    [`a ${other.name} (the other dtype)`, filled(other, n, 5), true],
  ];
  if (n > 0) {
    list.push(
      ['one element short', filled(T, n - 1, 6), false],
      ['a subarray one element short', filled(T, n + 2, 8).subarray(1, n), false],
      ['empty', new T(0), false],
      ['detached', detachedArray(T, n), false],
      ['a typed array whose length property claims the right length', lyingLength(T, n - 1, n), false],
    );
  }
  return list;
}

/** `a` and `b` as views of one SharedArrayBuffer's bytes through two SAB objects, `b` one element on. */
function overlapping(a: FloatArray, b: FloatArray): [FloatArray, FloatArray] {
  const T = a.constructor as FloatCtor;
  const sab = new SharedArrayBuffer((Math.max(a.length, b.length) + 2) * T.BYTES_PER_ELEMENT);
  const twin = structuredClone(sab);
  const a2 = new T(sab as unknown as ArrayBuffer, 0, a.length);
  const b2 = new T(twin as unknown as ArrayBuffer, T.BYTES_PER_ELEMENT, b.length);
  a2.set(a);
  b2.set(b);
  return [a2, b2];
}

/** Every spoiled call of one phase and dtype. */
export function badCalls(phase: (typeof PHASES)[number], T: FloatCtor): BadCall[] {
  const calls: BadCall[] = [];
  const roles = ROLES[PHASES.indexOf(phase)]!;
  const spoil = (what: string, type: boolean, change: (args: unknown[]) => void) => {
    const args = validCall(phase, T);
    change(args);
    calls.push({ what, args, type });
  };
  for (const [what, value] of scalarsSpoiled(validCall(phase, T)[0] as Float64Array)) {
    spoil(`scalars: ${what}`, true, (a) => (a[0] = value));
  }
  SCALAR_NAMES.forEach((name, i) => {
    for (const v of scalarSpoils(name, phase)) spoil(`scalar ${name} = ${v}`, false, (a) => ((a[0] as Float64Array)[i] = v));
  });
  for (const [what, values] of geometrySpoils()) {
    spoil(`geometry: ${what}`, false, (a) => {
      for (const [k, v] of Object.entries(values)) (a[0] as Float64Array)[Scalar[k as keyof typeof Scalar]] = v;
    });
  }
  SLOT_NAMES.forEach((name, slot) => {
    const at = 1 + slot;
    const role = roles[slot]!;
    const valid = validCall(phase, T)[at] as FloatArray | null;
    if (role === 0) {
      spoil(`tensor ${name}: given, unused by ${phase}`, false, (a) => (a[at] = filled(T, 24, 3)));
      return;
    }
    if (valid === null) return;
    for (const [what, value, type] of tensorSpoils(T, valid)) spoil(`tensor ${name}: ${what}`, type, (a) => (a[at] = value));
    if (role !== ROLE_IN_OPTIONAL) {
      for (const absent of [null, undefined]) spoil(`tensor ${name}: ${String(absent)}`, false, (a) => (a[at] = absent));
    }
    if (!IS_OUTPUT.has(role)) return;
    // over the memory of every other tensor of the call (the allowed exact aliases included,
    // shifted by one element)
    SLOT_NAMES.forEach((otherName, other) => {
      if (other === slot || validCall(phase, T)[1 + other] == null) return;
      spoil(`tensor ${name}: over ${otherName}'s memory, one element on`, false, (a) => {
        [a[1 + other], a[at]] = overlapping(a[1 + other] as FloatArray, a[at] as FloatArray);
      });
    });
  });
  if (roles.includes(ROLE_PAIR)) {
    spoil('half of a pair', false, (a) => (a[1 + roles.indexOf(ROLE_PAIR)] = null));
  }
  spoil(`${SLOT_NAMES.length + 3} arguments`, true, (a) => a.push(null, null));
  // The optional 15th argument, the mask of the slots given: a slot it leaves out is absent.
  spoil('a mask without the first required slot', false, (a) => {
    const required = roles.findIndex((r) => r === 1 || r === 3 || r === 4);
    a.push(((1 << SLOT_NAMES.length) - 1) & ~(1 << required));
  });
  spoil('a mask of no slot', false, (a) => a.push(0));
  return calls;
}
