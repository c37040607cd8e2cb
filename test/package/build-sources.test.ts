/**
 * The kernel source list is written once for cmake and emscripten (native/kernels/kernels.cmake;
 * wasm/wasm.cmake includes it) and once more for node-gyp (binding.gyp, which cannot read it);
 * CMakeLists.txt and binding.gyp each list the binding's sources (native/node), and wasm.cmake
 * the wasm exports that wasm/build.mjs requires of the artifacts (issue 13, item 6). This test
 * keeps them in agreement with each other and with the files on disk: a .cpp added to
 * native/kernels or native/node, or a wasm export added, fails here until every build has it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(root + path, 'utf8');
const sorted = (a: Iterable<string>): string[] => [...a].sort();
const cppIn = (dir: string): string[] => sorted(readdirSync(root + dir).filter((f) => f.endsWith('.cpp')).map((f) => `${dir}/${f}`));

/** The file names of a cmake `set(<name> ...)`, with `${var}/` prefixes dropped. */
function cmakeSet(text: string, name: string): string[] {
  const m = new RegExp(`set\\(${name}\\s([^)]*)\\)`).exec(text);
  if (!m) throw new Error(`no set(${name} ...)`);
  return [...m[1].matchAll(/"\$\{\w+\}\/([^"]+)"/g)].map((x) => x[1]);
}

// binding.gyp is a Python literal: strip comments, then read its lists as JSON.
const gyp = JSON.parse(
  read('binding.gyp')
    .split('\n')
    .map((l) => l.replace(/^\s*#.*$/, '').replace(/\s#\s.*$/, ''))
    .join('\n')
    .replace(/'([^']*)'/g, (_, inner: string) => JSON.stringify(inner))
    .replace(/,(\s*[}\]])/g, '$1'),
) as {
  variables: { kernel_isa_sources: string[] };
  targets: { target_name: string; sources: string[] }[];
  conditions: [string, { targets: { target_name: string; sources: string[] }[] }][];
};
const gypTarget = (name: string): { sources: string[] } => {
  const all = [...gyp.targets, ...gyp.conditions.flatMap((c) => c[1].targets)];
  const t = all.find((x) => x.target_name === name);
  if (!t) throw new Error(`binding.gyp: no target ${name}`);
  return t;
};

const kernelsCmake = read('native/kernels/kernels.cmake');
const wasmCmake = read('wasm/wasm.cmake');

describe('kernel source lists agree across node-gyp, cmake and emscripten', () => {
  const isa = cmakeSet(kernelsCmake, 'SIMDNORM_KERNEL_ISA_SOURCES').map((f) => `native/kernels/${f}`);
  const common = cmakeSet(kernelsCmake, 'SIMDNORM_KERNEL_COMMON_SOURCES').map((f) => `native/kernels/${f}`);

  it('kernels.cmake lists every .cpp of native/kernels once (per-ISA or common)', () => {
    expect(sorted([...isa, ...common])).toEqual(cppIn('native/kernels'));
    expect(new Set([...isa, ...common]).size).toBe(isa.length + common.length);
  });

  it('binding.gyp compiles the same per-ISA sources for each ISA and the same common ones', () => {
    expect(gyp.variables.kernel_isa_sources).toEqual(isa);
    for (const t of ['simdnorm_kernels_base', 'simdnorm_kernels_avx2']) {
      expect(gypTarget(t).sources).toEqual(['<@(kernel_isa_sources)']);
    }
    const addon = gypTarget('simdnorm').sources;
    expect(addon.filter((f) => f.startsWith('native/kernels/'))).toEqual(common);
  });

  it('wasm.cmake takes its kernel sources from kernels.cmake, plus wasm/abi.cpp', () => {
    expect(wasmCmake).toMatch(/include\("\$\{SIMDNORM_KERNELS\}\/kernels\.cmake"\)/);
    expect(wasmCmake).toMatch(/set\(SIMDNORM_WASM_ISA_SOURCES \$\{SIMDNORM_KERNEL_ISA_SOURCES\}\)/);
    expect(wasmCmake).toMatch(
      /set\(SIMDNORM_WASM_SOURCES\s+\$\{SIMDNORM_WASM_ISA_SOURCES\}\s+\$\{SIMDNORM_KERNEL_COMMON_SOURCES\}\s+"\$\{SIMDNORM_ROOT\}\/wasm\/abi\.cpp"\)/,
    );
    // no file of native/kernels named in wasm.cmake itself
    expect(wasmCmake).not.toMatch(/native\/kernels\/\w+\.cpp|\{SIMDNORM_KERNELS\}\/\w+\.cpp/);
    // under EMSCRIPTEN kernels.cmake stops after its lists
    const stop = kernelsCmake.indexOf('if(EMSCRIPTEN)\n  return()');
    expect(stop).toBeGreaterThan(kernelsCmake.indexOf('set(SIMDNORM_KERNEL_COMMON_SOURCES'));
    expect(cppIn('wasm')).toEqual(['wasm/abi.cpp']);
  });

  it('the addon compiles every .cpp of native/node, in binding.gyp and CMakeLists.txt alike', () => {
    const node = cppIn('native/node');
    expect(sorted(gypTarget('simdnorm').sources.filter((f) => f.startsWith('native/node/')))).toEqual(node);
    const m = /add_library\(simdnorm SHARED([^)]*)\)/.exec(read('CMakeLists.txt'));
    expect(m).not.toBeNull();
    expect(sorted(m![1].split(/\s+/).filter((f) => f.startsWith('native/node/')))).toEqual(node);
  });

  it('wasm.cmake and wasm/build.mjs take the export list from the ABI table (native/abi/table.mjs)', () => {
    // wasm/exports.cmake is generated from the table (test/package/abi.test.ts checks it is fresh)
    expect(wasmCmake).toMatch(/include\("\$\{SIMDNORM_ROOT\}\/wasm\/exports\.cmake"\)/);
    expect(wasmCmake).toMatch(/-sEXPORTED_FUNCTIONS=\$\{SIMDNORM_WASM_EXPORT_LIST\}/);
    const build = read('wasm/build.mjs');
    expect(build).toContain("const { wasmExports } = await import(new URL('../native/abi/table.mjs', import.meta.url).href);");
    expect(build).toContain("const REQUIRED_EXPORTS = ['memory', ...wasmExports];");
  });
});
