/**
 * The benchmark suite, shared by the Node driver (run.mjs) and the browser page: the profiles
 * (full, quick, browser), the bandwidth probe, the cases × ops × modes, and the size sweep.
 * The environment passes in the simdnorm API, its compare and Random modules, the contenders and
 * the native addon (for the copy probes; null for the JS copy).
 */
import { copySubjects, probeBandwidth } from './bandwidth.mjs';
import { runTask, fastest } from './runner.mjs';
import { CASES, FAMILY_CASES, OP_LABEL, SMALL_SHAPE_NOTE, SWEEP_SHAPE_NOTE, bytesPerElement, elementsOf, makeCaseData, opsOf, smallCases, sweepCases } from './tasks.mjs';
import { formatRatio, formatTime } from './report.mjs';

/** Contenders of the size sweep (a subset, to keep the full run near ten minutes). */
const SWEEP_CONTENDERS = ['native-', 'wasm', 'plain-js', 'tfjs-cpu', 'tfjs-wasm', 'onnxruntime-node'];

/** Contenders of the small tensors: every simdnorm backend and the plain JS loop. */
const SMALL_CONTENDERS = ['native-', 'wasm', 'js', 'plain-js'];
/** The small tensors' batch sizes N of [N, 4, 5, 5]: 100 to 64,000 elements. */
const SMALL_BATCHES = [1, 2, 4, 10, 20, 40, 100, 200, 400, 640];
const SMALL = { batches: SMALL_BATCHES, ops: ['infer', 'train', 'backward'] };
const SMALL_SETTINGS = { rounds: 7, minRounds: 3, sampleMs: 10, warmupMs: 30, budgetMs: 300, slowCallMs: 500, skipSlowerThanMs: 3000 };

/**
 * The family's cases (LayerNorm, RMSNorm, GroupNorm, InstanceNorm; forward and backward) in run
 * order, smaller first: a formulation's cost on one predicts which calls would be too slow later.
 */
const FAMILY_RUN_ORDER = [
  'ln-64x128', 'rms-64x128', 'gn-2x64x32x32',
  'ln-8192x768', 'rms-8192x768', 'in-16x3x224x224', 'in-1x64x256x256',
  'ln-2048x4096', 'rms-2048x4096', 'gn-8x320x64x64', 'gn-nhwc-8x64x64x320',
];
if (FAMILY_RUN_ORDER.length !== FAMILY_CASES.length || FAMILY_CASES.some((k) => !FAMILY_RUN_ORDER.includes(k))) {
  throw new Error('suite.mjs: FAMILY_RUN_ORDER must list every family case of tasks.mjs');
}

/** --quick (and the browser page's ?quick): each family op once, forward and backward. */
const FAMILY_QUICK = ['ln-8192x768', 'rms-64x128', 'gn-2x64x32x32', 'in-16x3x224x224'];

export const PROFILES = {
  full: {
    // Smaller cases first: their costs predict which calls would be too slow on the big ones.
    cases: ['tiny', 'nc', 'small', 'nc64', 'nchw', 'nhwc', ...FAMILY_RUN_ORDER],
    modes: ['sync', 'async'],
    sweep: { exponents: [10, 12, 14, 16, 18, 20, 22, 24, 26], ops: ['infer', 'train'] },
    probeBytes: 256 * 2 ** 20,
    settings: { rounds: 9, minRounds: 3, sampleMs: 25, warmupMs: 50, budgetMs: 1000, slowCallMs: 1500, skipSlowerThanMs: 30000 },
    sweepSettings: { rounds: 5, minRounds: 3, sampleMs: 20, warmupMs: 30, budgetMs: 600, slowCallMs: 1500, skipSlowerThanMs: 10000 },
    small: SMALL,
    smallSettings: SMALL_SETTINGS,
  },
  quick: {
    cases: ['tiny', 'nchw', 'nhwc', ...FAMILY_QUICK],
    modes: ['either'], // each contender once per op: sync, or async where it has only async
    sweep: null,
    small: { batches: [1, 10, 100, 640], ops: SMALL.ops },
    smallSettings: { ...SMALL_SETTINGS, rounds: 4, sampleMs: 5, warmupMs: 15, budgetMs: 100 },
    probeBytes: 64 * 2 ** 20,
    settings: {
      rounds: 4, minRounds: 2, sampleMs: 8, warmupMs: 12, budgetMs: 150, slowCallMs: 500, skipSlowerThanMs: 3000,
      leaveOut: [
        { ids: ['js'], minElements: 1e6, reason: 'left out of --quick on large tensors (slow); see the full run' },
        { ids: ['tfjs-cpu', 'tfjs-wasm'], ops: ['backward'], minElements: 1e6, reason: 'left out of --quick on large tensors (tf.grads takes seconds); see the full run' },
        { ids: ['tfjs-cpu'], ops: ['train', 'forward'], minElements: 1e6, reason: 'left out of --quick on large tensors (tf.moments takes seconds); see the full run' },
      ],
    },
  },
  browser: {
    cases: ['tiny', 'nc', 'small', 'nchw', 'nhwc', 'ln-64x128', 'gn-2x64x32x32', 'ln-8192x768', 'rms-8192x768', 'in-16x3x224x224', 'gn-8x320x64x64'],
    modes: ['either'],
    sweep: null,
    small: SMALL,
    smallSettings: SMALL_SETTINGS,
    probeBytes: 64 * 2 ** 20,
    settings: { rounds: 5, minRounds: 2, sampleMs: 15, warmupMs: 20, budgetMs: 400, slowCallMs: 1000, skipSlowerThanMs: 10000 },
  },
};

/** The cases of --quick (the browser page's ?quick uses them too). */
export const QUICK_CASES = PROFILES.quick.cases;

/** One line of progress after a task: best simdnorm, best peer, the bound. */
function taskLine(t) {
  const s = fastest(t, 'simdnorm');
  const p = fastest(t, 'peer');
  const parts = [s ? `${s.label} ${formatTime(s.stats.median)}` : t.results.some((r) => r.kind === 'simdnorm' && r.status === 'wrong') ? 'simdnorm: none correct' : 'simdnorm: none ran'];
  parts.push(p ? `best peer ${p.label} ${formatTime(p.stats.median)}${s ? ` (${formatRatio(p.stats.median / s.stats.median)})` : ''}` : 'no correct peer');
  if (t.bound && s) parts.push(`bound ${formatTime(t.bound.ms)} (${(s.stats.median / t.bound.ms).toFixed(2)}×)`);
  const bad = t.results.filter((r) => r.status === 'wrong' || r.status === 'error').map((r) => `${r.label} ${r.status.toUpperCase()}`);
  if (bad.length) parts.push(bad.join(', '));
  return parts.join(' · ');
}

/**
 * Runs a profile.
 * @param {object} env
 * @param {object} env.api        the simdnorm module
 * @param {object} env.compare    dist/compare.js
 * @param {Function} env.Random   dist/random.js's Random
 * @param {import('./runner.mjs').Contender[]} env.contenders
 * @param {object | null} env.native   the raw addon (copy probes) or null
 * @param {number} env.threads    hardware threads (the multi-threaded copy)
 * @param {(line: string, transient?: boolean) => void} env.log   transient lines may be overwritten
 * @param {string[]} [env.only]   run only these case keys (development)
 */
export async function runSuite(profile, env) {
  const { api, compare, Random, contenders, native, threads, log } = env;
  const started = performance.now();
  log(`bandwidth probe (${profile.probeBytes / 2 ** 20} MiB arrays)…`, true);
  const probes = await probeBandwidth(native, profile.probeBytes, threads, profile.settings);
  log(`bandwidth: ${probes.map((p) => `${p.label} ${p.gbps.toFixed(1)} GB/s`).join(', ')}`);

  const cases = (env.only ?? profile.cases).map((key) => CASES[key]).filter(Boolean);
  const plan = [];
  for (const c of cases) for (const op of opsOf(c)) for (const mode of profile.modes) plan.push({ c, op, mode, settings: profile.settings, contenders });
  if (profile.sweep && !env.only) {
    // the sweep times zero-copy wasm only (the copies' cost shows in the cases and the small tensors)
    const subset = contenders.filter((k) => SWEEP_CONTENDERS.some((prefix) => k.id.startsWith(prefix)) && !k.id.startsWith('wasm-copy'));
    for (const c of sweepCases(profile.sweep.exponents)) {
      for (const op of profile.sweep.ops) plan.push({ c, op, mode: 'either', settings: profile.sweepSettings, contenders: subset, sweep: true });
    }
  }

  if (profile.small && !env.only) {
    const subset = contenders.filter((k) => SMALL_CONTENDERS.some((prefix) => k.id.startsWith(prefix)));
    for (const c of smallCases(profile.small.batches)) {
      for (const op of profile.small.ops) plan.push({ c, op, mode: 'either', settings: profile.smallSettings, contenders: subset, small: true });
    }
  }

  const tasks = [];
  const sweep = [];
  const small = [];
  let data = null;
  for (const [i, step] of plan.entries()) {
    const { c, op, mode } = step;
    const title = `[${i + 1}/${plan.length}] ${c.label} ${c.dtype} · ${OP_LABEL[op]} · ${mode}`;
    if (data?.caseId !== c.id) {
      data = null; // let the previous case's arrays go before making the next
      log(`${title}: generating data…`, true);
      data = { caseId: c.id, values: makeCaseData(api, c, Random), copies: copySubjects(native, elementsOf(c) * bytesPerElement(c), threads) };
    }
    const t0 = performance.now();
    const result = await runTask({ case: c, op, mode, data: data.values }, step.contenders, data.copies, step.settings, {
      compare,
      progress: (what) => log(`${title}: ${what}`, true),
    });
    log(`${title} — ${taskLine(result)} · ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    (step.sweep ? sweep : step.small ? small : tasks).push(result);
  }
  return {
    bandwidth: { bytes: profile.probeBytes, probes: probes.map(({ id, label, gbps, stats }) => ({ id, label, gbps, stats })) },
    copyProbe: native ? `native copy on 1 and ${threads} threads` : 'a JS copy (TypedArray.set; the native addon is missing)',
    tasks,
    sweep: sweep.length ? { shapeNote: SWEEP_SHAPE_NOTE, mode: 'sync where the contender has it, else async', tasks: sweep } : null,
    small: small.length ? { shapeNote: SMALL_SHAPE_NOTE, mode: 'sync where the contender has it, else async', tasks: small } : null,
    seconds: (performance.now() - started) / 1000,
  };
}
