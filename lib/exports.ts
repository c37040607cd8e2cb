/** Everything both entry points (Node and browser) export; each entry adds its backends. */
export {
  batchNormBackward,
  batchNormBackwardAsync,
  batchNormInfer,
  batchNormInferAsync,
  batchNormTrain,
  batchNormTrainAsync,
  groupNorm,
  groupNormAsync,
  groupNormBackward,
  groupNormBackwardAsync,
  instanceNorm,
  instanceNormAsync,
  instanceNormBackward,
  instanceNormBackwardAsync,
  layerNorm,
  layerNormAsync,
  layerNormBackward,
  layerNormBackwardAsync,
  moments,
  rmsNorm,
  rmsNormAsync,
  rmsNormBackward,
  rmsNormBackwardAsync,
  updateRunningStats,
} from './api.js';
export type * from './api.js';
export { BatchNorm, type BatchNormConstructor, type BatchNormOptions, type BatchNormOptionsFor, type BatchNormState } from './layer.js';
export { GroupNorm, type GroupNormConstructor, type GroupNormLayerOptions, type GroupNormState } from './layers/groupnorm.js';
export {
  InstanceNorm,
  type InstanceNormConstructor,
  type InstanceNormLayerOptions,
  type InstanceNormState,
  type InstanceNormStateOf,
} from './layers/instancenorm.js';
export { LayerNorm, type LayerNormConstructor, type LayerNormLayerOptions, type LayerNormState } from './layers/layernorm.js';
export { RMSNorm, type RMSNormConstructor, type RMSNormLayerOptions, type RMSNormState } from './layers/rmsnorm.js';
export {
  backends,
  currentBackend,
  ready,
  registerBackend,
  setThreads,
  useBackend,
  withBackend,
  type BackendStatus,
} from './registry.js';
export { verify, type BackendVerdict, type VerifyOptions, type VerifyReport } from './verify.js';
export type { Backend, BackendDetails, BackendName, BackendProvider } from './backend.js';
export { foldBatchNorm, batchNormScaleShift, type FoldLayer, type BatchNormParameters, type ScaleShift, type WeightLayout } from './ops/fold.js';
export {
  recomputeRunningStats,
  recomputeRunningStatsSync,
  type RecomputeBatch,
  type RecomputeMode,
  type RecomputeOptions,
  type RecomputeSummary,
  type RecomputeTarget,
} from './ops/recompute.js';
export type { RenormClip } from './layer.js';
