// Starts the threaded wasm backend (its workers), makes calls that use them, asks for more
// threads, prints what backends() says and returns: the process must then exit by itself.
import * as simdnorm from '../../../dist/index.js';
import { loadedWasmBackend } from '../../../dist/backends/wasm.js';

simdnorm.useBackend('wasm');
simdnorm.setThreads(4);
const shape = [8, 16, 64, 64];
const n = shape.reduce((a, b) => a * b);
const x = new Float32Array(n);
for (let i = 0; i < n; i++) x[i] = (i % 97) * 0.01;
const backend = loadedWasmBackend();
let joined = false;
for (let i = 0; i < 50 && !joined; i++) {
  const before = backend.helperJoins?.() ?? 0;
  simdnorm.batchNormTrain({ x, shape });
  joined = (backend.helperJoins?.() ?? 0) > before;
  if (!joined) await new Promise((r) => setTimeout(r, 20));
}
const details = simdnorm.backends().find((b) => b.name === 'wasm').details;
console.log(JSON.stringify({ ...details, joined }));
