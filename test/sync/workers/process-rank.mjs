// A child_process rank (test/sync/workers.test.ts), forked with IPC ('advanced' serialization for
// the test's own messages): the first message is its configuration; the channel collective runs
// over `process`; the results go back as a message.
import * as simdnorm from '../../../dist/index.js';
import { runRank } from './rank-core.mjs';

process.once('message', async (cfg) => {
  const collective = simdnorm.channelCollective(process, { rank: cfg.rank, size: cfg.size, timeout: cfg.timeout });
  const results = await runRank(simdnorm, collective, cfg);
  process.send({ results }, () => process.disconnect());
});
