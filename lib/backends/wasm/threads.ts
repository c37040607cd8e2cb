/**
 * The threaded variant (wasm/bin/simdnorm-threads.wasm): the same kernels built with -pthread,
 * over one shared WebAssembly.Memory. No emscripten JS glue: this file provides the module's few
 * imports and starts its workers, each of which instantiates the same compiled module over the
 * same memory and calls sn_thread_run, the pool's worker loop (native/kernels/parallel.cpp), which
 * never returns. The calling thread publishes each job's tasks and takes tasks itself; the split
 * into tasks is fixed by the tensor's geometry, so results are bitwise the same for any number of
 * threads and the same as the single-threaded variants'.
 *
 * Workers are started once (more only when setThreads asks for more threads than there are) and
 * are platform objects behind a ThreadHost: worker_threads in Node (unref'd: an idle pool never
 * keeps the process alive), Web Workers in browsers (cross-origin isolated pages only:
 * SharedArrayBuffer). A job never waits for a worker to start: helpers that have not started yet
 * simply do not join it.
 */
import type { BackendDetails } from '../../backend.js';
import { Scalar } from '../../core/abi.js';
import type { Norm } from '../../core/descriptor.js';
import { typedArrayBuffer } from '../../intrinsics.js';
import { WASM_FILES } from './abi.js';
import { WasmBackend } from './backend.js';

/** What a worker needs: the compiled module, the shared memory, its stack, the growth counter. */
export interface ThreadStart {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  stackTop: number;
  growth: Int32Array;
}

/** Starts one worker running WORKER_SOURCE with `start` (platform-specific). */
export interface ThreadHost {
  spawn(start: ThreadStart): void;
}

/**
 * Below this many elements a job runs on the calling thread alone (native/kernels/parallel.h's
 * kMinParallelElements; test/wasm/threads.test.ts checks that they agree).
 */
export const MIN_PARALLEL_ELEMENTS = 65536;

/**
 * Where a copying call that runs on one thread goes instead (see ThreadedWasmBackend.run): a
 * single-threaded SIMD128 backend, or a promise of one (browsers compile asynchronously), or
 * undefined when there is none.
 */
export type SoloLoader = () => WasmBackend | Promise<WasmBackend> | undefined;

/** Never more workers than this, whatever the core count. */
export const MAX_WASM_HELPERS = 63;
const PAGE = 65536;
const MAX_BYTES = 2 ** 32;

/**
 * The module's imports besides its memory: emscripten's runtime hooks, which our use of the
 * runtime never reaches but for the heap growth, the main thread's setup and the clock. Mirrored
 * in WORKER_SOURCE (a worker never runs the constructors, so it has no init hook).
 */
function runtimeImports(memory: WebAssembly.Memory, growth: Int32Array, initMain: (tb: number) => void) {
  const fatal = (what: string) => () => {
    throw new WebAssembly.RuntimeError(`simdnorm wasm: the module called ${what}`);
  };
  return {
    env: {
      memory,
      emscripten_resize_heap(requested: number): number {
        const want = requested >>> 0;
        const have = memory.buffer.byteLength;
        if (want <= have) return 1;
        if (want > MAX_BYTES) return 0;
        try {
          memory.grow(Math.ceil((want - have) / PAGE));
        } catch {
          return 0;
        }
        Atomics.add(growth, 0, 1);
        return 1;
      },
      emscripten_get_now: () => performance.now(),
      __emscripten_init_main_thread_js: initMain,
      abort: fatal('abort'),
      exit: fatal('exit'),
      emscripten_unwind_to_js_event_loop: fatal('emscripten_unwind_to_js_event_loop'),
      __pthread_create_js: () => 6, // EAGAIN: the kernels never create threads themselves
      emscripten_receive_on_main_thread_js: () => 0,
      emscripten_set_canvas_element_size: () => -1,
      emscripten_webgl_create_context: () => 0,
      _emscripten_notify_thread_queue: () => {},
      __emscripten_thread_cleanup: () => {},
      emscripten_check_blocking_allowed: () => {},
    },
  };
}

/**
 * A worker's whole program (plain JS, for Node's `eval` workers and browsers' blob workers):
 * it takes its ThreadStart (workerData in Node, the first message in browsers), instantiates the
 * module, moves onto its own stack, says it is running, and enters the pool's loop for good.
 */
export const WORKER_SOURCE = `
'use strict';
function start(s) {
  const memory = s.memory, growth = s.growth;
  const fatal = (what) => () => { throw new WebAssembly.RuntimeError('simdnorm wasm worker: the module called ' + what); };
  const env = {
    memory,
    emscripten_resize_heap(requested) {
      const want = requested >>> 0, have = memory.buffer.byteLength;
      if (want <= have) return 1;
      if (want > ${MAX_BYTES}) return 0;
      try { memory.grow(Math.ceil((want - have) / ${PAGE})); } catch (e) { return 0; }
      Atomics.add(growth, 0, 1);
      return 1;
    },
    emscripten_get_now: () => performance.now(),
    __emscripten_init_main_thread_js: fatal('__emscripten_init_main_thread_js'),
    abort: fatal('abort'), exit: fatal('exit'),
    emscripten_unwind_to_js_event_loop: fatal('emscripten_unwind_to_js_event_loop'),
    __pthread_create_js: () => 6, emscripten_receive_on_main_thread_js: () => 0,
    emscripten_set_canvas_element_size: () => -1, emscripten_webgl_create_context: () => 0,
    _emscripten_notify_thread_queue: () => {}, __emscripten_thread_cleanup: () => {},
    emscripten_check_blocking_allowed: () => {},
  };
  const e = new WebAssembly.Instance(s.module, { env }).exports;
  e.stackRestore(s.stackTop);
  e.sn_thread_run(s.stackTop);
}
if (typeof require === 'function' && typeof self === 'undefined') {
  start(require('node:worker_threads').workerData);
} else {
  self.onmessage = (m) => { self.onmessage = null; start(m.data); };
}
`;

interface ThreadExports {
  __wasm_call_ctors(): void;
  emscripten_tls_init(): number;
  _emscripten_thread_init(tb: number, isMainBrowserThread: number, isMainRuntimeThread: number, canBlock: number, profile: number): void;
  sn_thread_stack(): number;
  sn_thread_pool(helpers: number, mainCanWait: number): void;
  sn_set_threads(n: number): void;
  sn_get_threads(): number;
  sn_thread_joins(): number;
}

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** The wasm backend over the threaded module, with its workers. */
export class ThreadedWasmBackend extends WasmBackend {
  private readonly start: Omit<ThreadStart, 'stackTop'>;
  private readonly host: ThreadHost;
  private readonly thread: ThreadExports;
  private readonly mainCanWait: number;
  private helpers = 0;
  /** setThreads starts workers up to this: one per core but the caller's, and at least 3. */
  private readonly maxHelpers: number;

  constructor(module: WebAssembly.Module, host: ThreadHost, helpers: number) {
    const memory = new WebAssembly.Memory({ initial: 32, maximum: MAX_BYTES / PAGE, shared: true });
    const growth = new Int32Array(new SharedArrayBuffer(4));
    const mainCanWait = canBlock() ? 1 : 0;
    let exports: ThreadExports | undefined;
    const imports = runtimeImports(memory, growth, (tb) => {
      // What emscripten's glue does for the main thread (PThread.threadInit): record its thread
      // block and give it its thread-local storage. Without emscripten_tls_init its __tls_base
      // stays 0 and its thread_locals (parallel.cpp's scratch buffer) live at address 12.
      exports!._emscripten_thread_init(tb, mainCanWait ? 0 : 1, 1, mainCanWait, 0);
      exports!.emscripten_tls_init();
    });
    const instance = new WebAssembly.Instance(module, imports as unknown as WebAssembly.Imports);
    exports = instance.exports as unknown as ThreadExports;
    exports.__wasm_call_ctors();
    // The memory is imported, not exported: WasmAbi finds it among the exports as usual.
    const withMemory = { exports: Object.freeze({ ...instance.exports, memory }) } as WebAssembly.Instance;
    super(withMemory, 'simd128-threads', growth);
    this.start = { module, memory, growth };
    this.host = host;
    this.thread = exports;
    this.mainCanWait = mainCanWait;
    this.maxHelpers = Math.min(Math.max(helpers, 3), MAX_WASM_HELPERS);
    this.thread.sn_thread_pool(0, mainCanWait);
    this.startHelpers(helpers);
    this.defaultThreads = this.helpers + 1;
    this.threads = this.defaultThreads;
  }

  /** setThreads(0): the workers started at load, plus the caller. */
  private readonly defaultThreads: number;
  /** The threads a call may use now (setThreads' n, capped at the workers plus the caller). */
  private threads: number;

  /**
   * The single-threaded module that takes copying calls on one thread (run), made on the first
   * such call by `soloLoader` (set by the loader); null once loading it failed.
   */
  soloLoader: SoloLoader | undefined;
  private solo: WasmBackend | null | undefined;

  /**
   * A call whose arrays are all ordinary JS memory (the functional API's default: they are copied
   * in and out) and which runs on one thread (setThreads(1), or too small to split) runs on a
   * single-threaded module instead: V8 copies into and out of a shared memory about 1.7x slower
   * than into an ordinary one (a relaxed-atomic copy), which cost such calls up to 1.5x their
   * time. The kernels and the split are the same, so the results are bitwise the same. A call
   * with any array in this module's memory (wasmMemory.alloc, the layers' blocks) runs here.
   */
  override run(n: Norm): number {
    if (this.soloLoader !== undefined && this.solo !== null && this.onOneThread(n) && !this.inModuleMemory(n)) {
      const solo = this.solo ?? this.loadSolo();
      if (solo) return solo.run(n);
    }
    return super.run(n);
  }

  private onOneThread(n: Norm): boolean {
    if (this.threads <= 1) return true;
    const s = n.scalars;
    return s[Scalar.samples] * s[Scalar.outer] * s[Scalar.stats] * s[Scalar.inner] < MIN_PARALLEL_ELEMENTS;
  }

  private inModuleMemory(n: Norm): boolean {
    if (!this.abi.userBlocks) return false;
    const tensors = n.tensors;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      if (t !== null && t !== undefined && this.abi.isModuleBuffer(typedArrayBuffer(t))) return true;
    }
    return false;
  }

  /** The solo backend if it is ready (else undefined: this call runs here), starting its load. */
  private loadSolo(): WasmBackend | undefined {
    if (this.soloPending) return undefined;
    let got: WasmBackend | Promise<WasmBackend> | undefined;
    try {
      got = this.soloLoader!();
    } catch {
      got = undefined;
    }
    if (got === undefined) {
      this.solo = null;
    } else if (got instanceof WasmBackend) {
      this.solo = got;
    } else {
      this.soloPending = true;
      got.then(
        (b) => {
          this.solo = b;
          this.soloPending = false;
        },
        () => {
          this.solo = null;
          this.soloPending = false;
        },
      );
    }
    return this.solo ?? undefined;
  }
  private soloPending = false;

  /** Starts workers until there are `count` (never fewer than now, at most maxHelpers). */
  private startHelpers(count: number): void {
    const want = Math.min(Math.max(count, 0), this.maxHelpers);
    while (this.helpers < want) {
      const stackTop = this.thread.sn_thread_stack() >>> 0;
      if (stackTop === 0) break;
      try {
        this.host.spawn({ ...this.start, stackTop });
      } catch {
        break; // e.g. a page whose CSP refuses blob: workers: fewer threads, the same results
      }
      this.helpers++;
    }
    this.thread.sn_thread_pool(this.helpers, this.mainCanWait);
  }

  /**
   * n threads per call (the caller's included), 0 the default (one per worker started at load).
   * A call never uses more threads than there are workers plus the caller: asking for more starts
   * more workers, up to one per core (at least 4 threads); beyond that, n is capped (details()
   * reports the threads a call really uses). Results do not depend on it.
   */
  setThreads(n: number): void {
    if (n > 1) this.startHelpers(n - 1);
    this.thread.sn_set_threads(n > 0 ? n : this.defaultThreads);
    this.threads = Math.min(n > 0 ? n : this.defaultThreads, this.helpers + 1);
  }

  /** @internal how many times a worker has joined a job (tests) */
  helperJoins(): number {
    return this.thread.sn_thread_joins() >>> 0;
  }

  override details(): BackendDetails {
    const details: BackendDetails = { ...super.details(), threads: this.thread.sn_get_threads(), workers: this.helpers };
    if (this.solo) details.oneThreadCopies = WASM_FILES[this.solo.variant];
    return details;
  }
}

/** Why the threaded variant cannot run here (undefined when it can). */
export function threadsUnavailable(): string | undefined {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  if (g.crossOriginIsolated === false) {
    return 'threads off: the page is not cross-origin isolated (serve it with COOP same-origin and COEP require-corp)';
  }
  if (typeof SharedArrayBuffer !== 'function') return 'threads off: SharedArrayBuffer is not available';
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    return 'threads off: this engine has no shared WebAssembly memory';
  }
  return undefined;
}
