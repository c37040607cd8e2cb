/**
 * The bad-input matrix (test/reliability/bad-inputs.ts) through the façade on every backend
 * (sync and async functions, and the BatchNorm layer), and through the raw WASM C ABI of both
 * variants. (The raw N-API binding gets the same matrix in test/native/validation.test.ts.)
 *
 * Every façade case must throw (or reject with) exactly the documented class (README "Errors"), TypeError or
 * RangeError, with a message naming the argument; and every byte of every array the call was
 * given (with the buffers they view), the layer's state and, on wasm, a zero-copy block of
 * module memory must be unchanged. Every ABI case (sn_run with a spoiled scalar, tensor pointer
 * or table) must return a known error code and leave all module memory (but the shadow stack)
 * unchanged.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { ThreadedWasmBackend, wasmImports, wasmMemory, type WasmVariant } from '../../lib/backends/wasm.js';
import { loadWasmBackendSync, wasmPath } from '../../lib/backends/wasm-node.js';
import { runAll } from '../wasm/helpers.js';
import { PHASE_NAMES, SCALAR_COUNT, SLOT_COUNT } from '../../lib/core/abi.js';
import {
  abiBadCalls,
  abiLength,
  abiUses,
  abiValidScalars,
  filled,
  facadeBadCalls,
  type AbiCall,
  type AbiCase,
  type AbiHeap,
  type FacadeApi,
  type FacadeCase,
} from './bad-inputs.js';

await api.ready();
const status = api.backends();
const facadeCases = facadeBadCalls();

// The intrinsic accessors: a spoiled array may lie about its own properties.
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (key: string) => Object.getOwnPropertyDescriptor(typedArrayPrototype, key)!.get!;
const bufferOf = intrinsic('buffer');
const dataViewBuffer = Object.getOwnPropertyDescriptor(DataView.prototype, 'buffer')!.get!;

/** Copies of every buffer the views look into (a view's neighbours count too). */
function snapshot(views: readonly ArrayBufferView[]): Map<ArrayBufferLike, Uint8Array> {
  const copies = new Map<ArrayBufferLike, Uint8Array>();
  for (const v of views) {
    const buffer = (v instanceof DataView ? dataViewBuffer.call(v) : bufferOf.call(v)) as ArrayBufferLike;
    if (copies.has(buffer)) continue;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(buffer).slice();
    } catch {
      continue; // a detached buffer: nothing can be written to it
    }
    copies.set(buffer, bytes);
  }
  return copies;
}

function changedBuffer(copies: Map<ArrayBufferLike, Uint8Array>): string | null {
  for (const [buffer, before] of copies) {
    const now = new Uint8Array(buffer);
    if (now.length !== before.length) return `a buffer changed length ${before.length} -> ${now.length}`;
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== before[i]) return `byte ${i} of a ${before.length}-byte buffer was written (${before[i]} -> ${now[i]})`;
    }
  }
  return null;
}

/** Whether the message names `blame`: as a whole word (not inside runningMean or dy), or a pattern. */
function names(message: string, blame: string | RegExp): boolean {
  if (blame instanceof RegExp) return blame.test(message);
  const escaped = blame.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w.])${escaped}(?![\\w])`).test(message);
}

function label(c: FacadeCase): string {
  return `${c.op} ${c.dtype} ${c.layout}: ${c.argument} = ${c.what}`;
}

/** Runs one case; returns what went wrong, or null. */
async function runFacadeCase(c: FacadeCase, sentinel?: { check(): string | null }): Promise<string | null> {
  const p = c.prepare(api as unknown as FacadeApi);
  const before = snapshot(p.watched);
  const stateBefore = p.state?.();
  let error: unknown;
  let returned: unknown;
  try {
    returned = p.call();
  } catch (e) {
    if (c.async) return `${label(c)}: threw synchronously (${String(e)}) instead of rejecting`;
    error = e;
  }
  if (c.async) {
    if (!(returned instanceof Promise)) return `${label(c)}: returned ${String(returned)}, not a Promise`;
    error = await returned.then(() => undefined, (e: unknown) => e);
  }
  if (error === undefined) return `${label(c)}: did not ${c.async ? 'reject' : 'throw'} (expected ${c.error.name})`;
  if ((error as Error)?.constructor !== c.error) {
    return `${label(c)}: ${c.async ? 'rejected' : 'threw'} ${(error as Error)?.name}: ${(error as Error)?.message}, expected ${c.error.name}`;
  }
  const message = (error as Error).message;
  if (!names(message, c.blame)) return `${label(c)}: message "${message}" does not name ${String(c.blame)}`;
  const written = changedBuffer(before);
  if (written) return `${label(c)}: ${written} by a call that threw`;
  if (p.state && p.state() !== stateBefore) return `${label(c)}: layer state ${stateBefore} -> ${p.state()}`;
  const outside = sentinel?.check();
  if (outside) return `${label(c)}: ${outside}`;
  return null;
}

const counts: Record<string, number> = {};

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`bad inputs through the façade: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} bad-input matrix: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    // On wasm, a zero-copy block of module memory must keep every byte too, and memory must not grow.
    let sentinel: { check(): string | null; free(): void } | undefined;
    beforeAll(() => {
      api.useBackend(name);
      if (name === 'wasm') {
        const block = wasmMemory.alloc(Float64Array, 256);
        block.array.set(filled(Float64Array, 256, 1234));
        const expected = block.array.slice();
        const bytes = wasmMemory.bytes;
        sentinel = {
          check() {
            if (wasmMemory.bytes !== bytes) return `module memory grew ${bytes} -> ${wasmMemory.bytes}`;
            const now = block.array;
            for (let i = 0; i < now.length; i++) if (!Object.is(now[i], expected[i])) return `zero-copy block element ${i} changed`;
            return null;
          },
          free: () => block.free(),
        };
      }
    });
    afterAll(() => {
      sentinel?.free();
      api.useBackend('auto');
      console.log(`façade bad-input matrix on ${name}: ${counts[name] ?? 0} spoiled calls, each the documented typed error, nothing written`);
    });
    const groups = new Map<string, FacadeCase[]>();
    for (const c of facadeCases) {
      const key = `${c.op} ${c.dtype} ${c.layout}`;
      groups.set(key, [...(groups.get(key) ?? []), c]);
    }
    for (const [key, group] of groups) {
      it(`${key}: ${group.length} spoiled calls`, async () => {
        const failures: string[] = [];
        for (const c of group) {
          const failure = await runFacadeCase(c, sentinel);
          if (failure) failures.push(failure);
        }
        counts[name] = (counts[name] ?? 0) + group.length;
        expect(failures).toEqual([]);
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The raw C ABI: sn_run(scalars, tensors)

interface RawAbi {
  memory: WebAssembly.Memory;
  _initialize(): void;
  sn_alloc(bytes: number): number;
  sn_free(p: number): number;
  sn_in_block(p: number, bytes: number, align: number): number;
  sn_run(scalars: number, tensors: number): number;
  stackSave(): number;
}

const STACK_BYTES = 512 * 1024; // -sTOTAL_STACK in wasm/wasm.cmake
const ERROR_CODES = 10; // native/abi/table.mjs's errors: 1 .. 10

async function instantiate(variant: WasmVariant): Promise<RawAbi> {
  if (variant === 'simd128-threads') {
    // Its own instance with one worker, started before the matrix (a starting worker writes its
    // thread-local storage): a job big enough for the pool until the worker has joined one.
    const backend = loadWasmBackendSync(variant, 1) as ThreadedWasmBackend;
    for (let i = 0; backend.helperJoins() === 0; i++) {
      if (i === 500) throw new Error('the worker never joined a job');
      runAll(backend, { type: Float32Array, g: { outer: 16, channels: 8, inner: 4096 }, relu: false, affine: true, running: false }, 1);
      await new Promise((r) => setTimeout(r, 10));
    }
    return backend.abi.exports as unknown as RawAbi;
  }
  const module = new WebAssembly.Module(readFileSync(wasmPath(variant)));
  const abi = new WebAssembly.Instance(module, wasmImports()).exports as unknown as RawAbi;
  abi._initialize();
  return abi;
}

/** The valid call of a phase: every slot it uses in its own block of exactly its size. */
function validCall(phase: number, f64: boolean, heap: AbiHeap, abi: RawAbi, scalarsAt: number, tensorsAt: number): AbiCall {
  const size = f64 ? 8 : 4;
  const blocks: number[] = [];
  const tensors = Array.from({ length: SLOT_COUNT }, (_, slot) => {
    if (!abiUses(phase, slot)) return 0;
    const n = abiLength(slot);
    const p = heap.alloc(n * size);
    const view = f64 ? new Float64Array(abi.memory.buffer, p, n) : new Float32Array(abi.memory.buffer, p, n);
    view.set(filled(f64 ? Float64Array : Float32Array, n, 200 + slot));
    blocks[slot] = p;
    return p;
  });
  return { scalars: abiValidScalars(phase, f64), tensors, blocks, scalarsAt, tensorsAt };
}

/** Writes a call's scalars and table into their blocks and runs sn_run with its two pointers. */
function run(abi: RawAbi, call: AbiCall, scalarsBlock: number, tableBlock: number): number {
  new Float64Array(abi.memory.buffer, scalarsBlock, SCALAR_COUNT).set(call.scalars);
  new Uint32Array(abi.memory.buffer, tableBlock, SLOT_COUNT).set(call.tensors.map((p) => p >>> 0));
  return abi.sn_run(call.scalarsAt >>> 0, call.tensorsAt >>> 0);
}

describe.each(['simd128', 'scalar', 'simd128-threads'] as WasmVariant[])('bad inputs through the raw C ABI (%s)', (variant) => {
  it('every spoiled sn_run returns an error code and writes no byte of module memory', async () => {
    const abi = await instantiate(variant);
    const heap: AbiHeap = {
      alloc(bytes) {
        const p = abi.sn_alloc(bytes) >>> 0;
        if (p === 0) throw new Error(`sn_alloc(${bytes}) failed`);
        return p;
      },
      free(p) {
        expect(abi.sn_free(p)).toBe(0);
      },
      get memoryBytes() {
        return abi.memory.buffer.byteLength;
      },
    };
    const scalarsBlock = heap.alloc(SCALAR_COUNT * 8);
    const tableBlock = heap.alloc(SLOT_COUNT * 4);
    const stackTop = abi.stackSave() >>> 0;
    const stackBottom = stackTop - STACK_BYTES;
    const snapshotMemory = () => Buffer.from(new Uint8Array(abi.memory.buffer).slice());
    const sameOutsideStack = (before: Buffer) => {
      const after = Buffer.from(abi.memory.buffer);
      return (
        after.length === before.length &&
        before.compare(after, 0, stackBottom, 0, stackBottom) === 0 &&
        before.compare(after, stackTop, after.length, stackTop, before.length) === 0
      );
    };

    const cases: AbiCase[] = abiBadCalls();
    const failures: string[] = [];
    const valid = new Map<string, AbiCall>();
    for (const c of cases) {
      const key = `${c.phase}_${c.dtype}`;
      const f64 = c.dtype === 'f64';
      let call = valid.get(key);
      if (!call) {
        call = validCall(PHASE_NAMES.indexOf(c.phase), f64, heap, abi, scalarsBlock, tableBlock);
        const rc = run(abi, call, scalarsBlock, tableBlock);
        expect(rc, `the valid ${key} call`).toBeGreaterThanOrEqual(0);
        valid.set(key, call);
      }
      const spoiled: AbiCall = { ...call, scalars: [...call.scalars], tensors: [...call.tensors] };
      const release = c.spoil(spoiled, heap, f64 ? 8 : 4);
      // The descriptor is written first: what must not change is everything after that.
      new Float64Array(abi.memory.buffer, scalarsBlock, SCALAR_COUNT).set(spoiled.scalars);
      new Uint32Array(abi.memory.buffer, tableBlock, SLOT_COUNT).set(spoiled.tensors.map((p) => p >>> 0));
      const before = snapshotMemory();
      const rc = abi.sn_run(spoiled.scalarsAt >>> 0, spoiled.tensorsAt >>> 0);
      const what = `${key}: ${c.argument} = ${c.what}`;
      if (rc >= 0) failures.push(`${what}: accepted (rc ${rc})`);
      else {
        const code = -rc >> 8;
        if (code < 1 || code > ERROR_CODES) failures.push(`${what}: returned ${rc}, an unknown error code ${code}`);
        if (!sameOutsideStack(before)) failures.push(`${what}: returned ${rc} but changed module memory`);
      }
      release?.();
    }
    // The allocator's own entry points with garbage: -1 and nothing changes.
    const block = heap.alloc(64);
    const garbage = [0, block + 4, block - 8, 1024, abi.memory.buffer.byteLength, -8, 2 ** 31];
    let memoryCases = 0;
    for (const p of garbage) {
      const before = snapshotMemory();
      if (abi.sn_free(p) !== -1) failures.push(`sn_free(${p}) did not refuse`);
      if (!sameOutsideStack(before)) failures.push(`sn_free(${p}) changed module memory`);
      memoryCases++;
    }
    for (const [p, bytes, align] of [[block, 65, 4], [block + 2, 4, 4], [block, 8, 3], [0, 0, 1], [-16, 16, 8], [block, 2 ** 32 - 1, 1]]) {
      if (abi.sn_in_block(p!, bytes!, align!) !== 0) failures.push(`sn_in_block(${p}, ${bytes}, ${align}) accepted`);
      memoryCases++;
    }
    for (const bytes of [0, 2 ** 32 - 1, 2 ** 32 - 64]) {
      if (abi.sn_alloc(bytes) !== 0) failures.push(`sn_alloc(${bytes}) did not refuse`);
      memoryCases++;
    }
    heap.free(block);
    expect(abi.sn_free(block)).toBe(-1); // double free
    console.log(`raw C ABI bad-input matrix (${variant}): ${cases.length} spoiled sn_run calls + ${memoryCases + 1} allocator calls`);
    expect(failures).toEqual([]);
  }, 120_000);
});
