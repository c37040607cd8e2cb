/**
 * Runs one task (a case, an op, a mode) over every contender: the correctness gate, the choice
 * of each contender's fastest correct formulation, warm-up, interleaved rounds with the copy
 * probes that set the bandwidth bound, and the derived figures. Works in Node and browsers.
 *
 * @typedef {import('./tasks.mjs').Task} Task
 * @typedef {import('./timing.mjs').Settings} Settings
 * @typedef {import('./timing.mjs').Stats} Stats
 */
import { COPY_ACCESSES, accessesOf, caseName, checkOutputs, opBytes } from './tasks.mjs';
import { interleavedRounds, warmUp } from './timing.mjs';

/**
 * @typedef {object} Contender  one line of the table
 * @property {string} id
 * @property {string} label
 * @property {'simdnorm' | 'peer' | 'baseline'} kind
 * @property {string} [unavailable]  why it cannot run at all (not installed, failed to load)
 * @property {(task: Task) => Formulation[] | string} formulations  ways to compute the task, or why it does not apply
 */

/**
 * @typedef {object} Formulation  one way a contender can compute a task
 * @property {string} name
 * @property {(task: Task) => Runner | Promise<Runner>} prepare
 */

/**
 * @typedef {object} Runner  a prepared formulation: inputs in place, outputs allocated
 * @property {boolean} async
 * @property {() => unknown} run
 * @property {() => unknown} [enter]   untimed, before each sample (select backend, threads)
 * @property {() => Record<string, ArrayLike<number>> | Promise<Record<string, ArrayLike<number>>>} outputs  of the last run
 * @property {() => unknown} [dispose]
 */

/**
 * @typedef {object} ContenderResult
 * @property {string} id
 * @property {string} label
 * @property {'simdnorm' | 'peer' | 'baseline'} kind
 * @property {'ok' | 'wrong' | 'n/a' | 'unavailable' | 'error' | 'skipped'} status
 * @property {string} [reason]        why not ok
 * @property {string} [formulation]   the formulation timed
 * @property {string} [note]          e.g. timed once only (too slow to repeat)
 * @property {string} [mode]          the mode it ran in (differs from the task's only for 'either')
 * @property {{ name: string, status: string, reason: string }[]} [rejected]  formulations not timed, and why
 * @property {Stats} [stats]
 * @property {number} [gbps]          opBytes / median
 * @property {number} [vsBound]       median / bound
 */

/**
 * @typedef {object} BoundSubject  a copy probe timed in the same rounds
 * @property {string} id
 * @property {string} label
 * @property {boolean} async
 * @property {() => unknown} run
 * @property {() => unknown} [enter]
 */

const formatMs = (ms) => `${ms.toPrecision(3)} ms`;
const message = (e) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300);

/**
 * A contender's formulations for the task. Mode 'either' (size sweep, --quick) takes its sync
 * formulations, or its async ones when it has no sync API (onnxruntime).
 */
function resolveMode(contender, task) {
  if (task.mode !== 'either') return { task, formulations: contender.formulations(task) };
  for (const mode of ['sync', 'async']) {
    const t = { ...task, mode };
    const formulations = contender.formulations(t);
    if (typeof formulations !== 'string' || mode === 'async') return { task: t, formulations };
  }
}

/**
 * What earlier tasks of the run saw of each formulation's cost, so that a call predicted to take
 * far too long is not run at all (tf.grads on tfjs-cpu takes many seconds on the big cases):
 * key contender|formulation|op → { msPerElement, from }. Only cases of at least 100 k elements
 * count, as per-call overhead dominates below that.
 */
const costs = new Map();
const PREDICT_FROM_ELEMENTS = 1e5;
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

function predictSkip(key, elements, settings) {
  const seen = costs.get(key);
  const predictedMs = seen ? seen.msPerElement * elements : 0;
  if (predictedMs <= settings.skipSlowerThanMs) return null;
  return `predicted ${seconds(predictedMs)} per call from ${seen.from} (limit ${seconds(settings.skipSlowerThanMs)})`;
}

function recordCost(key, ms, task) {
  const elements = task.data.x.length;
  if (elements >= PREDICT_FROM_ELEMENTS) costs.set(key, { msPerElement: ms / elements, from: caseName(task.case) });
}

/** A rule of the profile leaving a contender out of a task (e.g. slow ones in --quick). */
function leftOut(contender, task, settings) {
  const rule = settings.leaveOut?.find(
    (r) => r.ids.includes(contender.id) && (!r.ops || r.ops.includes(task.op)) && task.data.x.length >= (r.minElements ?? 0),
  );
  return rule?.reason ?? null;
}

/**
 * Runs a formulation once and checks its outputs against the reference.
 * @returns {Promise<{ runner?: Runner, firstCallMs?: number, rejected?: { name: string, status: string, reason: string } }>}
 */
async function validate(f, task, reference, compare) {
  let runner;
  try {
    runner = await f.prepare(task);
    await runner.enter?.();
    const t0 = performance.now();
    await runner.run();
    const firstCallMs = performance.now() - t0;
    const wrong = checkOutputs(compare, await runner.outputs(), reference, task.case.dtype);
    if (!wrong) return { runner, firstCallMs };
    await runner.dispose?.();
    return { firstCallMs, rejected: { name: f.name, status: 'wrong', reason: wrong } };
  } catch (e) {
    await runner?.dispose?.();
    return { rejected: { name: f.name, status: 'error', reason: message(e) } };
  }
}

/** One sample as statistics (a call too slow to repeat). */
const single = (ms) => ({ median: ms, min: ms, max: ms, samples: [ms], reps: 1 });

/**
 * Validates each formulation of a contender, keeps the fastest correct one warmed up for the
 * rounds. A call slower than `slowCallMs` (its checked first call, and a second one when the
 * first was under 4 × slowCallMs, as first calls can carry one-off costs) is not repeated
 * further: the faster is its one sample (`stats` set here), and the contender's other
 * formulations are not tried.
 * @returns {Promise<{ result: ContenderResult, runner?: Runner, perCallMs?: number }>}
 */
async function prepareContender(contender, task, settings, compare) {
  /** @type {any} */
  const base = { id: contender.id, label: contender.label, kind: contender.kind };
  if (contender.unavailable) return { result: { ...base, status: 'unavailable', reason: contender.unavailable } };
  const resolved = resolveMode(contender, task);
  task = resolved.task;
  const formulations = resolved.formulations;
  if (typeof formulations === 'string') return { result: { ...base, status: 'n/a', reason: formulations } };
  base.mode = task.mode;
  const excluded = leftOut(contender, task, settings);
  if (excluded) return { result: { ...base, status: 'skipped', reason: excluded } };
  const reference = task.data.reference(task.op);
  const rejected = [];
  const correct = [];
  let slow = null; // a correct formulation too slow to repeat: the others (same work) are not tried
  for (const f of formulations) {
    const key = `${contender.id}|${f.name}|${task.op}`;
    const skip = slow ? `not tried: "${slow.name}" takes ${seconds(slow.ms)} per call` : predictSkip(key, task.data.x.length, settings);
    if (skip) {
      rejected.push({ name: f.name, status: 'skipped', reason: skip });
      continue;
    }
    const v = await validate(f, task, reference, compare);
    if (v.runner && v.firstCallMs > settings.slowCallMs && v.firstCallMs <= 4 * settings.slowCallMs) {
      // A first call can carry one-off costs (a peer's thread pool starting, lazy kernels):
      // one a little over the limit is timed again before the formulation is judged too slow
      // to repeat (far over it, the call is slow for real: not repeated).
      const t0 = performance.now();
      try {
        await v.runner.run();
        v.firstCallMs = Math.min(v.firstCallMs, performance.now() - t0);
      } catch {
        // it ran once already and passed the gate: keep the first time
      }
    }
    if (v.firstCallMs !== undefined) recordCost(key, v.firstCallMs, task);
    if (v.rejected) {
      rejected.push(v.rejected);
    } else if (v.firstCallMs > settings.slowCallMs) {
      await v.runner.dispose?.();
      slow = { name: f.name, ms: v.firstCallMs };
    } else {
      // A call slower than the warm-up was its own warm-up.
      const perCallMs = v.firstCallMs > settings.warmupMs * 4 ? v.firstCallMs : await warmUp(v.runner, settings.warmupMs);
      recordCost(key, perCallMs, task);
      correct.push({ name: f.name, runner: v.runner, perCallMs });
    }
  }
  if (slow && !correct.length) {
    const note = `one sample: slower than ${seconds(settings.slowCallMs)}`;
    return { result: { ...base, status: 'ok', formulation: slow.name, note, stats: single(slow.ms), ...(rejected.length ? { rejected } : {}) } };
  }
  if (correct.length === 0) {
    // Reported by the most telling failure: a wrong result outranks a crash, a crash a skip.
    const worst = ['wrong', 'error', 'skipped'].map((s) => rejected.find((r) => r.status === s)).find(Boolean);
    const reason = formulations.length > 1 ? `${worst.name}: ${worst.reason}` : worst.reason;
    return { result: { ...base, status: /** @type {any} */ (worst.status), reason, rejected } };
  }
  if (correct.length > 1) {
    // Several correct formulations: a few interleaved rounds among them pick the fastest, by
    // each one's fastest sample (other processes only ever add time: with three rounds, a
    // median can be a disturbed sample and pick the slower formulation).
    const selection = { ...settings, rounds: 3, minRounds: 1, budgetMs: settings.budgetMs / 2 };
    const stats = await interleavedRounds(correct.map((c) => ({ subject: c.runner, perCallMs: c.perCallMs })), selection);
    correct.forEach((c, i) => (c.perCallMs = stats[i].min));
    correct.sort((a, b) => a.perCallMs - b.perCallMs);
  }
  for (const other of correct.slice(1)) {
    rejected.push({ name: other.name, status: 'slower', reason: `${formatMs(other.perCallMs)} vs ${formatMs(correct[0].perCallMs)} per call (fastest sample of the selection rounds)` });
    await other.runner.dispose?.();
  }
  const best = correct[0];
  return {
    result: { ...base, status: 'ok', formulation: best.name, ...(rejected.length ? { rejected } : {}) },
    runner: best.runner,
    perCallMs: best.perCallMs,
  };
}

/**
 * @typedef {object} TaskResult
 * @property {{ id: string, label: string, norm: string, shape: number[], layout: string, dtype: string, elements: number, normalizedShape?: number[], groups?: number }} case
 * @property {number} accesses     elements read or written per tensor element (the bound's bytes)
 * @property {string} op
 * @property {string} mode
 * @property {number} bytes         minimal bytes the op moves
 * @property {{ ms: number, via: string, copies: { id: string, label: string, stats: Stats }[] } | null} bound
 * @property {ContenderResult[]} results
 */

/**
 * Measures one task.
 * @param {Task} task
 * @param {import('./runner.mjs').Contender[]} contenders
 * @param {BoundSubject[]} copies  copy probes over a tensor of the task's size
 * @param {Settings & { slowCallMs: number, skipSlowerThanMs: number }} settings
 * @param {{ compare: object, progress?: (text: string) => void }} env
 * @returns {Promise<TaskResult>}
 */
export async function runTask(task, contenders, copies, settings, env) {
  const c = task.case;
  const prepared = [];
  for (const contender of contenders) {
    env.progress?.(`checking ${contender.label}`);
    prepared.push(await prepareContender(contender, task, settings, env.compare));
  }
  const timed = prepared.filter((p) => p.runner);
  // Contenders first, then the copy probes: stats[] follows this order.
  const entries = timed.map((p) => ({ subject: p.runner, perCallMs: p.perCallMs }));
  for (const copy of copies) entries.push({ subject: copy, perCallMs: await warmUp(copy, settings.warmupMs) });
  const stats = await interleavedRounds(entries, settings, (r, n) => env.progress?.(`round ${r}/${n}`));
  for (const p of timed) await p.runner.dispose?.();

  const copyStats = copies.map((copy, i) => ({ id: copy.id, label: copy.label, stats: stats[timed.length + i] }));
  const fastestCopy = copyStats.reduce((best, s) => (!best || s.stats.median < best.stats.median ? s : best), null);
  const bound = fastestCopy
    ? { ms: (fastestCopy.stats.median * accessesOf(c, task.op)) / COPY_ACCESSES, via: fastestCopy.label, copies: copyStats }
    : null;
  const bytes = opBytes(c, task.op);
  const results = prepared.map((p) => {
    const s = p.runner ? stats[timed.indexOf(p)] : p.result.stats;
    if (!s) return p.result;
    return { ...p.result, stats: s, gbps: bytes / s.median / 1e6, ...(bound ? { vsBound: s.median / bound.ms } : {}) };
  });
  return {
    case: {
      id: c.id,
      label: c.label,
      norm: c.norm ?? 'batchnorm',
      shape: c.shape,
      layout: c.layout,
      dtype: c.dtype,
      elements: task.data.x.length,
      ...(c.normalizedShape ? { normalizedShape: c.normalizedShape } : {}),
      ...(c.groups ? { groups: c.groups } : {}),
    },
    accesses: accessesOf(c, task.op),
    op: task.op,
    mode: task.mode,
    bytes,
    bound,
    results,
  };
}

/** The fastest ok result of a kind ('simdnorm', 'peer', 'baseline') in a task, or null. */
export function fastest(task, kind) {
  return task.results
    .filter((r) => r.kind === kind && r.status === 'ok')
    .reduce((best, r) => (!best || r.stats.median < best.stats.median ? r : best), null);
}
