/** The Node entry: native first, then WASM, then the TypeScript reference. */
import { jsProvider } from './backends/js.js';
import { nativeProvider } from './backends/native.js';
import { wasmNodeProvider } from './backends/wasm-node.js';
import { registerBackend } from './registry.js';

registerBackend(nativeProvider);
registerBackend(wasmNodeProvider);
registerBackend(jsProvider);

export * from './exports.js';
export { setWasmLocation, wasmMemory, type WasmArray, type WasmMemory } from './backends/wasm.js';
export * from './sync/index.js';
