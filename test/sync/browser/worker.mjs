// A Web Worker rank of test/sync/browser.test.ts: the SharedArrayBuffer collective (cfg.group) or
// the channel collective over `self` (hub on the page); syncBatchNormTrain + syncBatchNormBackward
// on its shard, results posted back (or the error, with the running stats to check they are untouched).
import * as simdnorm from '/dist/browser.js';

self.addEventListener('message', async (e) => {
  const cfg = e.data;
  if (!cfg || cfg.tag !== 'config') return;
  const runningMean = cfg.runningMean.slice();
  const runningVar = cfg.runningVar.slice();
  try {
    await simdnorm.ready();
    simdnorm.useBackend(cfg.backend);
    const collective = cfg.group
      ? simdnorm.sharedCollective(cfg.group, cfg.rank, { timeout: cfg.timeout })
      : simdnorm.channelCollective(self, { rank: cfg.rank, size: cfg.size, timeout: cfg.timeout });
    if (cfg.stall) return; // never arrives
    const t = await simdnorm.syncBatchNormTrain({ x: cfg.x, shape: cfg.shape, gamma: cfg.gamma, beta: cfg.beta, runningMean, runningVar }, cfg.options, collective);
    const g = await simdnorm.syncBatchNormBackward({ dy: cfg.dy, x: cfg.x, shape: cfg.shape, mean: t.mean, invStd: t.invStd, gamma: cfg.gamma }, cfg.options, collective);
    self.postMessage({ tag: 'result', y: t.y, mean: t.mean, invStd: t.invStd, runningMean, runningVar, dx: g.dx, dgamma: g.dgamma, dbeta: g.dbeta });
  } catch (err) {
    self.postMessage({ tag: 'result', error: `${err.name}: ${err.message}`, ranks: err.ranks ?? null, untouched: runningMean.every((v, i) => Object.is(v, cfg.runningMean[i])) && runningVar.every((v, i) => Object.is(v, cfg.runningVar[i])) });
  }
});
