/**
 * A large runAsync runs off the main thread: the event loop keeps ticking while it does
 * (counted with setImmediate and setInterval), and the call returns its Promise at once.
 */
import { expect, it } from 'vitest';
import { bnNorm, describeNative, Phase, run, runAsync } from './helpers.js';

describeNative('native binding: the event loop runs during async calls', () => {
  it('a 64M-element training forward through runAsync lets setImmediate and setInterval tick', async () => {
    const s = { outer: 64, channels: 16, inner: 1 << 16 }; // 64M float32 elements, 256 MiB per array
    const n = s.outer * s.channels * s.inner;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (i % 1021) * 0.001 - 0.5;
    const y = new Float32Array(n);
    const mean = new Float32Array(s.channels);
    const invStd = new Float32Array(s.channels);
    const train = bnNorm(Phase.train, Float32Array, s, { x, y, mean, invStd }, { eps: 1e-5 });

    // the same call, synchronously: how long the kernel takes here
    let start = performance.now();
    run(train);
    const syncMs = performance.now() - start;

    // the first async call starts libuv's thread pool: not what is measured here
    const tiny = { outer: 1, channels: 1, inner: 1 << 15 };
    await runAsync(bnNorm(Phase.moments, Float32Array, tiny, { x: x.subarray(0, 1 << 15), mean: mean.subarray(0, 1), variance: invStd.subarray(0, 1) }));

    let immediates = 0;
    let intervals = 0;
    let stop = false;
    const spin = (): void => {
      immediates++;
      if (!stop) setImmediate(spin);
    };
    const timer = setInterval(() => intervals++, 1);

    start = performance.now();
    const pending = runAsync(train);
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
