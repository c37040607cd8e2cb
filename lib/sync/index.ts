/** SyncBatchNorm's exchange: the Collective seam and the collectives the package ships (README "SyncBatchNorm"). */
export { CollectiveError, createLocalCollectives, type Collective, type LocalCollectiveOptions } from './collective.js';
export { createSharedCollectiveGroup, markRankFailed, sharedCollective, type SharedCollectiveGroup } from './shared.js';
export { channelCollective, createCollectiveHub, type CollectiveHub, type MessageChannelLike } from './channel.js';
export { syncBatchNormBackward, syncBatchNormTrain, type SyncTrainResult } from '../ops/syncbatchnorm.js';
export { SyncBatchNorm, type SyncBatchNormOptions } from '../layers/syncbatchnorm.js';
