/** The public functions, one file per op family under lib/ops/. */
// BatchNorm's by name: lib/ops/batchnorm.ts also holds the BatchNorm layer's entry points (layerTrain, …), which are not public.
export {
  batchNormTrain,
  batchNormTrainAsync,
  batchNormInfer,
  batchNormInferAsync,
  batchNormBackward,
  batchNormBackwardAsync,
  moments,
  updateRunningStats,
} from './ops/batchnorm.js';
export type {
  Activation,
  BackwardInputs,
  BackwardOptions,
  BackwardOut,
  BackwardResult,
  FamilyOptions,
  FloatArray,
  InferInputs,
  InferOptions,
  Layout,
  MomentsInputs,
  MomentsResult,
  TrainInputs,
  TrainOptions,
  TrainOut,
  TrainResult,
  UpdateRunningStatsInputs,
  UpdateRunningStatsOptions,
  UpdateRunningStatsResult,
} from './ops/batchnorm.js';
export * from './ops/layernorm.js';
export * from './ops/rmsnorm.js';
export * from './ops/groupnorm.js';
export * from './ops/instancenorm.js';
