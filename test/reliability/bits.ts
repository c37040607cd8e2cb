/** Deterministic test data and bit-for-bit comparisons of typed arrays, shared by the suites. */

export type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** The bytes of a typed array (a copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** True when the two views hold the same bytes. */
export function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
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
