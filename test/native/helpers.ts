/**
 * Shared by the test/native suites: the raw addon (or why it is missing), a describe that skips
 * loudly on a developer's machine when the addon is not built and fails in CI, and small
 * helpers for building arguments and comparing outputs bit for bit.
 */
import { describe, it } from 'vitest';
import { loadNativeBinding, type LoadedBinding, type NativeBinding } from '../../lib/backends/native.js';
import type { FloatCtor } from '../reliability/bits.js';

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
      console.warn(`\n*** SKIPPING ${name}: the native addon is not built (npm run build:native).\n${attempt.reason}\n`);
      it.skip(`native addon not built: ${attempt.reason}`, () => {});
    }
  });
}


