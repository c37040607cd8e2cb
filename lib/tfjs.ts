/**
 * `simdnorm/tfjs` (Node): importing it makes simdnorm the FusedBatchNorm kernel of TensorFlow.js's
 * cpu and wasm backends (those loaded before it) and the FusedBatchNorm gradient
 * (lib/tfjs/plugin.ts), and runs tf.layers.batchNormalization's training path as one simdnorm
 * kernel (lib/tfjs/layer.ts). README "With TensorFlow.js".
 */
import './index.js';
import { register } from './tfjs/plugin.js';

export * from './tfjs/plugin.js';
export { currentBackend, ready } from './index.js';

register();
