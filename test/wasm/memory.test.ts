/**
 * Module memory: the zero-copy path (arrays allocated in module memory are used in place),
 * growth (detached views, fresh ones from WasmArray.array), a flat footprint over many calls,
 * and the C ABI's own validation (sn_run called with garbage scalars and pointer tables returns
 * error codes and writes nothing). The backend is called through Backend.run with BatchNorm
 * descriptors (helpers.ts's ops).
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FloatArray } from '../../lib/backend.js';
import { type WasmBackend, type WasmVariant, wasmImports } from '../../lib/backends/wasm.js';
import { DType, Phase, ROLES, SCALAR_COUNT, SLOT_COUNT, Scalar, Slot } from '../../lib/core/abi.js';
import { loadWasmBackendSync, wasmPath } from '../../lib/backends/wasm-node.js';
import * as reference from '../../lib/reference.js';
import { batchNormNorm, ops, random, randomArray, scaledError } from './helpers.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const variants: WasmVariant[] = ['simd128', 'scalar'];

describe.each(variants)('zero-copy arrays (%s)', (variant) => {
  it('are read and written in place, with no copy in or out', () => {
    const wasm = loadWasmBackendSync(variant);
    const mem = wasm.memory;
    const backend = ops(wasm);
    const g = { outer: 4, channels: 8, inner: 33 };
    const n = 4 * 8 * 33;
    const rand = random(7);
    const data = randomArray(Float32Array, n, rand, 5, 3);
    const x = mem.alloc(Float32Array, n);
    const y = mem.alloc(Float32Array, n);
    const mean = mem.alloc(Float32Array, 8);
    const invStd = mem.alloc(Float32Array, 8);
    const rMean = mem.alloc(Float32Array, 8);
    const rVar = mem.alloc(Float32Array, 8);
    x.array.set(data);
    rVar.array.fill(1);
    for (const a of [x, y, mean, invStd, rMean, rVar]) expect(mem.isZeroCopy(a.array)).toBe(true);
    expect(mem.isZeroCopy(data)).toBe(false);

    const bytesBefore = mem.bytes;
    const set32 = vi.spyOn(Float32Array.prototype, 'set');
    const written = backend.train({
      x: x.array, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: false,
      y: y.array, mean: mean.array, invStd: invStd.array,
      running: { runningMean: rMean.array, runningVar: rVar.array, factor: 0.1, varScale: n / 8 / (n / 8 - 1), skipNonFinite: false },
    });
    // In place as well: y = x.
    backend.infer({
      x: x.array, geometry: g, runningMean: rMean.array, runningVar: rVar.array, gamma: null, beta: null,
      eps: 1e-5, relu: true, y: x.array,
    });
    expect(set32).not.toHaveBeenCalled();
    set32.mockRestore();
    expect(written).toBe(true);
    expect(mem.bytes).toBe(bytesBefore);

    const want = { y: new Float32Array(n), mean: new Float32Array(8), invStd: new Float32Array(8) };
    const wantRunning = { runningMean: new Float32Array(8), runningVar: new Float32Array(8).fill(1) };
    reference.train({
      x: data, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: false, ...want,
      running: { ...wantRunning, factor: 0.1, varScale: n / 8 / (n / 8 - 1), skipNonFinite: false },
    });
    expect(scaledError(y.array, want.y)).toBeLessThan(1e-5);
    expect(scaledError(mean.array, want.mean)).toBeLessThan(1e-5);
    expect(scaledError(invStd.array, want.invStd)).toBeLessThan(1e-5);
    expect(scaledError(rMean.array, wantRunning.runningMean)).toBeLessThan(1e-5);
    expect(scaledError(rVar.array, wantRunning.runningVar)).toBeLessThan(1e-5);
    const wantInfer = new Float32Array(n);
    reference.infer({
      x: data, geometry: g, runningMean: rMean.array, runningVar: rVar.array, gamma: null, beta: null,
      eps: 1e-5, relu: true, y: wantInfer,
    });
    expect(scaledError(x.array, wantInfer)).toBeLessThan(1e-5);
    for (const a of [x, y, mean, invStd, rMean, rVar]) a.free();
  });

  it('mix with ordinary arrays, subarrays of blocks, and views outside any block', () => {
    const wasm = loadWasmBackendSync(variant);
    const mem = wasm.memory;
    const backend = ops(wasm);
    const g = { outer: 3, channels: 5, inner: 7 };
    const n = 105;
    const block = mem.alloc(Float64Array, n + 10);
    const x = block.array.subarray(10); // a subarray of a block is zero-copy too
    x.set(randomArray(Float64Array, n, random(3)));
    expect(mem.isZeroCopy(x)).toBe(true);
    // A view of module memory that no alloc handed out is never passed by pointer: refused.
    const stray = new Float64Array(mem.buffer, 8, 5);
    expect(mem.isZeroCopy(stray)).toBe(false);
    expect(() => backend.moments({ x, geometry: g, mean: stray, variance: new Float64Array(5) })).toThrow(
      /mean is a view of the wasm module memory outside every live wasmMemory.alloc block/,
    );
    const mean = new Float64Array(5);
    const variance = new Float64Array(5);
    backend.moments({ x, geometry: g, mean, variance });
    const want = { mean: new Float64Array(5), variance: new Float64Array(5) };
    reference.moments({ x, geometry: g, ...want });
    expect(scaledError(mean, want.mean)).toBeLessThan(1e-12);
    expect(scaledError(variance, want.variance)).toBeLessThan(1e-12);
    block.free();
    expect(block.freed).toBe(true);
    expect(() => block.array).toThrow(/freed/);
    block.free(); // a second free is a no-op
  });

  it('a view of wasmMemory.buffer is refused before any alloc too (the marshaller skips the buffer check only until a caller can hold a view)', () => {
    const wasm = loadWasmBackendSync(variant);
    const backend = ops(wasm);
    const g = { outer: 3, channels: 5, inner: 7 };
    const x = randomArray(Float64Array, 105, random(4));
    backend.moments({ x, geometry: g, mean: new Float64Array(5), variance: new Float64Array(5) }); // no block yet: copies
    expect(wasm.abi.userBlocks).toBe(false);
    const stray = new Float64Array(wasm.memory.buffer, 8, 5);
    expect(wasm.abi.userBlocks).toBe(true);
    const before = Array.from(stray);
    expect(() => backend.moments({ x, geometry: g, mean: stray, variance: new Float64Array(5) })).toThrow(
      /mean is a view of the wasm module memory outside every live wasmMemory.alloc block/,
    );
    expect(Array.from(stray)).toEqual(before);
  });

  it('growth detaches old views; WasmArray.array hands out a fresh one with the same data', () => {
    const wasm = loadWasmBackendSync(variant);
    const mem = wasm.memory;
    const backend = ops(wasm);
    const a = mem.alloc(Float32Array, 1000);
    a.array.set(randomArray(Float32Array, 1000, random(5)));
    const copy = a.array.slice();
    const old = a.array;
    const bytes = mem.bytes;
    const big = mem.alloc(Float32Array, 8 << 20); // 32 MiB: more than is free, so memory grows
    expect(mem.bytes).toBeGreaterThan(bytes);
    expect(old.length).toBe(0); // detached
    expect(a.array === old).toBe(false);
    expect(a.array).toEqual(copy);
    // A call whose copies grow the scratch area detaches views too; the handle still works.
    const held = a.array;
    const n = 16 << 20;
    const x = new Float32Array(n).fill(1);
    const mean = new Float32Array(1);
    const variance = new Float32Array(1);
    backend.moments({ x, geometry: { outer: 1, channels: 1, inner: n }, mean, variance });
    expect(mean[0]).toBe(1);
    expect(variance[0]).toBe(0);
    expect(held.length).toBe(0);
    expect(a.array).toEqual(copy);
    big.free();
    a.free();
  });
});

describe('copies of aliased arguments', () => {
  const g = { outer: 3, channels: 4, inner: 10 };
  const n = 120;
  const close = (a: ArrayLike<number>, b: ArrayLike<number>) => expect(scaledError(a, b)).toBeLessThan(1e-12);

  it('y over x, in place or not, and the scratch area holds x once', () => {
    const backend = ops(loadWasmBackendSync());
    const x = randomArray(Float64Array, n, random(1), 1, 2);
    const want = new Float64Array(n);
    const stats = () => ({ mean: new Float64Array(4), invStd: new Float64Array(4) });
    reference.train({ x, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: true, y: want, ...stats(), running: null });
    const y = new Float64Array(n);
    const xCopy = x.slice();
    backend.train({ x, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: true, y, ...stats(), running: null });
    close(y, want);
    expect(x).toEqual(xCopy); // x itself untouched: only its copy was overwritten
    backend.train({ x, geometry: g, gamma: null, beta: null, eps: 1e-5, relu: true, y: x, ...stats(), running: null });
    close(x, want);
    // 1 MiB tensor: with y sharing x's copy the area is one tensor (+ per-channel arrays).
    const big = new Float32Array(1 << 18).fill(3);
    const fresh = loadWasmBackendSync();
    ops(fresh).infer({
      x: big, geometry: { outer: 1, channels: 1, inner: 1 << 18 }, runningMean: new Float32Array(1),
      runningVar: new Float32Array(1).fill(1), gamma: null, beta: null, eps: 1e-5, relu: false, y: new Float32Array(1 << 18),
    });
    expect(fresh.marshal.scratchBytes).toBeLessThan(1.1 * (1 << 20));
    // BatchNorm's backward: dx over dy's copy, two tensors (dy, x) and not three.
    const back = loadWasmBackendSync();
    const C1 = { outer: 1, channels: 1, inner: 1 << 18 };
    const one = () => new Float32Array(1);
    ops(back).backward({
      dy: big, x: big.map((v, i) => v + (i % 7)), geometry: C1, mean: one(), invStd: one().fill(1), gamma: null, y: null,
      training: true, dx: new Float32Array(1 << 18), dgamma: one(), dbeta: one(),
    });
    expect(back.marshal.scratchBytes).toBeLessThan(2.1 * (1 << 20));
  });

  it('dx over dy, except when x is the same array as dy', () => {
    const backend = ops(loadWasmBackendSync());
    const a = randomArray(Float64Array, n, random(2));
    const mean = randomArray(Float64Array, 4, random(3));
    const invStd = new Float64Array(4).fill(0.7);
    const out = () => ({ dx: new Float64Array(n), dgamma: new Float64Array(4), dbeta: new Float64Array(4) });
    const want = out();
    reference.backward({ dy: a, x: a, geometry: g, mean, invStd, gamma: null, y: null, training: true, ...want });
    const got = out();
    backend.backward({ dy: a, x: a, geometry: g, mean, invStd, gamma: null, y: null, training: true, ...got });
    close(got.dx, want.dx);
    close(got.dgamma, want.dgamma);
    const dy = a.slice();
    const x = randomArray(Float64Array, n, random(4));
    const want2 = out();
    reference.backward({ dy, x, geometry: g, mean, invStd, gamma: null, y: null, training: true, ...want2 });
    const inPlace = out();
    backend.backward({ dy, x, geometry: g, mean, invStd, gamma: null, y: null, training: true, ...inPlace, dx: dy });
    close(dy, want2.dx);
  });

  it('y not over x when another input is x itself (infer with runningMean = x)', () => {
    const backend = ops(loadWasmBackendSync());
    const G = { outer: 1, channels: 6, inner: 1 };
    const x = randomArray(Float32Array, 6, random(5));
    const runningVar = new Float32Array(6).fill(2);
    const want = new Float32Array(6);
    reference.infer({ x, geometry: G, runningMean: x, runningVar, gamma: x, beta: null, eps: 1e-5, relu: false, y: want });
    const y = new Float32Array(6);
    backend.infer({ x, geometry: G, runningMean: x, runningVar, gamma: x, beta: null, eps: 1e-5, relu: false, y });
    expect(scaledError(y, want)).toBeLessThan(1e-6);
  });
});

describe('a flat footprint', () => {
  it('copies through one reused area: no growth and no leak over a million small calls', () => {
    const wasm = loadWasmBackendSync();
    const backend = ops(wasm);
    const g = { outer: 2, channels: 3, inner: 4 };
    const rand = random(11);
    const x = randomArray(Float32Array, 24, rand);
    const y = new Float32Array(24);
    const dx = new Float32Array(24);
    const [gamma, beta, mean, invStd, dgamma, dbeta] = Array.from({ length: 6 }, () => new Float32Array(3).fill(1));
    const rMean = new Float32Array(3);
    const rVar = new Float32Array(3).fill(1);
    const step = () => {
      backend.train({
        x, geometry: g, gamma, beta, eps: 1e-5, relu: true, y, mean, invStd,
        running: { runningMean: rMean, runningVar: rVar, factor: 0.1, varScale: 8 / 7, skipNonFinite: true },
      });
      backend.backward({ dy: y, x, geometry: g, mean, invStd, gamma, y, training: true, dx, dgamma, dbeta });
      backend.infer({ x, geometry: g, runningMean: rMean, runningVar: rVar, gamma, beta, eps: 1e-5, relu: false, y });
      backend.updateRunningStats({
        runningMean: rMean, runningVar: rVar, batchMean: mean, batchVar: invStd, factor: 0.5, varScale: 1,
        skipNonFinite: false,
      });
    };
    for (let i = 0; i < 10; i++) step(); // warm-up: the scratch area and the kernels' workspace
    const bytes = wasm.memory.bytes;
    // Where the allocator puts the next block: any leaked block would move it.
    const probe = wasm.memory.alloc(Float32Array, 4);
    const probePtr = probe.ptr;
    probe.free();
    for (let i = 0; i < 250_000; i++) step();
    expect(wasm.memory.bytes).toBe(bytes);
    const after = wasm.memory.alloc(Float32Array, 4);
    expect(after.ptr).toBe(probePtr);
    after.free();
  }, 120_000);
});

describe('errors', () => {
  it('a descriptor the ABI refuses throws abiError (internal error: …) and writes nothing', () => {
    const backend: WasmBackend = loadWasmBackendSync();
    const x = new Float32Array(12).fill(2);
    const y = new Float32Array(12).fill(7);
    const mean = new Float32Array(3).fill(6);
    const invStd = new Float32Array(3).fill(6);
    const rMean = new Float32Array(3).fill(4);
    const rVar = new Float32Array(3).fill(5);
    const train = (g: { outer: number; channels: number; inner: number }, s: Parameters<typeof batchNormNorm>[3]) => {
      const n = batchNormNorm(Phase.train, x, g, s);
      Object.assign(n.tensors, { [Slot.x]: x, [Slot.y]: y, [Slot.mean]: mean, [Slot.invStd]: invStd, [Slot.runningMean]: rMean, [Slot.runningVar]: rVar });
      return () => backend.run(n);
    };
    const g = { outer: 2, channels: 3, inner: 2 };
    expect(train(g, { eps: -1, factor: 0.1 })).toThrow(/^internal error: train: badScalar \(scalar eps\)$/);
    expect(train({ ...g, outer: -2 }, { eps: 1e-5, factor: 0.1 })).toThrow(/badScalar \(scalar outer\)/);
    expect(train(g, { eps: 1e-5, factor: 2 })).toThrow(/badScalar \(scalar factor\)/);
    expect(train({ outer: 2 ** 16, channels: 3, inner: 2 ** 16 }, { eps: 1e-5, factor: 0.1 })).toThrow(/tooShort \(tensor x\)/);
    const half = batchNormNorm(Phase.train, x, g, { eps: 1e-5, factor: 0.1 });
    Object.assign(half.tensors, { [Slot.x]: x, [Slot.y]: y, [Slot.mean]: mean, [Slot.invStd]: invStd, [Slot.runningMean]: rMean });
    expect(() => backend.run(half)).toThrow(/missing \(tensor runningVar\)/);
    const moments = batchNormNorm(Phase.moments, x, { outer: 0, channels: 2 ** 32 + 3, inner: 1 });
    Object.assign(moments.tensors, { [Slot.x]: new Float32Array(0), [Slot.mean]: mean, [Slot.variance]: invStd });
    expect(() => backend.run(moments)).toThrow(/tooShort \(tensor mean\)/);
    const bad = batchNormNorm(Phase.moments, x, g);
    bad.scalars[Scalar.phase] = 9;
    Object.assign(bad.tensors, { [Slot.x]: x, [Slot.mean]: mean, [Slot.variance]: invStd });
    expect(() => backend.run(bad)).toThrow(/^internal error: .*badScalar \(scalar phase\)$/);
    expect(y.every((v) => v === 7) && mean.every((v) => v === 6) && invStd.every((v) => v === 6)).toBe(true);
    expect(rMean.every((v) => v === 4) && rVar.every((v) => v === 5)).toBe(true);
    // The next valid call works.
    expect(train(g, { eps: 1e-5, factor: 0.1 })()).toBe(1);
    expect(y.every((v) => v === 0)).toBe(true);
  });
});

interface RawExports {
  memory: WebAssembly.Memory;
  _initialize(): void;
  sn_alloc(n: number): number;
  sn_free(p: number): number;
  sn_run(scalars: number, tensors: number): number;
  stackSave(): number;
}

describe.each(variants)('the raw C ABI with garbage (%s)', (variant) => {
  it('sn_run returns error codes for garbage scalars and pointer tables and never writes outside its blocks', () => {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmPath(variant))), wasmImports());
    const abi = instance.exports as unknown as RawExports;
    abi._initialize();
    // Block A holds the tensors (slot k at A + 256 k: every tensor below fits), block B must
    // never change, C holds the scalars and D the pointer table.
    const blockA = abi.sn_alloc(4000) >>> 0;
    const blockB = abi.sn_alloc(64) >>> 0;
    const blockC = abi.sn_alloc(SCALAR_COUNT * 8) >>> 0;
    const blockD = abi.sn_alloc(SLOT_COUNT * 4) >>> 0;
    expect(blockA * blockB * blockC * blockD).toBeGreaterThan(0);
    new Uint8Array(abi.memory.buffer, blockA, 4000).fill(0xab);
    new Uint8Array(abi.memory.buffer, blockB, 64).fill(0xcd);
    // The shadow stack is every call's scratch space: compare all memory but it. Between calls
    // the stack pointer is at its top; the stack is 512 KiB (-sTOTAL_STACK in wasm/wasm.cmake).
    const stackTop = abi.stackSave() >>> 0;
    const stackBottom = stackTop - 512 * 1024;

    const rand = random(42);
    const pick = <T,>(a: readonly T[]) => a[Math.floor(rand() * a.length)]!;
    const end = () => abi.memory.buffer.byteLength;
    const pointers = () => [0, 1, 4, 1024, blockA - 4, blockA + 3, blockA + 3996, blockA + 4000, blockB + 60, blockC, blockD,
      end() - 4, end(), 2 ** 32 - 4, 2 ** 31];
    const counts = [-1, -(2 ** 31), 2 ** 31 - 1, 65536, 1 << 20, 2 ** 53, 2 ** 64, 1.5, NaN, Infinity, 0, 2];
    const reals = [NaN, -1, 0, Infinity, -Infinity, 2, -0, 1e308];
    let rejected = 0;
    let accepted = 0;
    // A copy of all memory, refreshed after each accepted call and for the descriptor's blocks.
    let shadow = Buffer.from(new Uint8Array(abi.memory.buffer).slice());
    for (let trial = 0; trial < 2000; trial++) {
      const memory = abi.memory.buffer;
      const scalars = new Float64Array(memory, blockC, SCALAR_COUNT);
      const table = new Uint32Array(memory, blockD, SLOT_COUNT);
      // A valid-looking descriptor of a random phase, a few values spoiled.
      const phase = Math.floor(rand() * 5);
      const stats = 1 + Math.floor(rand() * 3);
      const inner = 1 + Math.floor(rand() * 4);
      scalars.set([phase, rand() < 0.5 ? DType.f32 : DType.f64, 1, 1 + Math.floor(rand() * 2), stats, inner, stats, 1, inner,
        Math.floor(rand() * 8), 1e-5, 0.5, 1]);
      const roles = ROLES[phase]!;
      const pair = rand() < 0.5;
      for (let slot = 0; slot < SLOT_COUNT; slot++) {
        const role = roles[slot];
        const given = role === 1 || role === 3 || role === 4 || (role === 2 && rand() < 0.5) || (role === 5 && pair);
        table[slot] = given ? blockA + 256 * slot : 0;
      }
      const spoils = rand() < 0.2 ? 0 : 1 + Math.floor(rand() * 3);
      for (let k = 0; k < spoils; k++) {
        if (rand() < 0.5) {
          const i = Math.floor(rand() * SCALAR_COUNT);
          scalars[i] = i === Scalar.eps || i === Scalar.factor || i === Scalar.varScale ? pick(reals) : pick(counts);
        } else {
          const slot = Math.floor(rand() * SLOT_COUNT);
          table[slot] = rand() < 0.7 ? pick(pointers()) : blockA + 16 * Math.floor(rand() * 250) + (rand() < 0.2 ? 4 : 0);
        }
      }
      let s = blockC;
      let t = blockD;
      if (rand() < 0.05) s = pick(pointers());
      if (rand() < 0.05) t = pick(pointers());
      const described = `sn_run(${s}, ${t}) with scalars [${Array.from(scalars).join(', ')}], tensors [${Array.from(table).join(', ')}]`;
      const now = Buffer.from(memory);
      now.copy(shadow, blockC, blockC, blockC + SCALAR_COUNT * 8);
      now.copy(shadow, blockD, blockD, blockD + SLOT_COUNT * 4);
      const before = shadow;
      const rc = abi.sn_run(s, t);
      if (rc >= 0) {
        accepted++;
        expect(rc).toBeLessThanOrEqual(1);
        shadow = Buffer.from(new Uint8Array(abi.memory.buffer).slice());
        continue;
      }
      rejected++;
      const after = Buffer.from(abi.memory.buffer);
      const same =
        after.length === before.length &&
        before.compare(after, 0, stackBottom, 0, stackBottom) === 0 &&
        before.compare(after, stackTop, after.length, stackTop, before.length) === 0;
      expect(same, `${described} returned ${rc} but changed memory`).toBe(true);
    }
    expect(rejected).toBeGreaterThan(1000);
    expect(accepted).toBeGreaterThan(150);
    expect(new Uint8Array(abi.memory.buffer, blockB, 64).every((b) => b === 0xcd)).toBe(true);
    expect(abi.sn_free(blockA + 4)).toBe(-1); // not a block start
    expect(abi.sn_free(12345)).toBe(-1);
    expect(abi.sn_free(blockA)).toBe(0);
    expect(abi.sn_free(blockA)).toBe(-1); // double free
    expect(abi.sn_free(blockB)).toBe(0);
  }, 120_000);
});

export type { FloatArray };
