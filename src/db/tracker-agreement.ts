// How far the archive's changelogs agree with the Debian security tracker, for one release: the
// changelogs of the tracker's packages are read from the release's suites and judged against the
// tracker's verdicts (db/changelog-precision.ts). Used by the scan benchmark and its test.

import type { Progress } from "../common/progress.ts";
import { Archive } from "../pkg/archive.ts";
import { repositoriesOf, resolveSources } from "../pkg/sources.ts";
import { compareVersions } from "../pkg/version.ts";
import { type ChangelogEntry, fixedVersions, parseChangelog } from "./changelog.ts";
import { type Judgement, judgePackage, type ReleaseTruth } from "./changelog-precision.ts";
import { sourceChangelogs } from "./importers/archive-changelog.ts";

export interface ReleaseChangelogs {
  /** The release whose suites were read (a tracker's "sid" is judged on trixie's changelogs). */
  suite: string;
  changelogs: Map<string, { version: string; entries: ChangelogEntry[] }>;
}

/** The parsed changelogs of `sources` in `release`, `release`-updates and `release`-security. */
export async function releaseChangelogs(
  release: string,
  sources: Iterable<string>,
  o: { archive?: Archive; progress?: Progress } = {},
): Promise<ReleaseChangelogs> {
  const archive = o.archive ?? new Archive({ progress: o.progress });
  const cfg = resolveSources({ suites: [release, `${release}-updates`, `${release}-security`] });
  const index = await archive.loadIndex(repositoriesOf(cfg));
  const texts = await sourceChangelogs(archive, index, sources, o.progress);
  const changelogs = new Map<string, { version: string; entries: ChangelogEntry[] }>();
  for (const [source, { version, text }] of texts)
    changelogs.set(source, { version, entries: parseChangelog(text) });
  return { suite: release, changelogs };
}

/** Credits by a rule (Berth's, or another for comparison) judged against the tracker's verdicts. */
export function judgeRelease(
  read: ReleaseChangelogs,
  truth: ReleaseTruth,
  credit: (entries: ChangelogEntry[]) => Map<string, string> = (e) => fixedVersions(e, compareVersions),
): Judgement[] {
  const out: Judgement[] = [];
  for (const pkg of truth.verdicts.keys()) {
    const c = read.changelogs.get(pkg);
    if (c) out.push(...judgePackage(pkg, c.entries, credit(c.entries), truth, compareVersions));
  }
  return out;
}

/**
 * The crediting rule Berth used before changelog prose was read: every CVE an upload names is credited
 * to the oldest version naming it. Kept to measure against.
 */
export function creditEveryMention(entries: ChangelogEntry[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of entries)
    for (const c of [...e.cves, ...e.mentions.map((m) => m.cve)]) {
      const prev = out.get(c);
      if (!prev || compareVersions(e.version, prev) < 0) out.set(c, e.version);
    }
  return out;
}
