// node --expose-gc nojs.mjs
// The binding never runs JavaScript of the caller's: no getter, setter or Proxy trap runs inside
// any of its functions, sync or async (inline and pool path), nor while it loads. Accessors are
// put on every prototype a property read could reach (%TypedArray%.prototype's buffer, length,
// byteOffset, byteLength; ArrayBuffer's and SharedArrayBuffer's resizable, byteLength,
// maxByteLength, growable; Object.prototype's setters for the names the addon defines), arrays
// are passed with own accessors of those names, and Proxies are
// passed where arrays go: every call must work (or, for the Proxies, fail with a TypeError) with
// not one of them run.
import { Worker } from 'node:worker_threads';
import { OPS, SHAPES, addonPath, arrayIndexes, check, holdThreadPool, loadAddon } from './common.mjs';

let runs = 0;
const trap = (target, name) => {
  const original = Object.getOwnPropertyDescriptor(target, name);
  Object.defineProperty(target, name, {
    configurable: true,
    get() { runs++; return original?.get ? original.get.call(this) : original?.value; },
    set(v) { runs++; Object.defineProperty(this, name, { value: v, writable: true, configurable: true, enumerable: true }); },
  });
};
const TypedArray = Object.getPrototypeOf(Float32Array.prototype);
const names = ['run', 'runAsync', 'setThreads', 'getThreads', 'info', 'setScratchLimit', 'copyBytes', 'readFloats',
  'simd', 'threads', 'maxThreads', 'napiVersion', 'build'];

// Loading: a worker whose Object.prototype has setters for every name the addon defines.
{
  const w = new Worker(`
    const { parentPort } = require('node:worker_threads');
    let runs = 0;
    for (const name of ${JSON.stringify(names)}) {
      Object.defineProperty(Object.prototype, name, { configurable: true, set(v) { runs++; }, get() { runs++; } });
    }
    const b = require(${JSON.stringify(addonPath)});
    const info = b.info();
    parentPort.postMessage({ runs, hasRun: Object.getOwnPropertyNames(b).includes('run'), build: Object.getOwnPropertyDescriptor(info, 'build')?.value });`,
  { eval: true });
  const m = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  check(m.runs === 0 && m.hasRun && typeof m.build === 'string', `loading ran ${m.runs} setters/getters: ${JSON.stringify(m)}`);
}

const b = loadAddon();
for (const name of ['buffer', 'length', 'byteOffset', 'byteLength']) trap(TypedArray, name);
for (const P of [ArrayBuffer.prototype, SharedArrayBuffer.prototype]) {
  for (const name of ['resizable', 'growable', 'byteLength', 'maxByteLength']) if (name in P) trap(P, name);
}
let calls = 0;
for (const op of Object.keys(OPS)) {
  for (const size of ['inline', 'pool']) {
    const args = OPS[op].args(Float32Array, SHAPES[size], 1);
    for (const k of [0, ...arrayIndexes(op)]) { // the scalars too
      for (const name of ['buffer', 'length', 'byteOffset', 'byteLength']) trap(args[k], name); // own accessors too
    }
    // (only the calls are inside the counted windows: Node's own code reads Buffers' lengths)
    let before = runs;
    b.run(...args);
    check(runs === before, `${op} ${size}: ${runs - before} accessors ran inside run`);
    const release = size === 'pool' ? await holdThreadPool() : null;
    before = runs;
    const pending = b.runAsync(...args);
    check(runs === before, `${op} runAsync ${size}: ${runs - before} accessors ran inside the call`);
    await release?.();
    await pending;
    calls += 2;
    // a Proxy where an array goes: a TypeError, no trap run
    for (const k of [0, ...arrayIndexes(op)]) { // the scalars too
      let trapped = 0;
      const handler = new Proxy({}, { get: () => () => { trapped++; return undefined; } });
      const bad = args.slice();
      bad[k] = new Proxy(args[k], handler);
      let error = null;
      try { b.run(...bad); } catch (e) { error = e; }
      check(error instanceof TypeError && trapped === 0, `${op}: a Proxy for '${OPS[op].arrays[k] ?? 'scalars'}' gave ${error}, ${trapped} traps`);
      const rejected = await b.runAsync(...bad).then(() => null, (e) => e);
      check(rejected instanceof TypeError && trapped === 0, `${op} runAsync: a Proxy for '${OPS[op].arrays[k] ?? 'scalars'}' gave ${rejected}, ${trapped} traps`);
      calls += 2;
    }
  }
}
const before = runs;
const info = b.info();
b.getThreads();
check(runs === before, `${runs - before} accessors ran in info() or getThreads()`);
check(typeof info.simd === 'string', 'info() lost a field');
console.log(`nojs: ${calls} calls (sync, async inline and pool, Proxies) and loading ran none of the caller's accessors or traps`);
