/** The Node entry: native first, then WASM, then the TypeScript reference. */
import { jsProvider } from './backends/js.js';
import { registerBackend } from './registry.js';

registerBackend(jsProvider);

export * from './exports.js';
