// One rank of the SyncBatchNorm worker suites (test/sync/workers.test.ts), shared by the
// worker_threads and child_process entries: runs every case's syncBatchNormTrain and
// syncBatchNormBackward `repeats` times (random delays before each call from the second repeat on,
// so ranks arrive in shuffled order) and returns the results.
//
// behaviour: 'normal'; 'stall' (never calls: stays alive without arriving); 'exit' (exits with
// code 3 before its first call); 'throw' (its first call has an invalid gamma).
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function runRank(simdnorm, collective, cfg) {
  simdnorm.useBackend(cfg.backend);
  if (cfg.behaviour === 'stall') {
    await sleep(60_000);
    return [];
  }
  if (cfg.behaviour === 'exit') process.exit(3);
  const out = [];
  for (const k of cfg.cases) {
    const runs = [];
    for (let repeat = 0; repeat < cfg.repeats; repeat++) {
      const delay = () => (repeat === 0 ? 0 : Math.floor(Math.random() * cfg.maxDelay));
      const runningMean = k.runningMean.slice();
      const runningVar = k.runningVar.slice();
      const options = k.options;
      await sleep(delay());
      const inputs = { x: k.x, shape: k.shape, gamma: cfg.behaviour === 'throw' ? 'not an array' : k.gamma, beta: k.beta, runningMean, runningVar };
      let t;
      try {
        t = await simdnorm.syncBatchNormTrain(inputs, options, collective);
      } catch (e) {
        return [{ error: `${e.name}: ${e.message}`, ranks: e.ranks ?? null, runningMean, runningVar, before: [k.runningMean, k.runningVar] }];
      }
      await sleep(delay());
      const g = await simdnorm.syncBatchNormBackward(
        { dy: k.dy, x: k.x, shape: k.shape, mean: t.mean, invStd: t.invStd, gamma: k.gamma, y: k.relu ? t.y : undefined },
        options,
        collective,
      );
      runs.push({ y: t.y, mean: t.mean, invStd: t.invStd, runningMean, runningVar, numBatchesTracked: t.numBatchesTracked, count: t.count, dx: g.dx, dgamma: g.dgamma, dbeta: g.dbeta });
    }
    out.push(runs);
  }
  return out;
}
