// node --expose-gc transfer.mjs <op> <inline|pool> [float32|float64]
// Every tensor of one phase's runAsync call (common.mjs OPS), in turn, loses its memory while the call is in flight:
//   clone-drop  structuredClone(buffer, { transfer }) with the clone dropped at once, then gc()
//   clone-keep  the same, the clone kept: after the call it must hold what the call wrote there
//   port        posted with transfer through a MessageChannel whose ports are closed at once (the
//               memory is released with the dropped message, no GC needed)
// On the pool path libuv's threads are held (holdThreadPool) until all that is done, so the kernel
// starts only then: without pins it would run on freed memory. Then "victim" arrays are allocated (filled with a sentinel) to take any freed memory. The
// call must settle with the sync call's result; every array still held, the kept clone and every
// victim must hold exactly what they should. Prints one line per case.
import { OPS, SHAPES, arrayIndexes, check, gc, loadAddon, holdThreadPool, sameBits } from './common.mjs';

const [op, size, typeName = 'float32'] = process.argv.slice(2);
const b = loadAddon();
const T = typeName === 'float64' ? Float64Array : Float32Array;
const s = SHAPES[size];
const spec = OPS[op];
check(spec && s, `usage: transfer.mjs <train|infer|backward> <inline|pool> [float32|float64]`);
const SENTINEL = 1234.5;

let cases = 0;
for (const method of ['clone-drop', 'clone-keep', 'port']) {
  for (const k of arrayIndexes(op)) {
    const name = spec.arrays[k];
    const expected = spec.args(T, s, 7);
    const expectedResult = b.run(...expected);
    let args = spec.args(T, s, 7);
    const release = size === 'pool' ? await holdThreadPool() : null;
    const pending = b.runAsync(...args);
    let kept = null;
    {
      const buffer = args[k].buffer;
      if (method === 'port') {
        const { port1, port2 } = new MessageChannel();
        port1.postMessage(buffer, [buffer]);
        port1.close();
        port2.close();
      } else {
        const clone = structuredClone(buffer, { transfer: [buffer] });
        if (method === 'clone-keep') kept = clone;
      }
    }
    check(args[k].length === 0, `${op} ${name}: the buffer was not detached`);
    const held = args.slice();
    args = null;
    held[k] = null;
    gc();
    await new Promise((r) => setTimeout(r, 5)); // the port's message is dropped; V8 sweeps
    gc();
    const victims = [];
    const victimLength = Math.max(...arrayIndexes(op).map((j) => expected[j].length));
    for (let i = 0; i < 8; i++) victims.push(new T(victimLength).fill(SENTINEL));
    await release?.();
    const result = await pending;
    check(result === expectedResult, `${op} ${name} ${method}: resolved ${result}, run returned ${expectedResult}`);
    for (const j of arrayIndexes(op)) {
      if (j === k) continue;
      check(sameBits(held[j], expected[j]), `${op} ${name} ${method}: '${spec.arrays[j]}' differs from the sync call's`);
    }
    if (kept) {
      check(sameBits(new T(kept), expected[k]), `${op} ${name} ${method}: the transferred memory does not hold '${name}' as the sync call left it`);
    }
    for (const v of victims) {
      for (let i = 0; i < v.length; i++) {
        if (v[i] !== SENTINEL) check(false, `${op} ${name} ${method}: a victim array was written at ${i}: ${v[i]}`);
      }
    }
    cases++;
  }
}
console.log(`transfer ${op} ${size} ${typeName}: ${cases} cases (every array x clone-drop, clone-keep, port) held`);
