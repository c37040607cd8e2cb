/** The `js` backend: the float64 reference (lib/reference.ts), available everywhere. */
import type { Backend, BackendProvider } from '../backend.js';
import * as reference from '../reference.js';

export const jsBackend: Backend = {
  name: 'js',
  train: reference.train,
  infer: reference.infer,
  backward: reference.backward,
  moments: reference.moments,
  updateRunningStats: reference.updateRunningStats,
  details: () => ({ simd: 'none', threads: 1 }),
};

export const jsProvider: BackendProvider = {
  name: 'js',
  priority: 10,
  loadSync: () => jsBackend,
  load: async () => jsBackend,
};
