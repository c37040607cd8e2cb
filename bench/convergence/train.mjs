/**
 * One training run (SGD on the training digits, evaluated on the test digits at fixed steps) and
 * the three experiments built from runs. Pure computation over `ctx = { api, Random }` (the
 * library and its seeded generator, passed in by the Node driver, the browser page or the test).
 */
import { backward, buildNet, forward, NORMS, sgdStep, softmaxCrossEntropy } from './nets.mjs';
import { PIXELS } from './data.mjs';

/** The profiles: `full` makes the committed charts, `quick` is `--quick` (CI), `test` the vitest check. */
export const PROFILES = {
  full: {
    // (a)+(c): the paper's Figure 1 MLP, batch 60 (the paper's), SGD; the paper trains 50,000 steps.
    mlp: { batch: 60, steps: 5000, evalEvery: 100, lr: 0.5, lrMultipliers: [1, 5] },
    // (b): the conv net and the MLP, the same number of epochs at every batch size, lr scaled with the batch.
    conv: { epochs: 3, batches: [32, 8, 4, 2], lr32: 0.1, evals: 6, norms: NORMS },
    mlpBatch: { epochs: 3, batches: [32, 8, 4, 2], lr32: 0.25, evals: 6, norms: NORMS },
  },
  quick: {
    mlp: { batch: 60, steps: 600, evalEvery: 50, lr: 0.5, lrMultipliers: [1, 5] },
    conv: { epochs: 0.25, batches: [32, 2], lr32: 0.1, evals: 2, norms: NORMS },
    mlpBatch: { epochs: 0.25, batches: [32, 2], lr32: 0.25, evals: 2, norms: NORMS },
  },
};

/**
 * What test/convergence trains on every backend: the quick configuration's networks for a fixed
 * number of steps (the MLP with BN at the quick run's learning rate; the conv net with each
 * normalization at batch 8, ghost BN as batch 8 in virtual batches of 2).
 */
export function testRuns(seed = 1) {
  const { batch, lr } = PROFILES.quick.mlp;
  const mlp = [{ experiment: 'a', net: 'mlp', norm: 'bn', batch, lr, lrMultiplier: 1, steps: 150, evalAt: [0, 50, 100, 150], seed }];
  const conv = NORMS.map((norm) => ({
    experiment: 'b',
    net: 'conv',
    norm,
    batchSize: norm === 'ghost' ? 2 : 8,
    batch: 8,
    ...(norm === 'ghost' ? { virtualBatchSize: 2 } : {}),
    lr: (PROFILES.quick.conv.lr32 * 8) / 32,
    steps: 60,
    evalAt: [0, 60],
    seed,
  }));
  return [...mlp, ...conv];
}

/** The paper's ramp of Batch Renorm's limits (rmax 1 → 3, dmax 0 → 5), scaled to a run of `steps` steps. */
export function renormSchedule(steps) {
  const ramp = (step, from, to) => Math.min(1, Math.max(0, (step - from * steps) / ((to - from) * steps)));
  return (step) => ({ rmax: 1 + 2 * ramp(step, 0.05, 0.3), dmax: 5 * ramp(step, 0.05, 0.2) });
}

/** The p-th percentile (nearest rank) of sorted values. */
const percentile = (sorted, p) => sorted[Math.round((p / 100) * (sorted.length - 1))];

/**
 * Test loss and accuracy in eval mode (BatchNorm on its running statistics), and, for the MLP,
 * the 15th/50th/85th percentiles over the test digits of one sigmoid input per hidden layer
 * (unit `probeUnit`; Figure 1(b,c) of the BatchNorm paper).
 */
export function evaluate(net, test, probeUnit = 0, chunk = 500) {
  let loss = 0;
  let correct = 0;
  const probed = net.probes.map(() => []);
  for (let start = 0; start < test.n; start += chunk) {
    const n = Math.min(chunk, test.n - start);
    const x = test.x.subarray(start * PIXELS, (start + n) * PIXELS);
    const logits = forward(net, x, n, false, (k, y) => {
      const p = net.probes.indexOf(k);
      if (p < 0) return;
      const width = y.length / n;
      for (let s = 0; s < n; s++) probed[p].push(y[s * width + probeUnit]);
    });
    const r = softmaxCrossEntropy(logits, test.label.subarray(start, start + n), n, false);
    loss += r.loss * n;
    correct += r.correct;
  }
  const percentiles = probed.map((values) => {
    const sorted = Float64Array.from(values).sort();
    return [15, 50, 85].map((p) => percentile(sorted, p));
  });
  return { testLoss: loss / test.n, testAccuracy: correct / test.n, ...(net.probes.length ? { percentiles } : {}) };
}

/**
 * Trains one network. `run`: { net, norm, batch, lr, steps, evalAt: step numbers, seed,
 * virtualBatchSize? }. Returns { curve: [{ step, testAccuracy, testLoss, trainLoss, percentiles? }],
 * final }. `onEval(point, run)` is called at each evaluation (progress, live charts); `shouldStop()`
 * ends the run early (the page's stop button).
 */
export function trainRun(ctx, data, run, { onEval, shouldStop } = {}) {
  const spec = {
    net: run.net,
    norm: run.norm,
    seed: run.seed,
    virtualBatchSize: run.virtualBatchSize ?? null,
    renorm: run.norm === 'renorm' ? renormSchedule(run.steps) : null,
  };
  const net = buildNet(ctx.api, ctx.Random, spec);
  const order = new ctx.Random(run.seed + 1);
  const { train, test } = data;
  const perm = Uint32Array.from({ length: train.n }, (_, i) => i);
  let cursor = train.n;
  const x = new Float32Array(run.batch * PIXELS);
  const labels = new Uint8Array(run.batch);
  const evalAt = new Set(run.evalAt);
  const curve = [];
  let lossSum = 0;
  let lossCount = 0;
  const record = (step) => {
    const point = { step, ...evaluate(net, test), trainLoss: lossCount ? lossSum / lossCount : null };
    lossSum = lossCount = 0;
    curve.push(point);
    onEval?.(point, run);
  };
  if (evalAt.has(0)) record(0);
  for (let step = 1; step <= run.steps; step++) {
    if (cursor + run.batch > train.n) {
      // a new epoch: a seeded Fisher–Yates shuffle; the last partial batch is dropped
      for (let i = train.n - 1; i > 0; i--) {
        const j = Math.floor(order.next() * (i + 1));
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
      cursor = 0;
    }
    for (let s = 0; s < run.batch; s++) {
      const k = perm[cursor++];
      x.set(train.x.subarray(k * PIXELS, (k + 1) * PIXELS), s * PIXELS);
      labels[s] = train.label[k];
    }
    const logits = forward(net, x, run.batch, true);
    const r = softmaxCrossEntropy(logits, labels, run.batch, true);
    lossSum += r.loss;
    lossCount++;
    backward(net, r.dlogits);
    sgdStep(net, run.lr);
    if (evalAt.has(step)) record(step);
    if (shouldStop?.()) break;
  }
  return { ...run, curve, final: curve[curve.length - 1] };
}

/** Evaluation steps: 0, every `every`, and the last. */
const evalSteps = (steps, every) => [...new Set([...Array.from({ length: Math.floor(steps / every) + 1 }, (_, k) => k * every), steps])];

/** The runs of experiments (a) and (c): the MLP with and without BN at the base lr and 5×. */
export function mlpRuns(profile, seed = 1) {
  const { batch, steps, evalEvery, lr, lrMultipliers } = profile.mlp;
  return lrMultipliers.flatMap((m) =>
    ['none', 'bn'].map((norm) => ({ experiment: 'a', net: 'mlp', norm, batch, lr: lr * m, lrMultiplier: m, steps, evalAt: evalSteps(steps, evalEvery), seed })),
  );
}

/**
 * The runs of experiment (b), per normalization and batch size b, for the conv net (`profile.conv`)
 * and the Figure 1 MLP (`profile.mlpBatch`): the same epochs at every b, lr = lr32·b/32 (the
 * linear scaling rule, as the GroupNorm paper). Ghost BatchNorm keeps the batch at 32 (its
 * gradient) and takes b as its virtual batch (its statistics): the GroupNorm paper's "BN batch
 * size per GPU" setting.
 */
export function batchRuns(profile, trainCount, seed = 1) {
  return [
    ['conv', profile.conv],
    ['mlp', profile.mlpBatch],
  ].flatMap(([net, settings]) => {
    if (!settings) return [];
    const { epochs, batches, lr32, evals, norms } = settings;
    return norms.flatMap((norm) =>
      batches.map((b) => {
        const batch = norm === 'ghost' ? 32 : b;
        const steps = Math.max(1, Math.round((epochs * trainCount) / batch));
        const every = Math.max(1, Math.ceil(steps / evals));
        return {
          experiment: 'b',
          net,
          norm,
          batchSize: b,
          batch,
          ...(norm === 'ghost' ? { virtualBatchSize: b } : {}),
          lr: (lr32 * batch) / 32,
          steps,
          evalAt: evalSteps(steps, every),
          seed,
        };
      }),
    );
  });
}

/** The first step at which test accuracy reached `level` (null: never). */
export function stepsTo(curve, level) {
  return curve.find((p) => p.testAccuracy >= level)?.step ?? null;
}
