// Matching a Linux kernel version against upstream kernel CVE data: the kernel CNA's semver ranges per
// stable branch, and (for CVEs before the CNA) per-branch fixed versions plus mainline introduce/fix.
// Pure functions; the database rows are passed in.

/** Kernel version order: numeric dot parts, "-rcN" before the release ("4.9-rc2" < "4.9" < "4.9.1"). */
export function compareKernelVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^(\d+(?:\.\d+)*)(?:-rc(\d+))?/.exec(v);
    if (!m) return { parts: [] as number[], rc: Number.POSITIVE_INFINITY };
    return { parts: m[1]!.split(".").map(Number), rc: m[2] ? Number(m[2]) : Number.POSITIVE_INFINITY };
  };
  const x = parse(a);
  const y = parse(b);
  const n = Math.max(x.parts.length, y.parts.length);
  for (let i = 0; i < n; i++) {
    const d = (x.parts[i] ?? 0) - (y.parts[i] ?? 0);
    if (d) return d < 0 ? -1 : 1;
  }
  if (x.rc !== y.rc) return x.rc < y.rc ? -1 : 1;
  return 0;
}

/** The stable branch of a version: "6.1.112" -> "6.1". */
export function branchOf(version: string): string {
  return version.split(/[.-]/).slice(0, 2).join(".");
}

/** The upstream version in a kernel release or Debian package version: "6.18.44-fc-v669" -> "6.18.44". */
export function upstreamVersion(s: string): string | undefined {
  const m = /^(\d+\.\d+(?:\.\d+)?(?:-rc\d+)?)/.exec(s.replace(/^\d+:/, ""));
  return m?.[1];
}

export interface CnaVersion {
  version?: string;
  lessThan?: string;
  lessThanOrEqual?: string;
  status?: string;
  versionType?: string;
}

function inRange(x: string, v: CnaVersion): boolean {
  if (!v.version) return false;
  const from = v.version === "0" ? "0" : v.version;
  if (v.lessThan !== undefined)
    return compareKernelVersions(x, from) >= 0 && compareKernelVersions(x, v.lessThan) < 0;
  if (v.lessThanOrEqual !== undefined) {
    const lte = v.lessThanOrEqual;
    if (lte === "*") return compareKernelVersions(x, from) >= 0;
    if (lte.endsWith(".*")) return compareKernelVersions(x, from) >= 0 && branchOf(x) === lte.slice(0, -2);
    return compareKernelVersions(x, from) >= 0 && compareKernelVersions(x, lte) <= 0;
  }
  return compareKernelVersions(x, from) === 0;
}

/**
 * Whether an upstream kernel version is affected by one CNA record: an "unaffected" range that holds
 * wins (the fixed stable releases and the mainline fix), then an explicit "affected" range, then the
 * record's default status.
 */
export function cnaAffects(version: string, defaultStatus: string, versions: CnaVersion[]): boolean {
  for (const v of versions) if (v.status === "unaffected" && inRange(version, v)) return false;
  for (const v of versions)
    if (v.status === "affected" && (v.lessThan || v.lessThanOrEqual) && inRange(version, v)) return true;
  return defaultStatus === "affected";
}

/** The version of the kernel's own branch that fixes the CVE, when the record names one. */
export function cnaFixedIn(version: string, versions: CnaVersion[]): string | undefined {
  const branch = branchOf(version);
  for (const v of versions)
    if (v.status === "unaffected" && v.version && v.lessThanOrEqual === `${branch}.*`) return v.version;
  const mainline = versions.find((v) => v.status === "unaffected" && v.lessThanOrEqual === "*");
  return mainline?.version;
}

/** Older data: per-branch fixed versions and mainline introduce/fix. */
export function streamAffects(
  version: string,
  branchFixes: Map<string, string>,
  mainline?: { introduced?: string | null; fixed?: string | null },
): { affected: boolean; fixedIn?: string } {
  if (mainline?.introduced && compareKernelVersions(version, mainline.introduced) < 0)
    return { affected: false };
  if (mainline?.fixed && compareKernelVersions(version, mainline.fixed) >= 0) return { affected: false };
  const fix = branchFixes.get(branchOf(version));
  if (fix)
    return compareKernelVersions(version, fix) < 0 ? { affected: true, fixedIn: fix } : { affected: false };
  if (mainline) return { affected: true, fixedIn: mainline.fixed ?? undefined };
  // Without mainline data, a branch is taken as affected only if a newer branch still needed the fix.
  const newer = [...branchFixes.keys()].some((b) => compareKernelVersions(b, branchOf(version)) > 0);
  return { affected: newer };
}
