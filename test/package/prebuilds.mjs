#!/usr/bin/env node
/**
 * CI's check of the prebuilt addons (after `npm run prebuilds` and `npm run build`), as a user
 * gets them: the package packed (npm pack), installed from the tarball into a new project with
 * every compiler and make on PATH replaced by one that fails, then, for each prebuild, the Node
 * release it was built for (the node binary of the registry's node-linux-<arch> package, cached
 * by native/prebuild.mjs; arm64 under qemu-aarch64 with the cross toolchain's libraries) runs
 * `simdnorm info --json` (native must come from that prebuild) and `simdnorm verify --backend
 * native --cases N`.
 *
 *   node test/package/prebuilds.mjs [--cases N] [--arch x64,arm64] [--node 20,22,24] [--keep]
 *
 * (--arch/--node: check only those, as native/prebuild.mjs made only those.)
 *
 * Prints the tarball's size and each run's time; exits 1 on the first failure.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS, abiOf, nodeRelease, prebuildName } from '../../native/prebuild.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const cases = opt('--cases', '12');
const arches = opt('--arch', Object.keys(TARGETS).join(',')).split(',');
const majors = opt('--node', '')?.split(',').filter(Boolean);

function fail(message) {
  console.error(`prebuilds check: FAILED: ${message}`);
  process.exit(1);
}

function run(command, argv, options = {}) {
  const started = Date.now();
  const r = spawnSync(command, argv, { encoding: 'utf8', timeout: 20 * 60_000, maxBuffer: 64 << 20, ...options });
  r.seconds = (Date.now() - started) / 1000;
  if (r.error) fail(`${command} could not run: ${r.error.message}`);
  return r;
}

// Every expected prebuild is there (and nothing else ships).
const expected = [];
for (const arch of arches) {
  for (const [major, version] of Object.entries(TARGETS[arch])) {
    if (majors.length > 0 && !majors.includes(major)) continue;
    const nodedir = nodeRelease(arch, version);
    expected.push({ arch, version, nodedir, file: prebuildName(arch, abiOf(nodedir)) });
  }
}
for (const e of expected) if (!existsSync(join(root, 'prebuilds', e.file))) fail(`prebuilds/${e.file} is missing (npm run prebuilds)`);

const work = mkdtempSync(join(tmpdir(), 'simdnorm-prebuilds-'));
try {
  // 1. The tarball (dist built by CI's `npm run build`; --ignore-scripts: nothing rebuilt here).
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root });
  if (pack.status !== 0) fail(`npm pack: ${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout);
  const shipped = packed.files.map((f) => f.path).filter((p) => p.startsWith('prebuilds/')).sort();
  const wanted = expected.map((e) => `prebuilds/${e.file}`).sort();
  const exact = majors.length === 0 && arches.length === Object.keys(TARGETS).length;
  if (exact ? JSON.stringify(shipped) !== JSON.stringify(wanted) : !wanted.every((w) => shipped.includes(w))) fail(`the tarball's prebuilds are ${shipped.join(', ')}; expected ${wanted.join(', ')}`);
  const tarball = join(work, packed.filename);
  console.log(
    `prebuilds check: tarball ${packed.filename}: ${statSync(tarball).size} bytes packed, ` +
      `${packed.unpackedSize} unpacked, ${packed.entryCount} files (${shipped.length} prebuilds)`,
  );

  // 2. Installed into a new project where no compiler works: the install must compile nothing.
  const project = join(work, 'project');
  const noTools = join(work, 'no-tools');
  mkdirSync(project);
  mkdirSync(noTools);
  for (const tool of ['cc', 'gcc', 'c++', 'g++', 'clang', 'clang++', 'make', 'python3']) {
    writeFileSync(join(noTools, tool), `#!/bin/sh\necho "${tool}: not available in this check" >&2\nexit 127\n`);
    chmodSync(join(noTools, tool), 0o755);
  }
  writeFileSync(join(project, 'package.json'), '{ "name": "project", "version": "1.0.0", "private": true }\n');
  const env = { ...process.env, PATH: `${noTools}${delimiter}${process.env.PATH}` };
  delete env.SIMDNORM_NATIVE_PATH;
  delete env.SIMDNORM_BACKEND;
  const install = run('npm', ['install', '--foreground-scripts', '--no-audit', '--no-fund', tarball], { cwd: project, env });
  const installOut = `${install.stdout}\n${install.stderr}`;
  if (install.status !== 0) fail(`npm install of the tarball: ${installOut}`);
  if (!/simdnorm: using the prebuilt native addon prebuilds\/linux-x64\/node\.abi\d+\.glibc\.node/.test(installOut)) {
    fail(`the install did not use the prebuild:\n${installOut}`);
  }
  const pkg = join(project, 'node_modules', 'simdnorm');
  if (existsSync(join(pkg, 'build'))) fail(`the install left ${readdirSync(join(pkg, 'build')).join(', ')} in build/`);
  console.log(`prebuilds check: npm install of the tarball, no compiler on PATH: used the prebuild, compiled nothing (${install.seconds.toFixed(0)} s)`);

  // 3. Each prebuild loaded by the Node it is for, and verified.
  const cli = join(pkg, 'dist', 'cli.js');
  for (const e of expected) {
    const node = join(e.nodedir, 'bin', 'node');
    const [command, pre] =
      e.arch === process.arch ? [node, []] : ['qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', node]];
    const runEnv = { ...env, PATH: `${dirname(node)}${delimiter}${env.PATH}` };
    const info = run(command, [...pre, cli, 'info', '--json'], { cwd: project, env: runEnv });
    if (info.status !== 0) fail(`info on Node ${e.version} ${e.arch}: ${info.stderr}`);
    const native = JSON.parse(info.stdout).find((b) => b.name === 'native');
    if (!native?.available) fail(`native unavailable on Node ${e.version} ${e.arch}: ${native?.reason}`);
    if (native.details.origin !== 'prebuild' || !native.details.path.endsWith(e.file)) {
      fail(`Node ${e.version} ${e.arch} loaded ${native.details.path}, not prebuilds/${e.file}`);
    }
    const verify = run(command, [...pre, cli, 'verify', '--backend', 'native', '--cases', cases, '--quiet'], { cwd: project, env: runEnv });
    const text = `${verify.stdout}${verify.stderr}`;
    if (verify.status !== 0 || !/native\s+ok/i.test(text)) fail(`verify on Node ${e.version} ${e.arch}:\n${text}`);
    console.log(
      `prebuilds check: Node ${e.version} linux-${e.arch}${pre.length ? ' (qemu-aarch64)' : ''}: prebuilds/${e.file} loaded ` +
        `(simd ${native.details.simd}), verify ${cases} cases ok (${(info.seconds + verify.seconds).toFixed(0)} s)`,
    );
  }
  console.log('prebuilds check: ok');
} finally {
  if (!args.includes('--keep')) rmSync(work, { recursive: true, force: true });
  else console.log(`prebuilds check: kept ${work}`);
}
