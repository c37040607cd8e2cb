// A worker_threads rank (test/sync/workers.test.ts): the SharedArrayBuffer collective (workerData.group)
// or the channel collective over parentPort (no group); runs rank-core.mjs and posts the results.
import { parentPort, workerData } from 'node:worker_threads';
import * as simdnorm from '../../../dist/index.js';
import { runRank } from './rank-core.mjs';

const { group, rank, size, timeout } = workerData;
const collective = group
  ? simdnorm.sharedCollective(group, rank, { timeout })
  : simdnorm.channelCollective(parentPort, { rank, size, timeout });
const results = await runRank(simdnorm, collective, workerData);
parentPort.postMessage({ results });
