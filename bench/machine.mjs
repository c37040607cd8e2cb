/**
 * Machine facts for the report (Node only): CPU, SIMD flags, caches, memory, OS, runtime and
 * the versions of simdnorm and of every peer package.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

const readText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** SIMD-related CPU flags (Linux /proc/cpuinfo; elsewhere the architecture only). */
function simdFlags() {
  const flags = new Set((readText('/proc/cpuinfo').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
  const wanted = [['sse4_2', 'SSE4.2'], ['avx2', 'AVX2'], ['fma', 'FMA'], ['avx512f', 'AVX-512F'], ['asimd', 'NEON']];
  const have = wanted.filter(([f]) => flags.has(f)).map(([, name]) => name);
  return have.length ? have.join('+') : os.arch();
}

/** "2048K" → "2 MiB", "512K" → "512 KiB" */
function humanSize(size) {
  const kib = Number(size.replace(/K$/, ''));
  if (!/K$/.test(size) || !Number.isFinite(kib)) return size;
  return kib >= 1024 && kib % 1024 === 0 ? `${kib / 1024} MiB` : `${kib} KiB`;
}

/** L2/L3 sizes of cpu0 (Linux sysfs). */
function caches() {
  const dir = '/sys/devices/system/cpu/cpu0/cache';
  try {
    return readdirSync(dir)
      .filter((d) => d.startsWith('index'))
      .map((d) => ({ level: readText(join(dir, d, 'level')).trim(), type: readText(join(dir, d, 'type')).trim(), size: readText(join(dir, d, 'size')).trim() }))
      .filter((c) => c.type !== 'Instruction' && Number(c.level) >= 2)
      .map((c) => `L${c.level} ${humanSize(c.size)}`)
      .join(', ');
  } catch {
    return '';
  }
}

function packageVersion(root, name) {
  try {
    return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

/** The commit measured, marked when the sources that decide the numbers had local changes. */
function gitCommit(root) {
  const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const head = git('rev-parse', '--short', 'HEAD');
    const changed = git('status', '--porcelain', '--', 'lib', 'native', 'wasm') !== '';
    return head ? `${head}${changed ? ' with local changes' : ''}` : null;
  } catch {
    return null;
  }
}

export const PEER_PACKAGES = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', 'onnxruntime-node', 'onnxruntime-web'];

export function machineFacts(root) {
  const cpus = os.cpus();
  const commit = gitCommit(root);
  return {
    machine: {
      cpu: cpus[0]?.model?.replace(/\s+/g, ' ').trim() ?? os.arch(),
      threads: os.availableParallelism?.() ?? cpus.length,
      simd: simdFlags(),
      caches: caches(),
      memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    },
    versions: {
      runtime: `Node ${process.versions.node} (V8 ${process.versions.v8})`,
      simdnorm: `${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}${commit ? ` @ ${commit}` : ''}`,
      peers: Object.fromEntries(PEER_PACKAGES.map((p) => [p, packageVersion(root, p)]).filter(([, v]) => v)),
    },
  };
}
