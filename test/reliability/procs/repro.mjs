// Issue 12's getter/Proxy repros, in a child process (node --expose-gc repro.mjs <backend>), so
// that a crash or a corrupted heap is a failed test: prints one JSON line per repro
// { name, ok, detail } and then { done: true }. Uses dist/ (test/reliability/dist.ts builds it).
import * as simdnorm from '../../../dist/index.js';

const backend = process.argv[2];
simdnorm.useBackend(backend);
const N = 4, C = 8, S = 64, E = N * C * S, shape = [N, C, S];
const f32 = (n, seed) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 3.1 + i * 0.37) + 1.25);
const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const detach = (a) => structuredClone(a.buffer, { transfer: [a.buffer] });
const results = [];
async function repro(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, ok: detail === true, detail: detail === true ? undefined : String(detail) });
  } catch (e) {
    results.push({ name, ok: false, detail: `threw ${e?.name}: ${e?.message}` });
  }
  globalThis.gc?.();
}
async function expectTyped(fn) {
  try {
    await fn();
  } catch (e) {
    return e instanceof TypeError || e instanceof RangeError ? e : `threw ${e}`;
  }
  return 'did not throw';
}
const clean = () => simdnorm.withBackend(backend, () => simdnorm.batchNormTrain(
  { x: f32(E, 1), shape, gamma: f32(C, 2), beta: f32(C, 3), runningMean: f32(C, 4), runningVar: f32(C, 5), numBatchesTracked: 2 },
  { momentum: 0.8 },
));
const want = clean();

// 3. js: a late numBatchesTracked getter detaches runningVar (was: runningMean updated, runningVar lost, NaN)
await repro('numBatchesTracked getter detaches runningVar', async () => {
  const runningMean = f32(C, 4), runningVar = f32(C, 5), before = runningMean.slice();
  const e = await expectTyped(() => simdnorm.batchNormTrain({
    x: f32(E, 1), shape, runningMean, runningVar,
    get numBatchesTracked() { detach(runningVar); return 2; },
  }));
  if (typeof e === 'string') return e;
  return same(runningMean, before) || 'runningMean was written';
});

// 3. wasm: a late-detached out.y (was: 0-byte scratch slot over the statistics, runningVar negative)
await repro('out.invStd getter detaches out.y', async () => {
  const y = new Float32Array(E), runningMean = f32(C, 4), runningVar = f32(C, 5);
  const rm = runningMean.slice(), rv = runningVar.slice();
  const out = { y, mean: new Float32Array(C), get invStd() { detach(y); return new Float32Array(C); } };
  const e = await expectTyped(() => simdnorm.batchNormTrain({ x: f32(E, 1), shape, runningMean, runningVar }, {}, out));
  if (typeof e === 'string') return e;
  return (same(runningMean, rm) && same(runningVar, rv)) || 'running stats were written';
});

// 3. wasm: an own byteLength that lies (was: scratch sized for 32 bytes, 256 KiB copied past it,
// a wasmMemory.alloc block overwritten, every later call 'memory access out of bounds')
await repro('own byteLength / length lie; alloc block intact; later calls work', async () => {
  let block = null;
  if (backend === 'wasm') {
    block = simdnorm.wasmMemory.alloc(Float32Array, 4096);
    block.array.fill(3.5);
  }
  const x = f32(E, 1);
  Object.defineProperty(x, 'byteLength', { value: 32 });
  Object.defineProperty(x, 'length', { value: 8 });
  const r = simdnorm.batchNormTrain({ x, shape, gamma: f32(C, 2), beta: f32(C, 3), runningMean: f32(C, 4), runningVar: f32(C, 5), numBatchesTracked: 2 }, { momentum: 0.8 });
  if (!same(r.y, want.y) || !same(r.mean, want.mean)) return 'wrong values';
  if (block && !block.array.every((v) => v === 3.5)) return 'a wasmMemory.alloc block was overwritten';
  block?.free();
  for (let i = 0; i < 50; i++) {
    const again = clean();
    if (!same(again.y, want.y)) return `later call ${i} differs`;
  }
  return true;
});

// 3. a buffer getter that lies after the overlap check (was: a partially overlapping out.y got past it)
await repro('own buffer getter on a partially overlapping out.y', async () => {
  const host = f32(E + 1, 1);
  const x = host.subarray(0, E);
  const y = host.subarray(1, E + 1);
  Object.defineProperty(y, 'buffer', { get: () => new ArrayBuffer(16) });
  const before = host.slice();
  const e = await expectTyped(() => simdnorm.batchNormTrain({ x, shape }, {}, { y }));
  if (typeof e === 'string') return e;
  return (/out\.y must not overlap x/.test(e.message) && same(host, before)) || `${e.message}, written: ${!same(host, before)}`;
});

// 3. wasm copied outputs back with the caller's own out.y.set(...): a subclass whose set calls
// simdnorm again (was: mean/invStd/running stats never copied back, updated: true)
await repro('a subclass of Float32Array whose set calls simdnorm again', async () => {
  let calls = 0;
  class Sneaky extends Float32Array {
    set(...args) { calls++; simdnorm.batchNormTrain({ x: f32(40, 9), shape: [4, 2, 5] }); return super.set(...args); }
  }
  const out = { y: new Sneaky(E), mean: new Sneaky(C), invStd: new Sneaky(C) };
  const runningMean = f32(C, 4), runningVar = f32(C, 5);
  const r = simdnorm.batchNormTrain({ x: f32(E, 1), shape, gamma: f32(C, 2), beta: f32(C, 3), runningMean, runningVar, numBatchesTracked: 2 }, { momentum: 0.8 }, out);
  if (calls !== 0) return `the caller's set ran ${calls} times`;
  const w = clean();
  return (r.updated && same(out.y, w.y) && same(out.mean, w.mean) && same(out.invStd, w.invStd)) || 'wrong values';
});

await repro('a no-op own set on out.y', async () => {
  const y = new Float32Array(E);
  y.set = () => {};
  const r = simdnorm.batchNormTrain({ x: f32(E, 1), shape, gamma: f32(C, 2), beta: f32(C, 3), runningMean: f32(C, 4), runningVar: f32(C, 5), numBatchesTracked: 2 }, { momentum: 0.8 }, { y });
  return same(r.y, want.y) || 'y not written';
});

// 4. two SharedArrayBuffer objects over the same bytes
await repro('runningMean and runningVar over one memory through structuredClone(sab)', async () => {
  const sab = new SharedArrayBuffer(C * 4);
  const runningMean = new Float32Array(sab);
  runningMean.set(f32(C, 4));
  const runningVar = new Float32Array(structuredClone(sab));
  const before = runningMean.slice();
  const e = await expectTyped(() => simdnorm.batchNormTrain({ x: f32(E, 1), shape, runningMean, runningVar }));
  if (typeof e === 'string') return e;
  return same(runningMean, before) || 'written';
});

// 5. loadState wrote part of the state before it failed, and took strings
await repro('loadState: all or nothing', async () => {
  const bn = new simdnorm.BatchNorm(3);
  const e1 = await expectTyped(() => bn.loadState({ weight: [5, 6, 7], bias: [0, 0, 0], running_mean: [0, 0, 0], running_var: [1, 2] }));
  const e2 = await expectTyped(() => bn.loadState({ weight: ['a', 'b', 'c'], bias: [0, 0, 0], running_mean: [0, 0, 0], running_var: [1, 1, 1] }));
  if (typeof e1 === 'string' || typeof e2 === 'string') return `${e1} / ${e2}`;
  return (Array.from(bn.gamma).every((v) => v === 1) && e2 instanceof TypeError && /state\.weight/.test(e2.message)) || 'weight changed';
});

// 1. the async refusal of resizable buffers is not a property get any more
await repro("async: an own 'resizable: false', and a 'resizable' getter that transfers out.y and gc()s", async () => {
  const rab = new ArrayBuffer(E * 4, { maxByteLength: E * 8 });
  const x = new Float32Array(rab);
  x.set(f32(E, 1));
  Object.defineProperty(rab, 'resizable', { value: false });
  const e1 = await expectTyped(() => simdnorm.batchNormTrainAsync({ x, shape }));
  let y = new Float32Array(E);
  const rab2 = new ArrayBuffer(E * 4, { maxByteLength: E * 8 });
  const x2 = new Float32Array(rab2);
  Object.defineProperty(rab2, 'resizable', { get() { detach(y); y = null; globalThis.gc?.(); return false; } });
  const e2 = await expectTyped(() => simdnorm.batchNormTrainAsync({ x: x2, shape }, {}, { y }));
  if (typeof e1 === 'string' || typeof e2 === 'string') return `${e1} / ${e2}`;
  return (y !== null) || 'the getter ran';
});

// then many more calls: the backend and the heap are fine
await repro('200 calls after the repros give the clean result', async () => {
  for (let i = 0; i < 200; i++) {
    const r = clean();
    if (!same(r.y, want.y) || !same(r.invStd, want.invStd)) return `call ${i} differs`;
    const a = await simdnorm.batchNormTrainAsync({ x: f32(E, 1), shape, gamma: f32(C, 2), beta: f32(C, 3), runningMean: f32(C, 4), runningVar: f32(C, 5), numBatchesTracked: 2 }, { momentum: 0.8 });
    if (!same(a.y, want.y)) return `async call ${i} differs`;
  }
  return true;
});

for (const r of results) console.log(JSON.stringify(r));
console.log(JSON.stringify({ done: true, backend: simdnorm.currentBackend() }));
