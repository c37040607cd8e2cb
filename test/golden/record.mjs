#!/usr/bin/env node
// Re-records test/golden/golden.json from the kernels of the working tree: runs
// test/golden/golden.test.ts in its recording mode (SIMDNORM_GOLDEN_RECORD=1). Native levels
// not seen on this machine keep their recordings. When it is legitimate: see golden.test.ts.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const r = spawnSync('npx', ['vitest', 'run', 'test/golden/golden.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, SIMDNORM_GOLDEN_RECORD: '1' },
});
process.exit(r.status ?? 1);
