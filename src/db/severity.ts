// Severity levels shared by every source, and the mappings from each source's own vocabulary.

export const SEVERITIES = ["UNKNOWN", "NEGLIGIBLE", "LOW", "MEDIUM", "HIGH", "CRITICAL"] as const;
export type Severity = (typeof SEVERITIES)[number];

export function severityRank(s: string | undefined | null): number {
  const i = SEVERITIES.indexOf((s ?? "UNKNOWN").toUpperCase() as Severity);
  return Math.max(i, 0);
}

export function parseSeverity(s: string): Severity {
  const up = s.trim().toUpperCase();
  if (!(SEVERITIES as readonly string[]).includes(up))
    throw new Error(`unknown severity "${s}" (use ${SEVERITIES.join(", ")})`);
  return up as Severity;
}

/**
 * Debian tracker urgency to severity. A trailing "**" means the urgency was taken from NVD rather than
 * assessed by Debian; the level is the same, the flag is kept separately.
 */
export function severityFromUrgency(urgency: string | undefined): Severity {
  switch ((urgency ?? "").replace(/\*+$/, "").trim()) {
    case "unimportant":
      return "NEGLIGIBLE";
    case "low":
      return "LOW";
    case "medium":
      return "MEDIUM";
    case "high":
      return "HIGH";
    default:
      return "UNKNOWN";
  }
}

export function severityFromCvss(score: number | undefined | null): Severity {
  if (score === undefined || score === null || Number.isNaN(score)) return "UNKNOWN";
  if (score === 0) return "NEGLIGIBLE";
  if (score < 4) return "LOW";
  if (score < 7) return "MEDIUM";
  if (score < 9) return "HIGH";
  return "CRITICAL";
}

// CVSS v3.x base score from a vector string (FIRST's specification, section 7.1); hand-written because
// it is a dozen lines of arithmetic and OSV records carry only the vector.
const W = {
  AV: { N: 0.85, A: 0.62, L: 0.55, P: 0.2 },
  AC: { L: 0.77, H: 0.44 },
  UI: { N: 0.85, R: 0.62 },
  C: { H: 0.56, L: 0.22, N: 0 },
} as const;

function roundUp(x: number): number {
  const i = Math.round(x * 100000);
  return i % 10000 === 0 ? i / 100000 : (Math.floor(i / 10000) + 1) / 10;
}

export function cvss3BaseScore(vector: string): number | undefined {
  const m = /^CVSS:3\.[01]\/(.*)$/.exec(vector.trim());
  if (!m) return undefined;
  const f: Record<string, string> = {};
  for (const part of m[1]!.split("/")) {
    const [k, v] = part.split(":");
    if (k && v) f[k] = v;
  }
  const scopeChanged = f.S === "C";
  const pr =
    f.PR === "N"
      ? 0.85
      : f.PR === "L"
        ? scopeChanged
          ? 0.68
          : 0.62
        : f.PR === "H"
          ? scopeChanged
            ? 0.5
            : 0.27
          : undefined;
  const av = W.AV[f.AV as keyof typeof W.AV];
  const ac = W.AC[f.AC as keyof typeof W.AC];
  const ui = W.UI[f.UI as keyof typeof W.UI];
  const [c, i, a] = [f.C, f.I, f.A].map((x) => W.C[x as keyof typeof W.C]);
  if ([pr, av, ac, ui, c, i, a].some((x) => x === undefined) || !["U", "C"].includes(f.S ?? ""))
    return undefined;
  const iss = 1 - (1 - c!) * (1 - i!) * (1 - a!);
  const impact = scopeChanged ? 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 : 6.42 * iss;
  if (impact <= 0) return 0;
  const exploitability = 8.22 * av! * ac! * pr! * ui!;
  return scopeChanged
    ? roundUp(Math.min(1.08 * (impact + exploitability), 10))
    : roundUp(Math.min(impact + exploitability, 10));
}
