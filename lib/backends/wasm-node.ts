/**
 * The `wasm` backend for Node: reads the committed .wasm with fs (Node's fetch cannot read a
 * file path) and compiles it synchronously, so the registry can load it without `await`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendProvider } from '../backend.js';
import {
  WASM_FILES,
  WasmBackend,
  type WasmVariant,
  adoptWasmBackend,
  instantiateWasmBackend,
  loadedWasmBackend,
  pickVariant,
} from './wasm.js';

/** The path of a variant's artifact: wasm/bin/ of the package (same from lib/ and dist/). */
export function wasmPath(variant: WasmVariant): string {
  return fileURLToPath(new URL(`../../wasm/bin/${WASM_FILES[variant]}`, import.meta.url));
}

/**
 * Loads a variant (default: SIMD128 where the engine validates it, else scalar) into a new,
 * independent backend with its own memory. The provider below shares one instead.
 */
export function loadWasmBackendSync(variant: WasmVariant = pickVariant()): WasmBackend {
  const path = wasmPath(variant);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new Error(
      `simdnorm wasm: cannot read ${path} (${(e as Error).message}); run npm run build:wasm`,
      { cause: e },
    );
  }
  return instantiateWasmBackend(new WebAssembly.Module(bytes), variant);
}

export const wasmNodeProvider: BackendProvider = {
  name: 'wasm',
  priority: 20,
  loadSync(): Backend {
    return loadedWasmBackend() ?? adoptWasmBackend(loadWasmBackendSync());
  },
  async load(): Promise<Backend> {
    return wasmNodeProvider.loadSync!();
  },
};
