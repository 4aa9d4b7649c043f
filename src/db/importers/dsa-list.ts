// The tracker's DSA.list / DLA.list text format:
//   [29 Mar 2023] DSA-5380-1 xorg-server - security update
//   	{CVE-2023-1393}
//   	[bullseye] - xorg-server 2:1.20.11-1+deb11u6
// Release lines may also say <not-affected> (reason), <end-of-life>, <unfixed>.

import { BerthError } from "../../common/errors.ts";
import type { AdvisoryDb } from "../database.ts";

export interface AdvisoryListEntry {
  id: string;
  date: string;
  package: string;
  title: string;
  cves: string[];
  releases: { release: string; package: string; version?: string; state?: string }[];
}

export function parseAdvisoryList(text: string, source = "advisory list"): AdvisoryListEntry[] {
  const out: AdvisoryListEntry[] = [];
  let cur: AdvisoryListEntry | undefined;
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const head = /^\[([^\]]+)\]\s+((?:DSA|DLA|DTSA)-\d+(?:-\d+)?)\s+(\S+)(?:\s+(.*))?$/.exec(line);
    if (head) {
      cur = {
        date: head[1]!,
        id: head[2]!,
        package: head[3]!,
        title: (head[4] ?? "").replace(/^-\s*/, ""),
        cves: [],
        releases: [],
      };

      out.push(cur);
      return;
    }
    if (!cur)
      throw new BerthError(`${source}:${i + 1}: expected an advisory header, got "${line.slice(0, 60)}"`);
    const cves = /^\s+\{([^}]*)\}\s*$/.exec(line);
    if (cves) {
      cur.cves.push(...cves[1]!.split(/\s+/).filter((c) => /^CVE-\d{4}-\d+$/.test(c)));
      return;
    }
    const rel = /^\s+\[([a-z-]+)\]\s+-\s+(\S+)(?:\s+(.*))?$/.exec(line);
    if (rel) {
      const rest = (rel[3] ?? "").trim();
      const state = /^<([^>]+)>/.exec(rest)?.[1];
      cur.releases.push({
        release: rel[1]!,
        package: rel[2]!,
        version: state ? undefined : rest.split(/\s+/)[0] || undefined,
        state,
      });
      return;
    }
    if (/^\s+NOTE:/.test(line)) return;
    throw new BerthError(`${source}:${i + 1}: unrecognised line "${line.slice(0, 60)}"`);
  });
  return out;
}

export function importAdvisoryList(
  db: AdvisoryDb,
  name: "debian-dsa" | "debian-dla",
  text: string,
  location: string,
  digest?: string,
): number {
  const entries = parseAdvisoryList(text, location);
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version, advisory)
     VALUES (?, ?, 'debian', ?, ?, ?, ?, ?)`,
  );
  return db.replaceSource(name, location, digest, [], () => {
    let n = 0;
    for (const e of entries)
      for (const r of e.releases) {
        const status =
          r.state === "not-affected"
            ? "not-affected"
            : r.state === "end-of-life"
              ? "end-of-life"
              : r.version
                ? "fixed"
                : "no-fix-yet";
        for (const cve of e.cves.length ? e.cves : [e.id]) {
          insert.run(name, cve, r.package, r.release, status, r.version ?? null, e.id);
          n++;
        }
      }
    return n;
  });
}
