/** Types of data.mjs (for the test's TypeScript). */
export interface Digits {
  /** n × 784 grey levels in [0, 1], row-major */
  x: Float32Array;
  label: Uint8Array;
  n: number;
}
export const SIDE: number;
export const PIXELS: number;
export const CLASSES: number;
export const TEST_PER_CLASS: number;
export function splitDigits(perClass: ArrayLike<number>[]): { train: Digits; test: Digits };
export function loadDigitsNode(): Promise<{ train: Digits; test: Digits }>;
export function loadDigitsBrowser(base: string): Promise<{ train: Digits; test: Digits }>;
