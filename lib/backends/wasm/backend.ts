/**
 * The `wasm` backend over one instance of the module: a Backend whose run(n) marshals the
 * descriptor (marshal.ts) and calls sn_run (abi.ts); `memory` is its WasmMemory (memory.ts).
 */
import type { Backend, BackendDetails } from '../../backend.js';
import type { Norm } from '../../core/descriptor.js';
import { WASM_FILES, WasmAbi, type WasmVariant } from './abi.js';
import { Marshal } from './marshal.js';
import { createWasmMemory, type WasmMemory } from './memory.js';

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly variant: WasmVariant;
  readonly memory: WasmMemory;
  readonly simd: string;
  /** @internal the module's exports (tests reach sn_set_scratch_limit through it) */
  readonly abi: WasmAbi;
  /** @internal */
  readonly marshal: Marshal;

  /** growth: the threaded variant's growth counter (lib/backends/wasm/threads.ts) */
  constructor(instance: WebAssembly.Instance, variant: WasmVariant, growth?: Int32Array) {
    this.variant = variant;
    this.abi = new WasmAbi(instance, WASM_FILES[variant], growth);
    this.simd = this.abi.simdLevel;
    this.marshal = new Marshal(this.abi);
    this.memory = createWasmMemory(this.abi, () => this.marshal.releaseScratch());
  }

  /** Why this single-threaded variant was loaded instead of the threaded one (backends()). */
  threadsOff: string | undefined;

  details(): BackendDetails {
    const details: BackendDetails = {
      simd: this.simd,
      threads: 1,
      memoryBytes: this.abi.buffer.byteLength,
      variant: WASM_FILES[this.variant],
    };
    if (this.threadsOff !== undefined) details.threadsOff = this.threadsOff;
    return details;
  }

  run(n: Norm): number {
    return this.marshal.run(n);
  }
}
