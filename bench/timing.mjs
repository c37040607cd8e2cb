/**
 * Timing and statistics: warm-up with calibration, interleaved rounds, medians with min–max.
 * Works in Node and in browsers (performance.now only).
 *
 * A subject is { run(): void | Promise<void>, async: boolean, enter?(): unknown }. `enter` is
 * called (untimed) before each sample: it selects the subject's backend or thread count, which
 * other subjects of the same round may have changed.
 */

const now = () => performance.now();

/**
 * @typedef {object} Settings
 * @property {number} rounds     interleaved rounds (each subject takes one sample per round)
 * @property {number} minRounds  rounds kept for a slow subject
 * @property {number} sampleMs   target duration of one sample: fast calls are repeated to reach it
 * @property {number} warmupMs   warm-up per subject before calibration
 * @property {number} budgetMs   time one subject may take in one task; slow subjects get fewer rounds
 * @property {number} [slowCallMs]        (runner) a call slower than this is timed once only
 * @property {number} [skipSlowerThanMs]  (runner) a call predicted slower than this is not run
 * @property {{ ids: string[], ops?: string[], minElements?: number, reason: string }[]} [leaveOut]  (runner) contenders left out
 */

/**
 * @typedef {object} Stats  per-call times in milliseconds
 * @property {number} median
 * @property {number} min
 * @property {number} max
 * @property {number[]} samples  per-call time of each sample, in round order
 * @property {number} reps       calls per sample
 */

/** Runs `reps` calls back to back; returns the time per call in ms. */
export async function sample(subject, reps) {
  await subject.enter?.();
  const t0 = now();
  if (subject.async) {
    for (let i = 0; i < reps; i++) await subject.run();
  } else {
    for (let i = 0; i < reps; i++) subject.run();
  }
  return (now() - t0) / reps;
}

/**
 * Warms a subject up (JIT, caches, thread pools, allocator) for about `warmupMs` and estimates
 * its time per call; returns that estimate in ms.
 */
export async function warmUp(subject, warmupMs) {
  let reps = 1;
  let spent = 0;
  let perCall = await sample(subject, 1);
  spent += perCall;
  while (spent < warmupMs) {
    reps = Math.min(reps * 2, Math.max(1, Math.ceil((warmupMs - spent) / Math.max(perCall, 1e-4))));
    perCall = await sample(subject, reps);
    spent += perCall * reps;
  }
  return perCall;
}

/** Calls per sample and rounds for a subject whose call takes `perCallMs`. */
export function plan(perCallMs, settings) {
  const reps = Math.max(1, Math.round(settings.sampleMs / Math.max(perCallMs, 1e-6)));
  const sampleMs = reps * perCallMs;
  const rounds = Math.max(settings.minRounds, Math.min(settings.rounds, Math.floor(settings.budgetMs / sampleMs)));
  return { reps, rounds };
}

/**
 * Interleaved rounds: in round r every subject takes one sample, in an order rotated by r, so
 * that drift (thermal, other processes, page cache) spreads over all subjects alike.
 * `subjects` carry their `perCallMs` from warm-up. Returns one Stats per subject.
 * @param {{ subject: object, perCallMs: number }[]} entries
 * @param {Settings} settings
 * @param {(round: number, rounds: number) => void} [onRound]
 * @returns {Promise<Stats[]>}
 */
export async function interleavedRounds(entries, settings, onRound) {
  const plans = entries.map((e) => plan(e.perCallMs, settings));
  const samples = entries.map(() => /** @type {number[]} */ ([]));
  const rounds = Math.max(0, ...plans.map((p) => p.rounds));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < entries.length; k++) {
      const i = (k + r) % entries.length;
      if (r < plans[i].rounds) samples[i].push(await sample(entries[i].subject, plans[i].reps));
    }
    onRound?.(r + 1, rounds);
  }
  return samples.map((s, i) => ({ ...summarize(s), samples: s, reps: plans[i].reps }));
}

/** Median, min and max of a list of numbers. */
export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n === 0 ? NaN : n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return { median, min: sorted[0] ?? NaN, max: sorted[n - 1] ?? NaN };
}
