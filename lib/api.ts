/** The public functions, one file per op family under lib/ops/. */
export * from './ops/batchnorm.js';
export * from './ops/layernorm.js';
export * from './ops/rmsnorm.js';
export * from './ops/groupnorm.js';
export * from './ops/instancenorm.js';
