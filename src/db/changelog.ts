// Debian changelogs (debian/changelog, usr/share/doc/PKG/changelog.Debian.gz): the entries, and the CVE
// ids each upload names. Pure parsing; malformed trailing text is ignored, not fatal, because changelogs
// are prose.

export interface ChangelogEntry {
  package: string;
  version: string;
  distributions: string[];
  urgency?: string;
  date?: string;
  cves: string[];
}

const HEADER = /^(\S+) \(([^)\s]+)\) ([^;]*);(.*)$/;
const TRAILER = /^ -- .*?>\s+(.*)$/;
const CVE = /CVE-\d{4}-\d{4,7}/g;

export function parseChangelog(text: string): ChangelogEntry[] {
  const entries: ChangelogEntry[] = [];
  let cur: ChangelogEntry | undefined;
  let body: string[] = [];
  const close = () => {
    if (cur) cur.cves = [...new Set(body.join("\n").match(CVE) ?? [])].sort();
    body = [];
  };
  for (const line of text.split("\n")) {
    const h = HEADER.exec(line);
    if (h) {
      close();
      const urgency = /urgency=(\S+)/.exec(h[4]!)?.[1];
      cur = { package: h[1]!, version: h[2]!, distributions: h[3]!.trim().split(/\s+/), urgency, cves: [] };
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

/** For each CVE, the oldest version in the changelog whose entry names it: the version that fixed it. */
export function fixedVersions(
  entries: ChangelogEntry[],
  compare: (a: string, b: string) => number,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of entries)
    for (const c of e.cves) {
      const prev = out.get(c);
      if (!prev || compare(e.version, prev) < 0) out.set(c, e.version);
    }
  return out;
}
