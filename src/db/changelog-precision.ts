// How well changelog crediting agrees with the Debian security tracker: precision and recall of the
// fixed versions derived from one release's changelogs, judged by the tracker's verdicts for that
// release (DSA/DLA lists, the tracker's JSON export). Pure; the callers fetch the changelogs.
//
// A credit is right when a scanner using it gives the same verdict as the tracker's fixed version
// for every version the release really had: the tracker's own versions for the package and release,
// and the changelog's uploads to that release's branch (with the uploads older than its first one,
// which the release was branched from). A credit for a CVE the tracker calls not-affected is wrong;
// a CVE the tracker has fixed within the changelog's range but the changelog credits to nothing is
// missed. CVEs the tracker does not cover for the package are not judged.

import { branchOf, type ChangelogEntry, ownEntries } from "./changelog.ts";
import type { AdvisoryListEntry } from "./importers/dsa-list.ts";

export interface TrackerVerdict {
  /** The tracker's fixed version; undefined with notAffected. */
  fixed?: string;
  notAffected?: boolean;
}

/** package -> CVE -> verdict, and the versions the tracker names for the package, for one release. */
export interface ReleaseTruth {
  release: string;
  verdicts: Map<string, Map<string, TrackerVerdict>>;
  versions: Map<string, Set<string>>;
}

export interface Judgement {
  package: string;
  cve: string;
  credited?: string;
  tracker: string;
  outcome: "right" | "wrong" | "missed" | "false-credit";
}

export interface PrecisionScore {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  precision: number;
  recall: number;
  packages: number;
  judgements: Judgement[];
}

export function emptyTruth(release: string): ReleaseTruth {
  return { release, verdicts: new Map(), versions: new Map() };
}

function addVerdict(
  t: ReleaseTruth,
  pkg: string,
  cve: string,
  v: TrackerVerdict,
  compare: (a: string, b: string) => number,
): void {
  const m = t.verdicts.get(pkg) ?? new Map<string, TrackerVerdict>();
  t.verdicts.set(pkg, m);
  const prev = m.get(cve);
  // Several advisories can name one CVE (a regression update): the first fixed version counts.
  if (!prev || prev.notAffected || (v.fixed && prev.fixed && compare(v.fixed, prev.fixed) < 0)) m.set(cve, v);
  if (v.fixed) {
    const s = t.versions.get(pkg) ?? new Set<string>();
    s.add(v.fixed);
    t.versions.set(pkg, s);
  }
}

/** The verdicts of a DSA or DLA list for one release. */
export function truthFromAdvisoryList(
  entries: AdvisoryListEntry[],
  release: string,
  compare: (a: string, b: string) => number,
  into = emptyTruth(release),
): ReleaseTruth {
  for (const e of entries)
    for (const r of e.releases) {
      if (r.release !== release) continue;
      const v: TrackerVerdict | undefined =
        r.state === "not-affected" ? { notAffected: true } : r.version ? { fixed: r.version } : undefined;
      if (v) for (const cve of e.cves) addVerdict(into, r.package, cve, v, compare);
    }
  return into;
}

interface TrackerRelease {
  status?: string;
  fixed_version?: string;
  repositories?: Record<string, string>;
}

/** The verdicts of the tracker's JSON export for one release (resolved issues only). */
export function truthFromTrackerJson(
  data: Record<string, Record<string, { releases?: Record<string, TrackerRelease> | unknown[] }>>,
  release: string,
  compare: (a: string, b: string) => number,
  into = emptyTruth(release),
): ReleaseTruth {
  for (const [pkg, cves] of Object.entries(data)) {
    if (!cves || typeof cves !== "object") continue;
    for (const [cve, entry] of Object.entries(cves)) {
      const rels = entry?.releases;
      if (!rels || Array.isArray(rels)) continue;
      const r = rels[release];
      if (r?.status !== "resolved" || !r.fixed_version) continue;
      addVerdict(
        into,
        pkg,
        cve,
        r.fixed_version === "0" ? { notAffected: true } : { fixed: r.fixed_version },
        compare,
      );
      const s = into.versions.get(pkg) ?? new Set<string>();
      for (const v of Object.values(r.repositories ?? {})) s.add(v);
      into.versions.set(pkg, s);
    }
  }
  return into;
}

/** The versions the release had, as far as the changelog and the tracker tell. */
function releaseVersions(entries: ChangelogEntry[], release: string, tracker: Iterable<string>): string[] {
  const branch = branchOf(release);
  const own = ownEntries(entries).map((e) => branchOf(e.distributions[0]) === branch);
  const oldestOwn = own.lastIndexOf(true);
  const out = new Set(tracker);
  ownEntries(entries).forEach((e, i) => {
    if (own[i] || oldestOwn < 0 || i > oldestOwn) out.add(e.version);
  });
  return [...out];
}

/** Judges the credits of one package's changelog. */
export function judgePackage(
  pkg: string,
  entries: ChangelogEntry[],
  credits: Map<string, string>,
  truth: ReleaseTruth,
  compare: (a: string, b: string) => number,
): Judgement[] {
  const verdicts = truth.verdicts.get(pkg);
  const top = entries[0]?.version;
  if (!verdicts || !top) return [];
  const versions = releaseVersions(entries, truth.release, truth.versions.get(pkg) ?? []);
  const out: Judgement[] = [];
  for (const [cve, v] of verdicts) {
    const credited = credits.get(cve);
    if (v.notAffected) {
      if (credited)
        out.push({ package: pkg, cve, credited, tracker: "not-affected", outcome: "false-credit" });
      continue;
    }
    const fixed = v.fixed!;
    if (compare(fixed, top) > 0) continue; // fixed after the version whose changelog was read
    if (!credited) {
      out.push({ package: pkg, cve, tracker: fixed, outcome: "missed" });
      continue;
    }
    const same = versions.every((x) => compare(x, credited) < 0 === compare(x, fixed) < 0);
    out.push({ package: pkg, cve, credited, tracker: fixed, outcome: same ? "right" : "wrong" });
  }
  return out;
}

export function score(judgements: Judgement[]): PrecisionScore {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const j of judgements) {
    if (j.outcome === "right") tp++;
    else if (j.outcome === "wrong") {
      fp++;
      fn++;
    } else if (j.outcome === "missed") fn++;
    else fp++;
  }
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    precision: tp + fp ? tp / (tp + fp) : 1,
    recall: tp + fn ? tp / (tp + fn) : 1,
    packages: new Set(judgements.map((j) => j.package)).size,
    judgements,
  };
}
