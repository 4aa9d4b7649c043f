// `berth advisory generate`: two releases in, Berth Security Advisories out — one OSV file per upgraded
// source package that fixes at least one CVE (advisories/BSA-YYYY-NNNN.json), and summary.md.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import type { Progress } from "../common/progress.ts";
import { silentProgress } from "../common/progress.ts";
import type { AdvisoryDb } from "../db/database.ts";
import { Archive } from "../pkg/archive.ts";
import { repositoriesOf, resolveSources } from "../pkg/sources.ts";
import { compareReleases, type SourceChange } from "./compare.ts";
import { fixesOf } from "./fixes.ts";
import { assignId, fixKey, readRegistry, writeRegistry } from "./ids.ts";
import { type Bsa, severityOf, toMarkdown, toOsv } from "./osv.ts";
import { readRelease } from "./release.ts";

export interface GenerateOptions {
  out: string;
  /** The id registry (default: OUT/ids.json). */
  registry?: string;
  db?: AdvisoryDb;
  /** Publication time (default: now). */
  now?: Date;
  progress?: Progress;
}

export interface GenerateResult {
  advisories: {
    id: string;
    file: string;
    source: string;
    from: string;
    to: string;
    cves: string[];
    severity: string;
  }[];
  others: SourceChange[];
  summary: string;
}

export async function generateAdvisories(
  olderPath: string,
  newerPath: string,
  o: GenerateOptions,
): Promise<GenerateResult> {
  const older = await readRelease(olderPath);
  const newer = await readRelease(newerPath);
  if (older.kind !== newer.kind)
    throw new BerthError("the two releases must be of one kind (two OS builds or two images)");
  const codename = newer.codename ?? older.codename;
  if (!codename)
    throw new BerthError(`${newerPath}: cannot tell which Debian release its packages come from`);
  const changes = compareReleases(older, newer);
  const archive = new Archive({ progress: o.progress });
  const cfg = resolveSources({ suites: [codename, `${codename}-updates`, `${codename}-security`] });
  const index = await archive.loadIndex(repositoriesOf(cfg));
  const now = o.now ?? new Date();
  const published = `${now.toISOString().slice(0, 19)}Z`;
  const registryPath = o.registry ?? join(o.out, "ids.json");
  const reg = readRegistry(registryPath);
  const bsas: Bsa[] = [];
  const others: SourceChange[] = [];
  const progress = o.progress ?? silentProgress;
  const task = progress.task("reading changelogs of upgraded packages", changes.length);
  try {
    for (const change of changes) {
      const fixes = await fixesOf(change, codename, archive, index, o.db);
      task.advance(1);
      if (!fixes.length) {
        others.push(change);
        continue;
      }
      const id = assignId(reg, fixKey(change.source, change.to!, codename), now.getUTCFullYear());
      bsas.push({ id, change, fixes, severity: severityOf(fixes), older, newer, codename, published });
    }
  } finally {
    task.done();
  }
  mkdirSync(join(o.out, "advisories"), { recursive: true });
  const advisories: GenerateResult["advisories"] = [];
  for (const b of bsas) {
    const file = join(o.out, "advisories", `${b.id}.json`);
    await writeFileAtomic(file, `${JSON.stringify(toOsv(b), null, 2)}\n`);
    advisories.push({
      id: b.id,
      file,
      source: b.change.source,
      from: b.change.from!,
      to: b.change.to!,
      cves: b.fixes.map((f) => f.cve),
      severity: b.severity,
    });
  }
  const summary = join(o.out, "summary.md");
  await writeFileAtomic(summary, toMarkdown(bsas, others, older, newer));
  await writeRegistry(registryPath, reg);
  return { advisories, others, summary };
}
