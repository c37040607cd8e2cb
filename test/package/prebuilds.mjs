#!/usr/bin/env node
/**
 * CI's check of the package as users get it (after `npm run prebuilds`):
 *   1. the tarball as `npm publish` makes it (npm pack: prepack builds dist/ and strips the
 *      scripts a user's npm would list; postpack restores package.json): every prebuild in it, and
 *      its package.json has no install/prepare script and "gypfile": false;
 *   2. installed into a new project on a PATH that holds only node, npm, npx, sh and env (no g++,
 *      cc, make or python3 can be found): npm prints no install-scripts warning, nothing is
 *      compiled, `npx simdnorm info` shows native from this Node's prebuild, and `npx simdnorm
 *      build` fails in one line naming the missing tools;
 *   3. for each prebuild, the Node release it was built for (the node binary of the registry's
 *      node-linux-<arch> package, cached by native/prebuild.mjs; arm64 under qemu-aarch64 with the
 *      cross toolchain's libraries) runs `simdnorm info --json` (native must come from that
 *      prebuild) and `simdnorm verify --backend native --cases N`;
 *   4. `npm install git+file://<fresh clone of HEAD>`: `prepare` builds dist/, and
 *      `import('simdnorm')` runs (skip with --no-git).
 *
 *   node test/package/prebuilds.mjs [--cases N] [--arch x64,arm64] [--node 20,22,24] [--no-git] [--keep]
 *
 * (--arch/--node: check only those, as native/prebuild.mjs made only those.)
 *
 * Prints the tarball's size, npm's output and each run's time; exits 1 on the first failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
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
  if (r.error) fail(`${command} ${argv.join(' ')} could not run: ${r.error.message}`);
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

/** npm's output has no install-scripts warning ("… install scripts not yet covered by allowScripts"). */
function scriptWarning(output) {
  return output.split('\n').filter((l) => /install-scripts|allowScripts/.test(l)).join('\n');
}

/** The package.json inside a tarball. */
function packedManifest(tarball) {
  const r = run('tar', ['-xzOf', tarball, 'package/package.json']);
  if (r.status !== 0) fail(`tar: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * A PATH for a machine without a compiler: one folder of symlinks to node, npm, npx and the few
 * programs npm and the `simdnorm` bin use (the shell, env), and nothing else — no g++, cc, make or
 * python3 can be found on it.
 */
/** `name` as found on this process's PATH (not on a child's bare one), or undefined. */
function onPath(name) {
  const isFile = (f) => existsSync(f) && statSync(f).isFile();
  return (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name)).find(isFile);
}

function bareBin(dir) {
  mkdirSync(dir);
  for (const tool of ['node', 'npm', 'npx', 'sh', 'env']) {
    const target = tool === 'node' ? process.execPath : onPath(tool);
    if (!target) fail(`${tool} is not on PATH`);
    symlinkSync(target, join(dir, tool));
  }
  return dir;
}

const work = mkdtempSync(join(tmpdir(), 'simdnorm-prebuilds-'));
try {
  // 1. The tarball as `npm publish` makes it: prepack builds dist and cleans package.json of the
  //    scripts a user's npm would list (clean-package), postpack restores it.
  const manifestBefore = readFileSync(join(root, 'package.json'), 'utf8');
  const pack = run('npm', ['pack', '--json', '--foreground-scripts=false', '--pack-destination', work], { cwd: root });
  if (pack.status !== 0) fail(`npm pack: ${pack.stdout}\n${pack.stderr}`);
  if (readFileSync(join(root, 'package.json'), 'utf8') !== manifestBefore) fail('npm pack left package.json changed (postpack: clean-package restore)');
  const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')));
  const shipped = packed.files.map((f) => f.path).filter((p) => p.startsWith('prebuilds/')).sort();
  const wanted = expected.map((e) => `prebuilds/${e.file}`).sort();
  const exact = majors.length === 0 && arches.length === Object.keys(TARGETS).length;
  if (exact ? JSON.stringify(shipped) !== JSON.stringify(wanted) : !wanted.every((w) => shipped.includes(w))) fail(`the tarball's prebuilds are ${shipped.join(', ')}; expected ${wanted.join(', ')}`);
  const tarball = join(work, packed.filename);
  const manifest = packedManifest(tarball);
  const lifecycle = Object.keys(manifest.scripts ?? {}).filter((k) => /^(pre|post)?install$|^prepare$/.test(k));
  if (lifecycle.length > 0 || manifest.gypfile !== false) {
    fail(`the packed package.json has ${lifecycle.join(', ') || 'no install scripts'} and gypfile ${manifest.gypfile}: npm would list it as an install script`);
  }
  console.log(
    `prebuilds check: tarball ${packed.filename}: ${statSync(tarball).size} bytes packed, ` +
      `${packed.unpackedSize} unpacked, ${packed.entryCount} files (${shipped.length} prebuilds); ` +
      'its package.json has no install or prepare script and "gypfile": false',
  );

  // 2. Installed into a new project on a PATH with no compiler, make or Python at all: npm prints
  //    no install-scripts warning, compiles nothing, and simdnorm info shows native from the prebuild.
  const project = join(work, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), '{ "name": "project", "version": "1.0.0", "private": true }\n');
  const bin = bareBin(join(work, 'bin'));
  const env = { ...process.env, PATH: bin };
  delete env.SIMDNORM_NATIVE_PATH;
  delete env.SIMDNORM_BACKEND;
  for (const tool of ['g++', 'c++', 'cc', 'gcc', 'clang', 'make', 'python3', 'python']) {
    const found = run(join(bin, 'sh'), ['-c', `command -v ${tool}`], { env });
    if (found.status === 0) fail(`${tool} is on the bare PATH: ${found.stdout.trim()}`);
  }
  const install = run(join(bin, 'npm'), ['install', '--no-audit', '--no-fund', tarball], { cwd: project, env });
  const installOut = `${install.stdout}\n${install.stderr}`.trim();
  if (install.status !== 0) fail(`npm install of the tarball: ${installOut}`);
  const warning = scriptWarning(installOut);
  if (warning) fail(`npm warned about install scripts:\n${installOut}`);
  const pkg = join(project, 'node_modules', 'simdnorm');
  if (existsSync(join(pkg, 'build'))) fail(`the install left ${readdirSync(join(pkg, 'build')).join(', ')} in build/`);
  console.log(`prebuilds check: npm install <tarball> on a PATH of only ${readdirSync(bin).join(', ')} (${install.seconds.toFixed(0)} s), npm said:`);
  for (const line of installOut.split('\n')) console.log(`  | ${line}`);
  const same = process.arch in TARGETS && expected.some((e) => e.arch === process.arch && Number(e.version.split('.')[0]) === Number(process.versions.node.split('.')[0]));
  if (same) {
    const info = run(join(bin, 'npx'), ['--no-install', 'simdnorm', 'info'], { cwd: project, env });
    if (info.status !== 0) fail(`npx simdnorm info: ${info.stdout}${info.stderr}`);
    const prebuild = `prebuilt addon prebuilds/${prebuildName(process.arch, Number(process.versions.modules))}`;
    if (!/^\* native /m.test(info.stdout) || !info.stdout.includes(prebuild)) fail(`npx simdnorm info does not show native from the prebuild:\n${info.stdout}`);
    console.log('prebuilds check: npx simdnorm info:');
    for (const line of info.stdout.trim().split('\n')) console.log(`  | ${line}`);
    // A build from source without the tools fails in one line that names them, and info keeps the prebuild.
    const build = run(join(bin, 'npx'), ['--no-install', 'simdnorm', 'build'], { cwd: project, env });
    const buildOut = `${build.stdout}${build.stderr}`;
    if (build.status !== 1 || !/native addon not built: not found on PATH: a C\+\+17 compiler \(g\+\+\), make, Python 3 \(python3\)/.test(buildOut)) {
      fail(`npx simdnorm build without a compiler: exit ${build.status}:\n${buildOut}`);
    }
    console.log(`prebuilds check: npx simdnorm build without a compiler: exit 1, ${buildOut.split('\n')[0]}`);
    rmSync(join(pkg, 'build'), { recursive: true, force: true });
  }

  // 3. Each prebuild loaded by the Node it is for, and verified.
  const cli = join(pkg, 'dist', 'cli.js');
  for (const e of expected) {
    const node = join(e.nodedir, 'bin', 'node');
    const [command, pre] =
      // qemu-aarch64 by its full path: the child's PATH is the bare one, which does not hold it
      e.arch === process.arch ? [node, []] : [onPath('qemu-aarch64') ?? 'qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', node]];
    const runEnv = { ...env, PATH: `${dirname(node)}${delimiter}${env.PATH}` };
    // Each takes seconds (arm64 under qemu ~6 s); a hang fails in 5 minutes, not CI's 20.
    const limits = { cwd: project, env: runEnv, timeout: 5 * 60_000 };
    const info = run(command, [...pre, cli, 'info', '--json'], limits);
    if (info.status !== 0) fail(`info on Node ${e.version} ${e.arch}: ${info.stderr}`);
    const native = JSON.parse(info.stdout).find((b) => b.name === 'native');
    if (!native?.available) fail(`native unavailable on Node ${e.version} ${e.arch}: ${native?.reason}`);
    if (native.details.origin !== 'prebuild' || !native.details.path.endsWith(e.file)) {
      fail(`Node ${e.version} ${e.arch} loaded ${native.details.path}, not prebuilds/${e.file}`);
    }
    const verify = run(command, [...pre, cli, 'verify', '--backend', 'native', '--cases', cases, '--quiet'], limits);
    const text = `${verify.stdout}${verify.stderr}`;
    if (verify.status !== 0 || !/native\s+ok/i.test(text)) fail(`verify on Node ${e.version} ${e.arch}:\n${text}`);
    console.log(
      `prebuilds check: Node ${e.version} linux-${e.arch}${pre.length ? ' (qemu-aarch64)' : ''}: prebuilds/${e.file} loaded ` +
        `(simd ${native.details.simd}), verify ${cases} cases ok (${(info.seconds + verify.seconds).toFixed(0)} s)`,
    );
  }

  // 4. Installed from git (a fresh clone of this commit): npm runs `prepare` (dist built from
  //    lib/), the package imports and runs (no prebuilds in git: WebAssembly until `npx simdnorm
  //    build`). npm lists that `prepare` as a script to allow: a git install cannot do without it.
  if (!args.includes('--no-git')) {
    const clone = join(work, 'clone');
    const cloned = run('git', ['clone', '--quiet', '--no-local', root, clone]);
    if (cloned.status !== 0) fail(`git clone: ${cloned.stderr}`);
    const gitProject = join(work, 'git-project');
    mkdirSync(gitProject);
    writeFileSync(join(gitProject, 'package.json'), '{ "name": "git-project", "version": "1.0.0", "private": true }\n');
    const gitInstall = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `git+file://${clone}`], { cwd: gitProject });
    const gitOut = `${gitInstall.stdout}\n${gitInstall.stderr}`.trim();
    if (gitInstall.status !== 0) fail(`npm install git+file://: ${gitOut}`);
    const script =
      "const s = await import('simdnorm'); await s.ready(); " +
      "const { y } = s.batchNormInfer({ x: new Float32Array(8).fill(3), shape: [2, 4], runningMean: new Float32Array(4).fill(1), runningVar: new Float32Array(4).fill(4) }); " +
      'console.log(s.currentBackend(), y[0].toFixed(4))';
    const imported = run(process.execPath, ['--input-type=module', '-e', script], { cwd: gitProject });
    if (imported.status !== 0 || !/^\w+ 1\.0000$/.test(imported.stdout.trim())) fail(`import('simdnorm') after a git install: ${imported.stdout}${imported.stderr}`);
    const listed = scriptWarning(gitOut);
    if (listed && !/prepare: npm run build:ts/.test(gitOut)) fail(`a git install warned about other scripts than prepare:\n${gitOut}`);
    if (/node-gyp rebuild|\binstall: /.test(gitOut)) fail(`a git install lists an install script:\n${gitOut}`);
    console.log(
      `prebuilds check: npm install git+file://<fresh clone> (${gitInstall.seconds.toFixed(0)} s): import('simdnorm') runs ` +
        `(${imported.stdout.trim()}); npm ${listed ? 'lists its prepare script (npm run build:ts) for allowScripts' : 'printed no install-scripts warning'}; npm said:`,
    );
    for (const line of gitOut.split('\n')) console.log(`  | ${line}`);
  }
  console.log('prebuilds check: ok');
} finally {
  if (!args.includes('--keep')) rmSync(work, { recursive: true, force: true });
  else console.log(`prebuilds check: kept ${work}`);
}
