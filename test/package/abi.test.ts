/**
 * The ABI is stated once (native/abi/table.mjs): the C header, the TypeScript constants and the
 * wasm export list generated from it are up to date, and the TS constants agree with the table.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { ERROR_NAMES, Flag, Phase, ROLES, SCALAR_COUNT, SLOT_COUNT, Slot, WASM_EXPORTS } from '../../lib/core/abi.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

it('the files generated from native/abi/table.mjs are up to date', () => {
  // exits 1 naming the stale file when one is
  execFileSync(process.execPath, ['native/abi/generate.mjs', '--check'], { cwd: root, stdio: 'pipe' });
});

it('the generated constants describe the table', async () => {
  type Entry = [string, number];
  const table = (await import(pathToFileURL(`${root}native/abi/table.mjs`).href)) as {
    scalars: Entry[];
    slots: Entry[];
    phases: Entry[];
    flags: Entry[];
    errors: Entry[];
    wasmExports: string[];
  };
  expect(SCALAR_COUNT).toBe(table.scalars.length);
  expect(SLOT_COUNT).toBe(table.slots.length);
  expect(Object.keys(Phase)).toEqual(table.phases.map((p) => p[0]));
  expect(Object.keys(Slot)).toEqual(table.slots.map((s) => s[0]));
  expect(Object.values(Flag)).toEqual(table.flags.map((f) => f[1]));
  expect(ROLES).toHaveLength(table.phases.length);
  expect(Object.values(ERROR_NAMES)).toEqual(table.errors.map((e) => e[0]));
  expect(WASM_EXPORTS).toEqual(table.wasmExports);
});
