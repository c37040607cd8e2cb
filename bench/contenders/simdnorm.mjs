/**
 * simdnorm's own backends as contenders, reached through the public API only: `native` on all
 * threads and on one, `wasm`, and the `js` reference. Every call passes caller-owned `out`
 * buffers, so the timed loop allocates nothing. `wasm` is two contenders per thread count: every
 * array in the module memory (`wasmMemory.alloc`: no copy in or out, "zero-copy"), and JS arrays
 * (copied into the module memory and back, "copied": what a caller with ordinary arrays gets).
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

/** The arrays a family op (LayerNorm, RMSNorm, GroupNorm, InstanceNorm) reads and writes. */
function familyArraysOf(task) {
  const { data, op } = task;
  const norm = task.case.norm;
  const n = data.x.length;
  const P = (data.weight ?? data.gamma).length;
  if (op === 'forward') {
    const count = statCount(task.case, n);
    if (norm === 'rmsnorm') return { inputs: { x: data.x, weight: data.weight }, outputs: { y: n, invRms: count } };
    const params = norm === 'layernorm' ? { weight: data.weight, bias: data.bias } : { gamma: data.gamma, beta: data.beta };
    return { inputs: { x: data.x, ...params }, outputs: { y: n, mean: count, invStd: count } };
  }
  if (norm === 'rmsnorm') return { inputs: { dy: data.dy, x: data.x, invRms: data.invRms, weight: data.weight }, outputs: { dx: n, dweight: P } };
  const stat = { mean: data.mean, invStd: data.invStd };
  if (norm === 'layernorm') return { inputs: { dy: data.dy, x: data.x, ...stat, weight: data.weight }, outputs: { dx: n, dweight: P, dbias: P } };
  return { inputs: { dy: data.dy, x: data.x, ...stat, gamma: data.gamma }, outputs: { dx: n, dgamma: P, dbeta: P } };
}

/** Statistics a family forward writes: one per row (LayerNorm, RMSNorm), group (GroupNorm) or instance. */
function statCount(c, elements) {
  if (c.norm === 'layernorm' || c.norm === 'rmsnorm') return elements / c.normalizedShape.reduce((a, b) => a * b, 1);
  const C = c.layout === 'channels-first' ? c.shape[1] : c.shape[c.shape.length - 1];
  return c.shape[0] * (c.norm === 'groupnorm' ? c.groups : C);
}

/** One family API call with caller-owned outputs. */
function familyCall(api, task, a) {
  const c = task.case;
  const { shape, layout } = c;
  const sync = task.mode === 'sync';
  const pick = (fn) => (sync ? api[fn] : api[`${fn}Async`]);
  const forward = task.op === 'forward';
  switch (c.norm) {
    case 'layernorm': {
      if (forward) {
        const fn = pick('layerNorm');
        const inputs = { x: a.x, shape, normalizedShape: c.normalizedShape, weight: a.weight, bias: a.bias };
        const out = { y: a.y, mean: a.mean, invStd: a.invStd };
        return () => fn(inputs, { eps: EPS }, out);
      }
      const fn = pick('layerNormBackward');
      const inputs = { dy: a.dy, x: a.x, shape, normalizedShape: c.normalizedShape, mean: a.mean, invStd: a.invStd, weight: a.weight };
      const out = { dx: a.dx, dweight: a.dweight, dbias: a.dbias };
      return () => fn(inputs, {}, out);
    }
    case 'rmsnorm': {
      if (forward) {
        const fn = pick('rmsNorm');
        const inputs = { x: a.x, shape, normalizedShape: c.normalizedShape, weight: a.weight };
        const out = { y: a.y, invRms: a.invRms };
        return () => fn(inputs, { eps: EPS }, out);
      }
      const fn = pick('rmsNormBackward');
      const inputs = { dy: a.dy, x: a.x, shape, normalizedShape: c.normalizedShape, invRms: a.invRms, weight: a.weight };
      const out = { dx: a.dx, dweight: a.dweight };
      return () => fn(inputs, {}, out);
    }
    case 'groupnorm': {
      if (forward) {
        const fn = pick('groupNorm');
        const inputs = { x: a.x, shape, groups: c.groups, gamma: a.gamma, beta: a.beta };
        const out = { y: a.y, mean: a.mean, invStd: a.invStd };
        return () => fn(inputs, { eps: EPS, layout }, out);
      }
      const fn = pick('groupNormBackward');
      const inputs = { dy: a.dy, x: a.x, shape, groups: c.groups, mean: a.mean, invStd: a.invStd, gamma: a.gamma };
      const out = { dx: a.dx, dgamma: a.dgamma, dbeta: a.dbeta };
      return () => fn(inputs, { layout }, out);
    }
    case 'instancenorm': {
      if (forward) {
        const fn = pick('instanceNorm');
        const inputs = { x: a.x, shape, gamma: a.gamma, beta: a.beta };
        const out = { y: a.y, mean: a.mean, invStd: a.invStd };
        return () => fn(inputs, { eps: EPS, layout }, out);
      }
      const fn = pick('instanceNormBackward');
      const inputs = { dy: a.dy, x: a.x, shape, mean: a.mean, invStd: a.invStd, gamma: a.gamma };
      const out = { dx: a.dx, dgamma: a.dgamma, dbeta: a.dbeta };
      return () => fn(inputs, { layout }, out);
    }
  }
  throw new Error(`no simdnorm call for ${c.norm}`);
}

const isFamily = (task) => (task.case.norm ?? 'batchnorm') !== 'batchnorm';

/** The arrays an op reads (filled from the case) and writes. */
function arraysOf(task) {
  if (isFamily(task)) return familyArraysOf(task);
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
  if (isFamily(task)) return familyCall(api, task, a);
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
 * zero-copy wasm formulation. `crashes` (from ../preflight.mjs, Node only) maps
 * `${case.id}|${op}` to why a native call killed its process: those tasks are reported as ERROR
 * for the native contenders, without calling them.
 * @returns {Contender[]}
 */
export function simdnormContenders(api, { wasmMemory, crashes = new Map() } = {}) {
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
      formulations(task) {
        const crash = name === 'native' ? crashes.get(`${task.case.id}|${task.op}`) : undefined;
        if (!crash) return makeFormulations();
        return makeFormulations().map((f) => ({
          name: f.name,
          prepare() {
            throw new Error(`not called: ${crash}`);
          },
        }));
      },
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
  // wasm twice per thread count: arrays in module memory (wasmMemory.alloc: zero-copy; JS arrays
  // when the package does not export wasmMemory) and JS arrays (copied in and out), each timed.
  const zeroCopy = (threads) => () =>
    wasmMemory
      ? [formulation(api, 'wasm', threads, 'arrays in wasm memory (zero-copy)', wasmStore(wasmMemory))]
      : [formulation(api, 'wasm', threads, 'JS arrays (copied in and out)', plainStore)];
  const copied = (threads) => () => [formulation(api, 'wasm', threads, 'JS arrays (copied in and out)', plainStore)];
  // The threaded wasm variant (lib/backends/wasm/threads.ts): ×1 and × every thread it started.
  const wasm = statuses.get('wasm');
  const wasmThreads = wasm?.details?.variant === 'simdnorm-threads.wasm' ? Number(wasm.details.workers ?? 0) + 1 : 1;
  const wasmContenders = (suffix, label, threads) => {
    list.push(contender(`wasm${suffix}`, `wasm${label}${wasmMemory ? ' zero-copy' : ''}`, 'wasm', zeroCopy(threads)));
    if (wasmMemory) list.push(contender(`wasm-copy${suffix}`, `wasm${label} copied`, 'wasm', copied(threads)));
  };
  if (wasmThreads > 1) {
    wasmContenders('-1', ' ×1', 1);
    wasmContenders(`-${wasmThreads}`, ` ×${wasmThreads}`, wasmThreads);
  } else {
    wasmContenders('', '', undefined);
  }
  list.push(contender('js', 'js (reference)', 'js', () => [formulation(api, 'js', undefined, 'float64 accumulation', plainStore)]));
  return list;
}

/** Facts about simdnorm's backends for the report: name → details or reason. */
export function backendFacts(api) {
  return api.backends().map((b) => ({
    name: b.name,
    available: b.available,
    ...(b.available ? { details: { simd: b.details?.simd, threads: b.details?.threads, ...pick(b.details, ['maxThreads', 'build', 'variant', 'workers', 'threadsOff']) } } : { reason: b.reason }),
  }));
}

function pick(object, keys) {
  return Object.fromEntries(keys.filter((k) => object?.[k] !== undefined).map((k) => [k, object[k]]));
}
