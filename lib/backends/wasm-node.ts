/**
 * The `wasm` backend for Node: reads the committed .wasm with fs (Node's fetch cannot read a
 * file path) and compiles it synchronously, so the registry can load it without `await`.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
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
  threadsOffReason,
  ThreadedWasmBackend,
  type ThreadHost,
  WORKER_SOURCE,
} from './wasm.js';

/**
 * The threaded variant's workers in Node: worker_threads running WORKER_SOURCE, unref'd, so an
 * idle pool (workers blocked in the pool's wait) never keeps the process alive; they end with it.
 */
export const nodeThreadHost: ThreadHost = {
  spawn(start) {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: start, name: 'simdnorm-wasm' });
    worker.unref();
    // A worker that cannot start (out of memory) leaves the pool one helper short, which only
    // means fewer threads: results do not depend on them.
    worker.on('error', () => {});
  },
};

/**
 * The variant to load: SIMDNORM_WASM_VARIANT (simd128-threads, simd128 or scalar) when set, else
 * the threaded one (Node always has worker_threads and shared memory), else as pickVariant says.
 */
function nodeVariant(): WasmVariant {
  const forced = process.env.SIMDNORM_WASM_VARIANT;
  if (forced !== undefined && forced !== '') {
    if (!Object.hasOwn(WASM_FILES, forced)) {
      throw new Error(`simdnorm wasm: SIMDNORM_WASM_VARIANT must be one of ${Object.keys(WASM_FILES).join(', ')}, not ${forced}`);
    }
    return forced as WasmVariant;
  }
  return pickVariant(true);
}

/** The path of a variant's artifact: wasm/bin/ of the package (same from lib/ and dist/). */
export function wasmPath(variant: WasmVariant): string {
  return fileURLToPath(new URL(`../../wasm/bin/${WASM_FILES[variant]}`, import.meta.url));
}

/**
 * Loads a variant (default: nodeVariant()) into a new, independent backend with its own memory
 * (the threaded one with `helpers` workers, default one per core but the caller's). The provider
 * below shares one instead.
 */
export function loadWasmBackendSync(variant?: WasmVariant, helpers = availableParallelism() - 1): WasmBackend {
  if (variant === undefined) {
    const chosen = nodeVariant();
    if (chosen !== 'simd128-threads') return loadWasmBackendSync(chosen);
    try {
      return loadWasmBackendSync(chosen, helpers);
    } catch (e) {
      // E.g. no address space for a shared memory: the single-threaded variant, saying why.
      const backend = loadWasmBackendSync(pickVariant(false));
      backend.threadsOff = `threads off: ${(e as Error).message.split('\n')[0]}`;
      return backend;
    }
  }
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
  const backend = instantiateWasmBackend(new WebAssembly.Module(bytes), variant, { host: nodeThreadHost, helpers });
  // Copying calls on one thread run on the single-threaded module, compiled on the first of them.
  if (backend instanceof ThreadedWasmBackend) backend.soloLoader = () => loadWasmBackendSync('simd128');
  if (variant !== 'simd128-threads') backend.threadsOff = threadsOffReason(true) ?? `threads off: the ${variant} variant was requested (SIMDNORM_WASM_VARIANT)`;
  return backend;
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
