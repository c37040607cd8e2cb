/**
 * Shared by the test/native suites: the raw addon (or why it is missing), a describe that skips
 * loudly on a developer's machine when the addon is not built and fails in CI, BatchNorm
 * descriptors (lib/core/descriptor.ts) for the addon's run/runAsync, and comparing outputs bit
 * for bit.
 */
import { describe, it } from 'vitest';
import { loadNativeBinding, type LoadedBinding, type NativeBinding } from '../../lib/backends/native.js';
import { Phase, SLOT_NAMES, Slot, type SlotName } from '../../lib/core/abi.js';
import { makeNorm, type Norm, type NormScalars, type PhaseCode } from '../../lib/core/descriptor.js';
import { randomArray, type FloatCtor } from '../reliability/bits.js';

export { bytesOf, randomArray, sameBits, type FloatCtor } from '../reliability/bits.js';

export type FloatArray = Float32Array | Float64Array;
export const FLOAT_TYPES: readonly FloatCtor[] = [Float32Array, Float64Array];

function tryLoad(): { loaded?: LoadedBinding; reason?: string } {
  try {
    return { loaded: loadNativeBinding() };
  } catch (e) {
    return { reason: e instanceof Error ? e.message : String(e) };
  }
}

const attempt = tryLoad();
export const loaded: LoadedBinding | undefined = attempt.loaded;

/** The addon; only use inside describeNative. */
export function binding(): NativeBinding {
  if (!loaded) throw new Error(`native addon not loaded: ${attempt.reason}`);
  return loaded.binding;
}

/** The raw addon with every function taking anything, for the garbage tests. */
export function untypedBinding(): Record<string, (...args: unknown[]) => unknown> {
  return binding() as unknown as Record<string, (...args: unknown[]) => unknown>;
}

/** describe() when the addon loads; else a loud skip, or a failing test when CI is set. */
export function describeNative(name: string, body: () => void): void {
  if (loaded) {
    describe(name, body);
    return;
  }
  describe(name, () => {
    if (process.env.CI) {
      it('the native addon loads (CI never skips)', () => {
        throw new Error(`the native addon is missing in CI: ${attempt.reason}`);
      });
    } else {
      console.warn(`\n*** SKIPPING ${name}: the native addon is not built (npm run build).\n${attempt.reason}\n`);
      it.skip(`native addon not built: ${attempt.reason}`, () => {});
    }
  });
}



/** run's positional arguments for a descriptor: the scalars, then one tensor per slot. */
export function runArgs(n: Norm): Parameters<NativeBinding['run']> {
  const t = n.tensors;
  return [n.scalars, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[16]];
}

export const run = (n: Norm): number => binding().run(...runArgs(n));
export const runAsync = (n: Norm): Promise<number> => binding().runAsync(...runArgs(n));

/** BatchNorm's view x[outer][channels][inner]. */
export interface Shape {
  outer: number;
  channels: number;
  inner: number;
}

export type Tensors = Partial<Record<SlotName, FloatArray | null>>;

/** A BatchNorm descriptor (samples 1, stats = channels, γ/β by channel) over the given tensors. */
export function bnNorm(phase: PhaseCode, T: FloatCtor, s: Shape, tensors: Tensors, scalars: NormScalars = {}): Norm {
  const n = makeNorm(phase, new T(0), { samples: 1, outer: s.outer, stats: s.channels, inner: s.inner },
    { groups: s.channels, size: 1, run: Math.max(1, s.inner) }, scalars);
  for (const [name, t] of Object.entries(tensors)) n.tensors[Slot[name as SlotName]] = t ?? null;
  return n;
}

/** Every tensor a BatchNorm training step reads and writes, from a seed. */
export function bnProblem(T: FloatCtor, s: Shape, seed: number) {
  const n = s.outer * s.channels * s.inner;
  const c = s.channels;
  return {
    x: randomArray(T, n, seed, 2, 0.5),
    dy: randomArray(T, n, seed + 1),
    gamma: randomArray(T, c, seed + 2, 0.5, 1),
    beta: randomArray(T, c, seed + 3),
    runningMean: randomArray(T, c, seed + 4),
    runningVar: randomArray(T, c, seed + 5, 0.5, 1),
    y: new T(n),
    mean: new T(c),
    invStd: new T(c),
    variance: new T(c),
    dx: new T(n),
    dgamma: new T(c),
    dbeta: new T(c),
  };
}
export type Problem = ReturnType<typeof bnProblem>;

export interface StepOptions {
  relu?: boolean;
  /** train: with the running stats (default true); backward: through batch statistics (default true) */
  running?: boolean;
  training?: boolean;
}

/** The descriptor of one phase over a problem's tensors, as BatchNorm's façade would build it. */
export function bnStep(phase: keyof typeof Phase, T: FloatCtor, s: Shape, p: Problem, o: StepOptions = {}): Norm {
  const m = s.outer * s.inner;
  const relu = o.relu ?? false;
  const running = { factor: 0.1, varScale: m / (m - 1), skipNonFinite: true };
  switch (phase) {
    case 'moments':
      return bnNorm(Phase.moments, T, s, { x: p.x, mean: p.mean, variance: p.variance });
    case 'train':
      return bnNorm(Phase.train, T, s, {
        x: p.x, gamma: p.gamma, beta: p.beta, y: p.y, mean: p.mean, invStd: p.invStd,
        ...(o.running ?? true ? { runningMean: p.runningMean, runningVar: p.runningVar } : {}),
      }, { eps: 1e-5, relu, ...running });
    case 'infer':
      return bnNorm(Phase.infer, T, s, {
        x: p.x, runningMean: p.runningMean, runningVar: p.runningVar, gamma: p.gamma, beta: p.beta, y: p.y,
      }, { eps: 1e-5, relu });
    case 'backward':
      return bnNorm(Phase.backward, T, s, {
        dy: p.dy, x: p.x, mean: p.mean, invStd: p.invStd, gamma: p.gamma, y: relu ? p.y : null,
        dx: p.dx, dgamma: p.dgamma, dbeta: p.dbeta,
      }, { relu, training: o.training ?? true });
    case 'update':
      return bnNorm(Phase.update, T, s, {
        mean: p.mean, variance: p.variance, runningMean: p.runningMean, runningVar: p.runningVar,
      }, running);
  }
}

export const PHASES = ['moments', 'train', 'infer', 'backward', 'update'] as const;
export { Phase, Slot, SLOT_NAMES };
