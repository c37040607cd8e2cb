/** Types of train.mjs (for the test's TypeScript). */
import type { Digits } from './data.mjs';

export interface Run {
  experiment: 'a' | 'b';
  net: 'mlp' | 'conv';
  norm: 'none' | 'bn' | 'renorm' | 'ghost' | 'gn' | 'ln';
  batch: number;
  batchSize?: number;
  virtualBatchSize?: number;
  lr: number;
  lrMultiplier?: number;
  steps: number;
  evalAt: number[];
  seed: number;
}
export interface EvalPoint {
  step: number;
  testAccuracy: number;
  testLoss: number;
  trainLoss: number | null;
  /** per hidden layer of the MLP: the 15th, 50th, 85th percentiles of one sigmoid input */
  percentiles?: number[][];
}
export interface RunResult extends Run {
  curve: EvalPoint[];
  final: EvalPoint;
}
/** The library (what lib/index.ts or dist/index.js exports) and its seeded generator class. */
export interface Context {
  api: unknown;
  Random: new (seed: number) => { next(): number; normal(): number };
}
export const PROFILES: Record<'full' | 'quick', unknown>;
export function testRuns(seed?: number): Run[];
export function trainRun(
  ctx: Context,
  data: { train: Digits; test: Digits },
  run: Run,
  hooks?: { onEval?: (point: EvalPoint, run: Run) => void; shouldStop?: () => boolean },
): RunResult;
export function stepsTo(curve: EvalPoint[], level: number): number | null;
