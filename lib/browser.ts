/** The browser entry (no Node built-in): WASM, then the TypeScript reference. */
import { jsProvider } from './backends/js.js';
import { wasmBrowserProvider } from './backends/wasm.js';
import { registerBackend } from './registry.js';

registerBackend(wasmBrowserProvider);
registerBackend(jsProvider);

export * from './exports.js';
export { setWasmLocation, wasmMemory, type WasmArray, type WasmMemory } from './backends/wasm.js';
export * from './sync/index.js';
