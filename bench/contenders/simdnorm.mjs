/**
 * simdnorm's own backends as contenders, reached through the public API only: `native` on all
 * threads and on one, `wasm`, and the `js` reference. Every call passes caller-owned `out`
 * buffers, so the timed loop allocates nothing. On `wasm` the fastest formulation keeps every
 * array in the module memory (`wasmMemory.alloc`: no copy in or out); the plain-array one is
 * also checked and timed in warm-up, so the JSON records what the copies cost.
 *
 * @typedef {import('../runner.mjs').Contender} Contender
 * @typedef {import('../tasks.mjs').Task} Task
 */
import { EPS } from '../tasks.mjs';

/** Where arrays live: plain JS memory, or blocks of the wasm module memory. */
const plainStore = {
  alloc: (Type, length) => new Type(length),
  view: (handle) => handle,
  free: () => {},
};

function wasmStore(wasmMemory) {
  return {
    alloc: (Type, length) => wasmMemory.alloc(Type, length),
    // Growing the module memory detaches older views: always read .array afresh.
    view: (handle) => handle.array,
    free: (handle) => handle.free(),
  };
}

/** The arrays an op reads (filled from the case) and writes. */
function arraysOf(task) {
  const { data, op } = task;
  const n = data.x.length;
  const C = data.gamma.length;
  if (op === 'train') {
    return { inputs: { x: data.x, gamma: data.gamma, beta: data.beta, runningMean: data.runningMean, runningVar: data.runningVar }, outputs: { y: n, mean: C, invStd: C } };
  }
  if (op === 'infer') {
    return { inputs: { x: data.x, runningMean: data.runningMean, runningVar: data.runningVar, gamma: data.gamma, beta: data.beta }, outputs: { y: n } };
  }
  return { inputs: { dy: data.dy, x: data.x, mean: data.mean, invStd: data.invStd, gamma: data.gamma }, outputs: { dx: n, dgamma: C, dbeta: C } };
}

/** One API call with caller-owned outputs, as a closure over its argument objects. */
function apiCall(api, task, a) {
  const { shape, layout } = task.case;
  const sync = task.mode === 'sync';
  switch (task.op) {
    case 'train': {
      const fn = sync ? api.batchNormTrain : api.batchNormTrainAsync;
      const inputs = { x: a.x, shape, gamma: a.gamma, beta: a.beta, runningMean: a.runningMean, runningVar: a.runningVar };
      const options = { layout, eps: EPS };
      const out = { y: a.y, mean: a.mean, invStd: a.invStd };
      return () => fn(inputs, options, out);
    }
    case 'infer': {
      const fn = sync ? api.batchNormInfer : api.batchNormInferAsync;
      const inputs = { x: a.x, shape, runningMean: a.runningMean, runningVar: a.runningVar, gamma: a.gamma, beta: a.beta };
      const options = { layout, eps: EPS };
      const out = { y: a.y };
      return () => fn(inputs, options, out);
    }
    case 'backward': {
      const fn = sync ? api.batchNormBackward : api.batchNormBackwardAsync;
      const inputs = { dy: a.dy, x: a.x, shape, mean: a.mean, invStd: a.invStd, gamma: a.gamma };
      const options = { layout };
      const out = { dx: a.dx, dgamma: a.dgamma, dbeta: a.dbeta };
      return () => fn(inputs, options, out);
    }
  }
}

/** A formulation of `task` on backend `name` with `threads` (undefined: leave as is), arrays in `store`. */
function formulation(api, name, threads, label, store) {
  return {
    name: label,
    prepare(task) {
      const Type = task.data.x.constructor;
      const { inputs, outputs } = arraysOf(task);
      /** @type {Record<string, unknown>} */
      const handles = {};
      for (const [key, values] of Object.entries(inputs)) handles[key] = store.alloc(Type, values.length);
      for (const [key, length] of Object.entries(outputs)) handles[key] = store.alloc(Type, length);
      const views = () => Object.fromEntries(Object.entries(handles).map(([k, h]) => [k, store.view(h)]));
      const initial = views();
      for (const [key, values] of Object.entries(inputs)) initial[key].set(values);
      let call = apiCall(api, task, initial);
      return {
        async: task.mode === 'async',
        enter() {
          api.useBackend(name);
          if (threads !== undefined) api.setThreads(threads);
          call = apiCall(api, task, views());
        },
        run: () => call(),
        outputs() {
          const v = views();
          return Object.fromEntries(Object.keys(outputs).map((k) => [k, v[k]]));
        },
        dispose() {
          for (const h of Object.values(handles)) store.free(h);
          api.useBackend('auto');
        },
      };
    },
  };
}

/**
 * The simdnorm contenders. `wasmMemory` (from the package, when it exports it) enables the
 * zero-copy wasm formulation.
 * @returns {Contender[]}
 */
export function simdnormContenders(api, { wasmMemory } = {}) {
  const statuses = new Map(api.backends().map((b) => [b.name, b]));
  const why = (name) => {
    const s = statuses.get(name);
    if (!s) return `not registered in this build of simdnorm`;
    return s.available ? undefined : (s.reason ?? 'unavailable').replace(/\s*\n\s*/g, '; ');
  };
  const contender = (id, label, name, makeFormulations) => {
    const unavailable = why(name);
    return {
      id,
      label,
      kind: /** @type {const} */ ('simdnorm'),
      ...(unavailable ? { unavailable: `${name}: ${unavailable}` } : {}),
      formulations: () => makeFormulations(),
    };
  };
  const native = statuses.get('native');
  const maxThreads = Number(native?.details?.maxThreads ?? native?.details?.threads ?? 0);
  const list = [];
  if (!native?.available || maxThreads > 1) {
    const n = maxThreads > 1 ? maxThreads : 'all';
    list.push(contender(`native-${n}`, `native ×${n}`, 'native', () => [formulation(api, 'native', 0, `all ${n} threads`, plainStore)]));
  }
  list.push(contender('native-1', 'native ×1', 'native', () => [formulation(api, 'native', 1, '1 thread', plainStore)]));
  list.push(
    contender('wasm', 'wasm', 'wasm', () => [
      ...(wasmMemory ? [formulation(api, 'wasm', undefined, 'arrays in wasm memory (zero-copy)', wasmStore(wasmMemory))] : []),
      formulation(api, 'wasm', undefined, 'JS arrays (copied in and out)', plainStore),
    ]),
  );
  list.push(contender('js', 'js (reference)', 'js', () => [formulation(api, 'js', undefined, 'float64 accumulation', plainStore)]));
  return list;
}

/** Facts about simdnorm's backends for the report: name → details or reason. */
export function backendFacts(api) {
  return api.backends().map((b) => ({
    name: b.name,
    available: b.available,
    ...(b.available ? { details: { simd: b.details?.simd, threads: b.details?.threads, ...pick(b.details, ['maxThreads', 'build', 'variant']) } } : { reason: b.reason }),
  }));
}

function pick(object, keys) {
  return Object.fromEntries(keys.filter((k) => object?.[k] !== undefined).map((k) => [k, object[k]]));
}
