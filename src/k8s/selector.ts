// Kubernetes label selectors (metav1.LabelSelector) matched against an object's labels, the way the API
// server's labels.SelectorFromSet / matchExpressions do. The operator selects a plan's Nodes from its
// watch cache, so it never asks the server to filter.

export interface SelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: SelectorRequirement[];
}

/** An empty or absent selector selects everything, as it does for a Deployment or a PDB. */
export function selectorMatches(
  sel: LabelSelector | undefined,
  labels: Record<string, string> = {},
): boolean {
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel?.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, r.key);
    const values = r.values ?? [];
    switch (r.operator) {
      case "In":
        if (!has || !values.includes(labels[r.key]!)) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[r.key]!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}

/** The problem with a selector's expressions, as the API server would phrase it, or undefined. */
export function selectorProblem(sel: LabelSelector | undefined): string | undefined {
  for (const r of sel?.matchExpressions ?? []) {
    const n = r.values?.length ?? 0;
    if ((r.operator === "In" || r.operator === "NotIn") && n === 0)
      return `nodeSelector: ${r.key} ${r.operator} needs at least one value`;
    if ((r.operator === "Exists" || r.operator === "DoesNotExist") && n > 0)
      return `nodeSelector: ${r.key} ${r.operator} takes no values`;
  }
  return undefined;
}
