/**
 * Runs in the page: every conformance case (test/conformance/cases.ts for BatchNorm and
 * test/conformance/family-cases.ts for LayerNorm, RMSNorm, GroupNorm and InstanceNorm: the same
 * cases as in Node) under each backend, collected into a plain report for the Node side of the test.
 */
import { conformanceCases } from '../conformance/cases.js';
import { familyCases, type SimdnormApi } from '../conformance/family-cases.js';

type Api = Parameters<ReturnType<typeof conformanceCases>[number]['run']>[0];

export interface CaseResult {
  backend: string;
  name: string;
  ok: boolean;
  error?: string;
  ms: number;
}

export interface PageReport {
  userAgent: string;
  ready: string;
  backends: { name: string; available: boolean; current: boolean; reason?: string; details?: unknown }[];
  /** the backend each run really used, and its details */
  used: Record<string, { current: string; details: unknown }>;
  results: CaseResult[];
  fatal?: string;
}

function message(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

export async function runConformance(api: Api, backends: readonly string[] = ['wasm', 'js']): Promise<PageReport> {
  const report: PageReport = {
    userAgent: navigator.userAgent,
    ready: '',
    backends: [],
    used: {},
    results: [],
  };
  try {
    report.ready = await api.ready();
    report.backends = api.backends().map(({ name, available, current, reason, details }) => ({
      name, available, current, reason, details,
    }));
    const cases = [
      ...conformanceCases(),
      ...familyCases().map((c) => ({ name: `family: ${c.name}`, run: (a: Api) => c.run(a as unknown as SimdnormApi) })),
    ];
    for (const backend of backends) {
      try {
        api.useBackend(backend as 'wasm' | 'js');
      } catch (e) {
        report.results.push({ backend, name: `useBackend('${backend}')`, ok: false, error: message(e), ms: 0 });
        continue;
      }
      const status = api.backends().find((b) => b.current);
      report.used[backend] = { current: api.currentBackend(), details: status?.details };
      for (const c of cases) {
        const start = performance.now();
        try {
          await c.run(api);
          report.results.push({ backend, name: c.name, ok: true, ms: performance.now() - start });
        } catch (e) {
          report.results.push({ backend, name: c.name, ok: false, error: message(e), ms: performance.now() - start });
        }
      }
    }
    api.useBackend('auto');
  } catch (e) {
    report.fatal = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
  }
  return report;
}
