// Real Debian builds of a library for the live-patching tests: every version of a package the archive
// serves for this machine's release (the release, -updates and -security), downloaded through
// src/pkg (hash-checked, cached under /var/cache/berth) and extracted once per test run.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Archive } from "../../src/pkg/archive.ts";
import { extractDeb } from "../../src/pkg/deb.ts";
import type { PackageRecord } from "../../src/pkg/index.ts";
import { repositoriesOf, resolveSources } from "../../src/pkg/sources.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import { sharedFixture } from "../helpers.ts";

export function releaseCodename(): string {
  const m = /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync("/etc/os-release", "utf8"));
  if (!m) throw new Error("no VERSION_CODENAME in /etc/os-release");
  return m[1]!;
}

export interface DebianBuild {
  version: string;
  deb: string;
  /** Where the package's files were extracted. */
  root: string;
}

/** Every version of `pkg` the archive serves, newest first, each downloaded and extracted. */
export async function archiveBuilds(pkg: string, codename = releaseCodename()): Promise<DebianBuild[]> {
  const archive = new Archive();
  const suites = [codename, `${codename}-updates`, `${codename}-security`];
  const index = await archive.loadIndex(repositoriesOf(resolveSources({ suites })));
  const recs = [...index.allVersions(pkg)].sort((a, b) => compareVersions(b.version, a.version));
  const seen = new Set<string>();
  const unique: PackageRecord[] = recs.filter((r) => !seen.has(r.version) && seen.add(r.version));
  const out: DebianBuild[] = [];
  for (const r of unique) {
    const deb = await archive.fetchDeb(r);
    const root = await sharedFixture(
      `deb-${pkg}-${r.version.toLowerCase().replace(/[^a-z0-9._-]/g, "_")}`,
      async (dir) => {
        await extractDeb(deb, dir);
      },
    );
    out.push({ version: r.version, deb, root });
  }
  return out;
}

/** The path of a library inside an extracted build (usrmerge: /lib or /usr/lib). */
export function libIn(b: DebianBuild, name: string): string {
  for (const d of ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]) {
    const p = join(b.root, d, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not in ${b.deb}`);
}
