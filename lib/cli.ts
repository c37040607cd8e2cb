#!/usr/bin/env node
/**
 * simdnorm info    — the backends, which one is in use, and why any is unavailable
 * simdnorm verify  — the self-check of every available backend against the float64 reference;
 *                    exits 1 on a mismatch
 */
import { backends, ready, verify } from './index.js';

const USAGE = `usage: simdnorm info [--json]
       simdnorm verify [--cases N] [--seed N] [--json]`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer, received '${value}'`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const json = args.includes('--json');
  await ready();
  if (command === 'info') {
    const list = backends();
    if (json) {
      console.log(JSON.stringify(list.map(({ error: _error, ...rest }) => rest), null, 2));
      return 0;
    }
    console.log(`simdnorm — node ${process.version}, ${process.platform}-${process.arch}`);
    for (const b of list) {
      const mark = b.current ? '*' : ' ';
      const what = b.available
        ? Object.entries(b.details ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(' ')
        : `unavailable: ${b.reason}`;
      console.log(`${mark} ${b.name.padEnd(6)} ${what}`);
    }
    console.log('(* = in use; force one with SIMDNORM_BACKEND=native|wasm|js)');
    return 0;
  }
  if (command === 'verify') {
    const report = verify({ cases: positiveInt(flag(args, '--cases'), '--cases'), seed: positiveInt(flag(args, '--seed'), '--seed') });
    console.log(json ? JSON.stringify(report, null, 2) : report.text);
    return report.ok ? 0 : 1;
  }
  console.error(USAGE);
  return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`simdnorm: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(2);
  },
);
