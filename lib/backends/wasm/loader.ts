/**
 * Loading: the variant (SIMD128 where the engine validates it, else scalar), instantiation, and
 * the browser provider (fetch + instantiateStreaming, the .wasm found next to the package by
 * URL). lib/backends/wasm-node.ts is the Node provider (fs, synchronous).
 */
import type { Backend, BackendProvider } from '../../backend.js';
import { WASM_FILES, wasmImports, type WasmVariant } from './abi.js';
import { WasmBackend } from './backend.js';
import { adoptWasmBackend, loadedWasmBackend } from './memory.js';
import { ThreadedWasmBackend, WORKER_SOURCE, threadsUnavailable, type ThreadHost } from './threads.js';

// (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): popcnt came late into
// the SIMD proposal, so engines that only had a pre-standard SIMD reject it too.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15,
  253, 98, 11,
]);

/** Whether this engine runs WebAssembly SIMD128 (validates a tiny module using it). */
export function simdSupported(): boolean {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

/**
 * Why the threaded variant is not chosen here (undefined when it is): no SIMD128, no
 * SharedArrayBuffer or shared memory, a page that is not cross-origin isolated, no workers.
 */
export function threadsOffReason(workers: boolean): string | undefined {
  if (!simdSupported()) return 'threads off: no WebAssembly SIMD128';
  return threadsUnavailable() ?? (workers ? undefined : 'threads off: no Worker in this environment');
}

/**
 * The variant this engine should load: the threaded SIMD128 one where threads can run (`workers`:
 * whether the caller can start workers), else SIMD128 where it validates, else scalar.
 */
export function pickVariant(workers = false): WasmVariant {
  if (threadsOffReason(workers) === undefined) return 'simd128-threads';
  return simdSupported() ? 'simd128' : 'scalar';
}

/**
 * Instantiates a compiled module of the given variant into a new backend; the threaded variant
 * needs a host to start its workers on, and starts `helpers` of them.
 */
export function instantiateWasmBackend(
  module: WebAssembly.Module,
  variant: WasmVariant,
  threads?: { host: ThreadHost; helpers: number },
): WasmBackend {
  if (variant === 'simd128-threads') {
    if (!threads) throw new Error('simdnorm wasm: the threaded variant needs a thread host');
    return new ThreadedWasmBackend(module, threads.host, threads.helpers);
  }
  return new WasmBackend(new WebAssembly.Instance(module, wasmImports()), variant);
}

/** Browsers: Web Workers from a blob of WORKER_SOURCE (no extra file for bundlers to find). */
let blobUrl: string | undefined;
export const browserThreadHost: ThreadHost = {
  spawn(start) {
    blobUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
    new Worker(blobUrl, { name: 'simdnorm-wasm' }).postMessage(start);
  },
};

function browserHelpers(): number {
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return Math.max(0, Math.min(typeof cores === 'number' && cores > 0 ? cores : 1, 16) - 1);
}

type LocationResolver = (file: string, variant: WasmVariant) => string | URL;
let location: LocationResolver | null = null;

/**
 * Where the browser provider fetches the .wasm files from: a directory URL (relative URLs are
 * resolved against the page) holding simdnorm-simd.wasm and simdnorm-scalar.wasm, or a function
 * from file name and variant to URL; null restores the default (wasm/bin/ of the package,
 * found with `new URL(..., import.meta.url)`, which bundlers such as Vite rewrite). Call it
 * before `ready()`.
 */
export function setWasmLocation(where: string | URL | LocationResolver | null): void {
  if (where === null || typeof where === 'function') {
    location = where;
    return;
  }
  const base = String(where).endsWith('/') ? String(where) : `${String(where)}/`;
  location = (file) => new URL(file, new URL(base, pageUrl()));
}

function pageUrl(): string {
  const here = (globalThis as { location?: { href?: string } }).location?.href;
  return here ?? import.meta.url;
}

/**
 * The default URL of each variant (from lib/backends/wasm/ or dist/backends/wasm/); string
 * literals so that bundlers see and emit both files.
 */
function defaultUrl(variant: WasmVariant): URL {
  if (variant === 'simd128-threads') return new URL('../../../wasm/bin/simdnorm-threads.wasm', import.meta.url);
  return variant === 'simd128'
    ? new URL('../../../wasm/bin/simdnorm-simd.wasm', import.meta.url)
    : new URL('../../../wasm/bin/simdnorm-scalar.wasm', import.meta.url);
}

/** The URL the browser provider loads the given variant from. */
export function wasmUrl(variant: WasmVariant): URL {
  if (!location) return defaultUrl(variant);
  return new URL(String(location(WASM_FILES[variant], variant)), pageUrl());
}

/** Fetches, compiles and instantiates a variant; a new backend each time. */
export async function fetchWasmBackend(variant?: WasmVariant): Promise<WasmBackend> {
  const hasWorker = typeof (globalThis as { Worker?: unknown }).Worker === 'function';
  const explicit = variant !== undefined;
  const threadsOff = variant === undefined ? threadsOffReason(hasWorker) : undefined;
  variant ??= pickVariant(hasWorker);
  const url = wasmUrl(variant);
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`simdnorm wasm: fetching ${url.href} failed: HTTP ${response.status} ${response.statusText}`);
  }
  if (variant === 'simd128-threads') {
    const module = await WebAssembly.compile(await response.arrayBuffer());
    try {
      const backend = instantiateWasmBackend(module, variant, { host: browserThreadHost, helpers: browserHelpers() });
      // Copying calls on one thread run on the single-threaded module, fetched on the first of them.
      if (backend instanceof ThreadedWasmBackend) backend.soloLoader = () => fetchWasmBackend('simd128');
      return backend;
    } catch (e) {
      if (explicit) throw e;
      // E.g. no address space for a shared memory: the single-threaded variant, saying why.
      const backend = await fetchWasmBackend('simd128');
      backend.threadsOff = `threads off: ${(e as Error).message.split('\n')[0]}`;
      return backend;
    }
  }
  let instance: WebAssembly.Instance;
  try {
    // Streaming compilation needs the server to send Content-Type: application/wasm.
    ({ instance } = await WebAssembly.instantiateStreaming(response.clone(), wasmImports()));
  } catch (e) {
    if (e instanceof WebAssembly.CompileError || e instanceof WebAssembly.LinkError) throw e;
    ({ instance } = await WebAssembly.instantiate(await response.arrayBuffer(), wasmImports()));
  }
  const backend = new WasmBackend(instance, variant);
  backend.threadsOff = threadsOff;
  return backend;
}

let browserLoading: Promise<WasmBackend> | undefined;

/** The browser provider: asynchronous only (browsers refuse large synchronous compiles). */
export const wasmBrowserProvider: BackendProvider = {
  name: 'wasm',
  priority: 20,
  load(): Promise<Backend> {
    const current = loadedWasmBackend();
    if (current) return Promise.resolve(current);
    browserLoading ??= fetchWasmBackend().then(adoptWasmBackend, (e: unknown) => {
      browserLoading = undefined; // a later call may try again (e.g. after setWasmLocation)
      throw e;
    });
    return browserLoading;
  },
};
