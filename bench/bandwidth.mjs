/**
 * The memory-bandwidth limit, measured in the same run: copy (and read) probes from the native
 * addon on 1 and on all threads; a JS copy (TypedArray.prototype.set, a memmove) where the
 * addon is missing. A copy over a tensor of a task's size is timed in the task's own rounds;
 * an op's bound is that copy time scaled by the op's bytes / the copy's bytes (runner.mjs).
 *
 * `native` is the raw addon ({ copyBytes(dst, src, threads), readFloats(src, threads) }) or null.
 */
import { interleavedRounds, warmUp } from './timing.mjs';

function buffers(bytes) {
  const length = Math.max(1, Math.ceil(bytes / 4));
  const src = new Float32Array(length).fill(1);
  const dst = new Float32Array(length).fill(0); // touched now: no page faults in the timed copies
  return { src, dst };
}

/**
 * Copy subjects over `bytes`: native on 1 and on `threads` threads, else the JS copy.
 * @returns {import('./runner.mjs').BoundSubject[]}
 */
export function copySubjects(native, bytes, threads) {
  const { src, dst } = buffers(bytes);
  if (!native) return [{ id: 'copy-js', label: 'JS copy', async: false, run: () => dst.set(src) }];
  const counts = threads > 1 ? [1, threads] : [1];
  return counts.map((t) => ({ id: `copy-${t}`, label: `copy ×${t}`, async: false, run: () => native.copyBytes(dst, src, t) }));
}

/**
 * The standalone probe over arrays of `bytes` (far larger than the caches): copy and read on
 * 1 and all threads (native), and the JS copy. Copy bandwidth counts the bytes read plus the
 * bytes written (as STREAM does); read bandwidth the bytes read.
 * @returns {Promise<{ id: string, label: string, gbps: number, stats: import('./timing.mjs').Stats }[]>}
 */
export async function probeBandwidth(native, bytes, threads, settings) {
  const { src, dst } = buffers(bytes);
  const probes = [{ id: 'copy-js', label: 'JS copy (TypedArray.set)', moved: 2 * bytes, run: () => dst.set(src) }];
  if (native) {
    for (const t of threads > 1 ? [1, threads] : [1]) {
      probes.push({ id: `copy-${t}`, label: `copy ×${t} (native)`, moved: 2 * bytes, run: () => native.copyBytes(dst, src, t) });
      probes.push({ id: `read-${t}`, label: `read ×${t} (native)`, moved: bytes, run: () => native.readFloats(src, t) });
    }
  }
  const entries = [];
  for (const p of probes) {
    const subject = { async: false, run: p.run };
    entries.push({ subject, perCallMs: await warmUp(subject, settings.warmupMs) });
  }
  const stats = await interleavedRounds(entries, settings);
  return probes.map((p, i) => ({ id: p.id, label: p.label, gbps: p.moved / stats[i].median / 1e6, stats: stats[i] }));
}
