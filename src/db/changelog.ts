// Debian changelogs (debian/changelog, usr/share/doc/PKG/changelog.Debian.gz): the entries, which CVE
// ids each upload says it fixes, and which it only names. Pure parsing; malformed trailing text is
// ignored, not fatal, because changelogs are prose.

import { bodyItems, cveIds, type MentionKind, mentionKind, sentences } from "./changelog-mentions.ts";

export interface ChangelogEntry {
  package: string;
  version: string;
  distributions: string[];
  urgency?: string;
  date?: string;
  /** CVE ids this upload says it fixes. */
  cves: string[];
  /** CVE ids this upload names without fixing them, and what it says about each. */
  mentions: { cve: string; kind: Exclude<MentionKind, "fix"> }[];
  /**
   * Fixes the upload attributes to an upstream release ("CVE-2022-22662 (fixed in 2.36.0)"): the first
   * upload of that release carries them, which may be older than this one.
   */
  fixedUpstream: { cve: string; upstream: string }[];
}

const HEADER = /^(\S+) \(([^)\s]+)\) ([^;]*);(.*)$/;
const TRAILER = /^ -- .*?>\s+(.*)$/;

const FIXED_IN_UPSTREAM = /\bfixed in (?:version\s+)?v?(\d+(?:\.\d+)+)\b/i;

/** Reads one entry's body: per CVE, a fix when any sentence naming it is a fix and none reverts it. */
function judge(body: string[]): Pick<ChangelogEntry, "cves" | "mentions" | "fixedUpstream"> {
  const kinds = new Map<string, Set<MentionKind>>();
  const upstream = new Map<string, string>();
  for (const item of bodyItems(body))
    for (const sentence of sentences(item.text))
      for (const cve of cveIds(sentence)) {
        const set = kinds.get(cve) ?? new Set<MentionKind>();
        const kind = mentionKind(sentence, cve, item.heading);
        set.add(kind);
        kinds.set(cve, set);
        const at = FIXED_IN_UPSTREAM.exec(sentence.slice(sentence.indexOf(cve)));
        if (kind === "fix" && at) upstream.set(cve, at[1]!);
      }
  const cves: string[] = [];
  const mentions: ChangelogEntry["mentions"] = [];
  for (const [cve, set] of kinds) {
    if (set.has("revert")) mentions.push({ cve, kind: "revert" });
    else if (set.has("fix")) cves.push(cve);
    else mentions.push({ cve, kind: set.has("not-affected") ? "not-affected" : "reference" });
  }
  return {
    cves: cves.sort(),
    mentions: mentions.sort((a, b) => (a.cve < b.cve ? -1 : 1)),
    fixedUpstream: cves.filter((c) => upstream.has(c)).map((cve) => ({ cve, upstream: upstream.get(cve)! })),
  };
}

export function parseChangelog(text: string): ChangelogEntry[] {
  const entries: ChangelogEntry[] = [];
  let cur: ChangelogEntry | undefined;
  let body: string[] = [];
  const close = () => {
    if (cur) Object.assign(cur, judge(body));
    body = [];
  };
  for (const line of text.split("\n")) {
    const h = HEADER.exec(line);
    if (h) {
      close();
      const urgency = /urgency=(\S+)/.exec(h[4]!)?.[1];
      cur = {
        package: h[1]!,
        version: h[2]!,
        distributions: h[3]!.trim().split(/\s+/),
        urgency,
        cves: [],
        mentions: [],
        fixedUpstream: [],
      };
      entries.push(cur);
      continue;
    }
    if (!cur) continue;
    const t = TRAILER.exec(line);
    if (t) {
      cur.date = t[1]!.trim();
      continue;
    }
    body.push(line);
  }
  close();
  return entries;
}

/**
 * The branch an upload went to: "bullseye-security" and "bullseye" are one branch; "unstable", "sid",
 * "experimental" and "UNRELEASED" another.
 */
export function branchOf(distribution: string | undefined): string {
  const d = (distribution ?? "").toLowerCase();
  if (/^(unstable|sid|experimental|unreleased)$/.test(d)) return "unstable";
  return d.replace(/-(security|updates|proposed-updates|proposed|p-u)$/, "");
}

/** The upstream part of a Debian version: no epoch, no revision. */
export function upstreamOf(version: string): string {
  const noEpoch = version.replace(/^\d+:/, "");
  const dash = noEpoch.lastIndexOf("-");
  return dash < 0 ? noEpoch : noEpoch.slice(0, dash);
}

/**
 * The index of the oldest upload at or below `from` (older is higher) whose upstream version is at
 * least `upstream`, when `upstream` is a release of this package's own line (same major version, not
 * newer than the upload naming it): "V8 fixed in version 3.25" in chromium 35's changelog is not one.
 */
function firstUploadOf(
  entries: ChangelogEntry[],
  upstream: string,
  from: number,
  compare: (a: string, b: string) => number,
): number | undefined {
  const own = upstreamOf(entries[from]!.version);
  if (own.split(".")[0] !== upstream.split(".")[0] || compare(upstream, own) > 0) return undefined;
  let first: number | undefined;
  for (let i = from; i < entries.length; i++)
    if (compare(upstreamOf(entries[i]!.version), upstream) >= 0) first = i;
    else break;
  return first;
}

/** The entries of the changelog's own source package (the newest entry's). */
export function ownEntries(entries: ChangelogEntry[]): ChangelogEntry[] {
  const name = entries[0]?.package;
  return entries.filter((e) => e.package === name);
}

/**
 * For each CVE, the version that fixed it on the branch the changelog belongs to (its newest entry's).
 * The entries are in file order, newest first, and a changelog is one line of descent: every upload
 * above the one that fixed a CVE contains the fix. So the fix is credited to the oldest upload that says
 * it fixes the CVE (after the last one that reverted it), and the fixed version is the lowest version of
 * that upload and of the uploads of the same branch after it — a stable update "2.17.0-1~deb11u1"
 * that backports unstable's "2.17.0-1" carries its fixes at a lower version, and so does a rebuild the
 * changelog does not list (hence "2.17.0-1~" when the fix came from another branch). Uploads to other branches
 * merged into the file (a bookworm-security entry in trixie's changelog) are not in the line of descent.
 * Entries of another source package (firefox's history in firefox-esr's changelog) are another line.
 * Mentions that are not fixes ("not affected", "revert the fix for", "document", "the previous upload
 * fixed") credit nothing.
 */
export function fixedVersions(
  all: ChangelogEntry[],
  compare: (a: string, b: string) => number,
): Map<string, string> {
  const entries = ownEntries(all);
  const branch = branchOf(entries[0]?.distributions[0]);
  const fixedAt = new Map<string, number>();
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    for (const m of e.mentions) if (m.kind === "revert") fixedAt.delete(m.cve);
    for (const c of e.cves) if (!fixedAt.has(c)) fixedAt.set(c, i);
    for (const { cve, upstream } of e.fixedUpstream) {
      const first = firstUploadOf(entries, upstream, i, compare);
      if (first !== undefined && first > (fixedAt.get(cve) ?? -1)) fixedAt.set(cve, first);
    }
  }
  // Lowest version of the line of descent from each index to the top, and highest version below it.
  const lowestFrom: string[] = [];
  let low: string | undefined;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (i === 0 || branchOf(e.distributions[0]) === branch)
      if (low === undefined || compare(e.version, low) < 0) low = e.version;
    lowestFrom[i] = low!;
  }
  const highestBelow: (string | undefined)[] = [];
  let high: string | undefined;
  for (let i = entries.length - 1; i >= 0; i--) {
    highestBelow[i] = high;
    const v = entries[i]!.version;
    if (high === undefined || compare(v, high) > 0) high = v;
  }
  const out = new Map<string, string>();
  for (const [cve, i] of fixedAt) {
    const e = entries[i]!;
    const own = e.version;
    const lowest = lowestFrom[i]!;
    // An upload to another branch (unstable) reaches this one as rebuilds versioned below it
    // ("V~deb11u1", "V~bpo12+1"), which the changelog may not list: "V~" is below every one of them.
    const reach = i > 0 && branchOf(e.distributions[0]) !== branch ? `${own}~` : own;
    const candidate = compare(lowest, reach) < 0 ? lowest : reach;
    // A lower later version only stands for the fix when every upload without the fix is lower still.
    const below = highestBelow[i];
    out.set(cve, below !== undefined && compare(candidate, below) <= 0 ? own : candidate);
  }
  return out;
}
