// node --expose-gc resizable.mjs
// Async calls refuse an array over a resizable (non-shared) ArrayBuffer, by what V8 knows of the
// buffer, not by a property a caller can fake: an own `resizable: false` does not get one past,
// a `resizable` getter is never called, nothing is written, and shrinking the buffer right after
// the refused call cannot hurt. A growable SharedArrayBuffer (it only grows) is taken, and growing
// it while the call is in flight is harmless. Every tensor of every phase of common.mjs OPS,
// inline path and pool path.
import { OPS, SHAPES, arrayIndexes, bytesOf, check, gc, holdThreadPool, loadAddon, sameBits } from './common.mjs';

const b = loadAddon();
let cases = 0;
for (const op of Object.keys(OPS)) {
  const spec = OPS[op];
  for (const size of ['inline', 'pool']) {
    for (const k of arrayIndexes(op)) {
      const name = spec.arrays[k];
      for (const disguise of ['none', 'own-false', 'getter']) {
        const args = spec.args(Float32Array, SHAPES[size], 3);
        const src = args[k];
        const buffer = new ArrayBuffer(src.byteLength, { maxByteLength: src.byteLength * 2 });
        let getterRuns = 0;
        if (disguise === 'own-false') Object.defineProperty(buffer, 'resizable', { value: false });
        if (disguise === 'getter') {
          Object.defineProperty(buffer, 'resizable', { get() { getterRuns++; return false; } });
        }
        args[k] = new Float32Array(buffer);
        args[k].set(src);
        const before = args.map((a) => (ArrayBuffer.isView(a) ? bytesOf(a) : null));
        let error = null;
        try {
          await b.runAsync(...args);
        } catch (e) {
          error = e;
        }
        buffer.resize(0); // shrink right after: no kernel may be using it
        gc();
        check(error instanceof TypeError && /resizable/.test(error.message) && error.message.includes(`tensor ${name} `),
          `${op} runAsync ${size} ${name} (${disguise}): expected a TypeError naming tensor ${name} and 'resizable'; got ${error}`);
        check(getterRuns === 0, `${op} runAsync ${name}: the binding ran a 'resizable' getter`);
        args.forEach((a, i) => {
          if (i !== k && before[i]) check(sameBits(a, before[i]), `${op} runAsync ${size} ${name}: argument ${i + 1} was written`);
        });
        // the sync call takes it (no JavaScript runs while it does)
        args[k] = new Float32Array(new ArrayBuffer(src.byteLength, { maxByteLength: src.byteLength * 2 }));
        args[k].set(src);
        b.run(...args);
        cases++;
      }
    }
    // every array over a growable SharedArrayBuffer, grown while the call is in flight
    const expected = spec.args(Float32Array, SHAPES[size], 5);
    const expectedResult = b.run(...expected);
    const args = spec.args(Float32Array, SHAPES[size], 5).map((a, i) => {
      if (i === 0 || !a) return a; // the scalars stay as they are
      const g = new Float32Array(new SharedArrayBuffer(a.byteLength, { maxByteLength: a.byteLength * 4 }), 0, a.length);
      g.set(a);
      return g;
    });
    const release = size === 'pool' ? await holdThreadPool() : null;
    const pending = b.runAsync(...args);
    for (const a of args.slice(1)) if (a) a.buffer.grow(a.byteLength * 3);
    await release?.();
    check((await pending) === expectedResult, `${op} runAsync over growable SABs: wrong result`);
    for (const k of arrayIndexes(op)) {
      check(sameBits(args[k], expected[k]), `${op} runAsync over growable SABs: '${spec.arrays[k]}' differs from run's`);
    }
    cases++;
  }
}
console.log(`resizable: ${cases} cases held`);
