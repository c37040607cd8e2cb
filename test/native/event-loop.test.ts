/**
 * A large trainAsync runs off the main thread: the event loop keeps ticking while it does
 * (counted with setImmediate and setInterval), and the call returns its Promise at once.
 */
import { expect, it } from 'vitest';
import { binding, describeNative } from './helpers.js';

describeNative('native binding: the event loop runs during async calls', () => {
  it('a 64M-element trainAsync lets setImmediate and setInterval tick', async () => {
    const b = binding();
    const outer = 64;
    const channels = 16;
    const inner = 1 << 16; // 64 * 16 * 65536 = 64M float32 elements, 256 MiB per array
    const n = outer * channels * inner;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (i % 1021) * 0.001 - 0.5;
    const y = new Float32Array(n);
    const mean = new Float32Array(channels);
    const invStd = new Float32Array(channels);

    // the same call, synchronously: how long the kernel takes here
    let start = performance.now();
    b.train(x, outer, channels, inner, null, null, 1e-5, false, y, mean, invStd, null, null, 0, 1, false);
    const syncMs = performance.now() - start;

    // the first async call starts libuv's thread pool: not what is measured here
    await b.inferAsync(new Float32Array(4), 1, 1, 4, new Float32Array(1), new Float32Array([1]), null, null, 1e-5, false, new Float32Array(4));

    let immediates = 0;
    let intervals = 0;
    let stop = false;
    const spin = (): void => {
      immediates++;
      if (!stop) setImmediate(spin);
    };
    const timer = setInterval(() => intervals++, 1);

    start = performance.now();
    const pending = b.trainAsync(x, outer, channels, inner, null, null, 1e-5, false, y, mean, invStd, null, null, 0, 1, false);
    const returnMs = performance.now() - start;
    setImmediate(spin);
    await pending;
    const asyncMs = performance.now() - start;
    stop = true;
    clearInterval(timer);

    console.log(
      `64M-element train: sync ${syncMs.toFixed(1)} ms; async returned its Promise in ${returnMs.toFixed(3)} ms, ` +
        `settled in ${asyncMs.toFixed(1)} ms with ${immediates} setImmediate and ${intervals} setInterval ticks`,
    );
    expect(returnMs).toBeLessThan(Math.max(5, syncMs / 4));
    expect(immediates).toBeGreaterThan(10);
    expect(intervals).toBeGreaterThan(2);
    expect(mean.every(Number.isFinite)).toBe(true);
  }, 120_000);
});
