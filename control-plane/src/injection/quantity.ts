/**
 * Kubernetes resource quantities (`100m`, `64Mi`, `1.5`, `1e3`), checked before they go into a pod:
 * a bad one would make the API server refuse the pod with a message about our sidecar, not the
 * setting or annotation that caused it.
 */
const QUANTITY = /^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The value of a quantity (for comparing a request with its limit), or undefined when `s` is not one. */
export function quantityValue(s: string): number | undefined {
  if (s.length > 64) return undefined;
  const m = QUANTITY.exec(s);
  if (m === null) return undefined;
  const suffix = m[2] ?? '';
  // `E` alone is exa; `e3`/`E3` is an exponent.
  const scale = /^[eE][+-]?\d+$/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX[suffix];
  const value = Number(m[1]) * (scale ?? Number.NaN);
  return Number.isFinite(value) ? value : undefined;
}

export interface ResourceList {
  readonly cpu?: string;
  readonly memory?: string;
}

export interface Resources {
  readonly requests?: ResourceList;
  readonly limits?: ResourceList;
}

/** What is wrong with `resources` (each problem named by `where`), or [] when the API server would take it. */
export function resourcesProblems(resources: Resources, where: (kind: 'requests' | 'limits', name: 'cpu' | 'memory') => string): string[] {
  const problems: string[] = [];
  for (const kind of ['requests', 'limits'] as const) {
    for (const name of ['cpu', 'memory'] as const) {
      const q = resources[kind]?.[name];
      if (q !== undefined && quantityValue(q) === undefined) problems.push(`${where(kind, name)}: "${q}" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)`);
    }
  }
  for (const name of ['cpu', 'memory'] as const) {
    const request = resources.requests?.[name];
    const limit = resources.limits?.[name];
    if (request === undefined || limit === undefined) continue;
    const r = quantityValue(request);
    const l = quantityValue(limit);
    if (r !== undefined && l !== undefined && r > l) problems.push(`${where('requests', name)} (${request}) is more than ${where('limits', name)} (${limit})`);
  }
  return problems;
}
