/**
 * The backend registry: backends register with a priority, the façade uses the best one that
 * loads, every load error is kept, and the user may force a backend by name (`useBackend`, or
 * the environment variable SIMDNORM_BACKEND). Resolution is synchronous where the platform can
 * load synchronously (Node); in browsers `await ready()` loads the asynchronous ones (WASM).
 */
import type { Backend, BackendDetails, BackendName, BackendProvider } from './backend.js';
import { describe } from './validate.js';

const BACKEND_NAMES: readonly BackendName[] = ['native', 'wasm', 'js'];

interface Entry {
  provider: BackendProvider;
  backend?: Backend;
  error?: Error;
  loading?: Promise<Backend | undefined>;
}

const entries = new Map<BackendName, Entry>();
let current: Backend | undefined;
let choice: BackendName | 'auto' | undefined; // undefined: not yet read from the environment

/** Adds (or replaces) a backend provider. Used by the package's entry points. */
export function registerBackend(provider: BackendProvider): void {
  entries.set(provider.name, { provider });
  current = undefined;
}

function byPriority(): Entry[] {
  return [...entries.values()].sort((a, b) => b.provider.priority - a.provider.priority);
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function tryLoadSync(entry: Entry): Backend | undefined {
  if (entry.backend || entry.error || !entry.provider.loadSync) return entry.backend;
  try {
    entry.backend = entry.provider.loadSync();
  } catch (e) {
    entry.error = asError(e);
  }
  return entry.backend;
}

function tryLoad(entry: Entry): Promise<Backend | undefined> {
  if (entry.backend || entry.error) return Promise.resolve(entry.backend);
  entry.loading ??= entry.provider.load().then(
    (backend) => (entry.backend = backend),
    (e: unknown) => {
      entry.error = asError(e);
      return undefined;
    },
  );
  return entry.loading;
}

function readChoice(): BackendName | 'auto' {
  if (choice !== undefined) return choice;
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const value = env?.SIMDNORM_BACKEND?.trim();
  if (value === undefined || value === '' || value === 'auto') return (choice = 'auto');
  if (!(BACKEND_NAMES as readonly string[]).includes(value)) {
    throw new RangeError(
      `SIMDNORM_BACKEND must be one of auto, ${BACKEND_NAMES.join(', ')}, received '${value}'`,
    );
  }
  return (choice = value as BackendName);
}

function unavailable(name: BackendName, entry: Entry | undefined): Error {
  if (!entry) return new Error(`simdnorm: backend '${name}' is not registered in this build`);
  const why = entry.error
    ? entry.error.message
    : 'it loads asynchronously here: await ready() first';
  return new Error(`simdnorm: backend '${name}' is not available: ${why}`, { cause: entry.error });
}

let warnedNotReady = false;

/**
 * A call is about to run on `backend` while better ones (`pending`: asynchronous only, as WASM in
 * browsers) have not loaded: say so once, clearly, and start loading them, so that later calls
 * use the best backend without waiting for the caller's `await ready()`.
 */
function notReady(backend: Backend, pending: Entry[]): void {
  const names = pending.map((e) => `'${e.provider.name}'`).join(' and ');
  if (!warnedNotReady) {
    warnedNotReady = true;
    const warn = (globalThis as { console?: { warn?: (...a: unknown[]) => void } }).console?.warn;
    warn?.(
      `simdnorm: a call ran on the '${backend.name}' backend because ${names} loads asynchronously here and was ` +
        `not loaded yet: \`await ready()\` once before the first call (README "Browsers and bundlers"). ` +
        `Loading it now; later calls use it once it has loaded. (This warning is shown once.)`,
    );
  }
  for (const entry of pending) {
    void tryLoad(entry).then((loaded) => {
      if (loaded && choice === 'auto') current = undefined; // the next call picks it
    });
  }
}

/**
 * The backend calls run on: the chosen one, else the highest-priority one that loads. `forCall`:
 * a call will run on it (a fallback past a backend still loading asynchronously warns once).
 */
export function getBackend(forCall = true): Backend {
  if (current) return current;
  const wanted = readChoice();
  if (wanted !== 'auto') {
    const entry = entries.get(wanted);
    const backend = entry && (entry.backend ?? tryLoadSync(entry));
    if (!backend) throw unavailable(wanted, entry);
    return (current = backend);
  }
  const pending: Entry[] = [];
  for (const entry of byPriority()) {
    const backend = entry.backend ?? tryLoadSync(entry);
    if (backend) {
      if (pending.length === 0) return (current = backend);
      if (forCall) notReady(backend, pending);
      return backend; // not kept: once the pending one loads, calls move to it
    }
    if (!entry.error && !entry.provider.loadSync) pending.push(entry);
  }
  throw new Error(`simdnorm: no backend could be loaded:\n${loadReport()}`);
}

function loadReport(): string {
  return byPriority()
    .map((e) => `  ${e.provider.name}: ${e.error ? e.error.message : e.backend ? 'loaded' : 'not loaded yet'}`)
    .join('\n');
}

/**
 * Chooses the backend by name, or 'auto' for the best that loads. A backend that cannot be
 * loaded throws an Error with the reason; nothing falls back silently once a name is given.
 */
export function useBackend(name: BackendName | 'auto'): void {
  if (name !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new RangeError(`backend name must be one of auto, ${BACKEND_NAMES.join(', ')}, received ${describe(name)}`);
  }
  const previous = { choice, current };
  choice = name;
  current = undefined;
  try {
    getBackend(false);
  } catch (e) {
    ({ choice, current } = previous);
    throw e;
  }
}

/** The name of the backend calls run on now. */
export function currentBackend(): BackendName {
  return getBackend(false).name;
}

/**
 * Loads every registered backend (asynchronously where needed, as WASM in browsers) and
 * resolves with the name of the one calls will use.
 */
export async function ready(): Promise<BackendName> {
  await Promise.all(byPriority().map((entry) => tryLoad(entry)));
  current = undefined;
  return currentBackend();
}

export interface BackendStatus {
  name: BackendName;
  priority: number;
  available: boolean;
  /** the backend calls run on now */
  current: boolean;
  /** why it is not available (its load error), when it is not */
  reason?: string;
  error?: Error;
  details?: BackendDetails;
}

/** Every registered backend, loaded synchronously where possible, with why any is unavailable. */
export function backends(): BackendStatus[] {
  let active: Backend | undefined;
  try {
    active = getBackend(false);
  } catch {
    active = undefined;
  }
  return byPriority().map((entry) => {
    const backend = entry.backend ?? tryLoadSync(entry);
    const status: BackendStatus = {
      name: entry.provider.name,
      priority: entry.provider.priority,
      available: backend !== undefined,
      current: backend !== undefined && backend === active,
    };
    if (backend) status.details = backend.details();
    else {
      status.reason = entry.error?.message ?? 'not loaded yet: await ready()';
      if (entry.error) status.error = entry.error;
    }
    return status;
  });
}

/** The loaded backend of that name, for the self-check and benchmarks; throws when unavailable. */
export function loadedBackend(name: BackendName): Backend {
  const entry = entries.get(name);
  const backend = entry && (entry.backend ?? tryLoadSync(entry));
  if (!backend) throw unavailable(name, entry);
  return backend;
}

/**
 * Runs fn with calls going to the named backend, then restores the previous one. For the
 * self-check and tests; synchronous functions only.
 */
export function withBackend<R>(name: BackendName, fn: () => R): R {
  const backend = loadedBackend(name);
  const previous = current;
  current = backend;
  try {
    return fn();
  } finally {
    current = previous;
  }
}

/** The most threads setThreads accepts: the native kernels' pool never uses more (native/kernels/parallel.cpp). */
export const MAX_THREADS = 256;

/**
 * How many threads a call may use on backends that have threads (native, threaded wasm): an
 * integer from 1 to 256, or 0 for the default (one per core). Checked here, the same on every
 * backend (js and single-threaded wasm run on one thread and accept the same range). Results do
 * not depend on it.
 */
export function setThreads(n: number): void {
  if (typeof n !== 'number') throw new TypeError(`n (threads) must be a number, received ${describe(n)}`);
  if (!Number.isInteger(n) || n < 0 || n > MAX_THREADS) {
    throw new RangeError(`n (threads) must be an integer from 1 to ${MAX_THREADS}, or 0 for the default, received ${n}`);
  }
  for (const entry of entries.values()) {
    const backend = entry.backend ?? tryLoadSync(entry);
    backend?.setThreads?.(n);
  }
}
