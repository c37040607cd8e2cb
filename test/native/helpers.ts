/**
 * Shared by the test/native suites: the raw addon (or why it is missing), a describe that skips
 * loudly on a developer's machine when the addon is not built and fails in CI, and small
 * helpers for building arguments and comparing outputs bit for bit.
 */
import { describe, it } from 'vitest';
import { loadNativeBinding, type LoadedBinding, type NativeBinding } from '../../lib/backends/native.js';

export type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;
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
      console.warn(`\n*** SKIPPING ${name}: the native addon is not built (npm run build:native).\n${attempt.reason}\n`);
      it.skip(`native addon not built: ${attempt.reason}`, () => {});
    }
  });
}

/** Deterministic pseudo-random values in [-scale, scale) + offset (xorshift32). */
export function randomArray<C extends FloatCtor>(Ctor: C, n: number, seed = 1, scale = 1, offset = 0): InstanceType<C> {
  const a = new Ctor(n) as InstanceType<C>;
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = offset + scale * (s / 2147483648 - 1);
  }
  return a;
}

export { bytesOf, sameBits } from '../bits.js';
