// `berth advisory watch docker`: the Docker stack (docker.io, containerd, runc) in the configured suites.
// Every version newer than the one seen on the last run is reported with the CVEs its changelog credits
// to it (db/changelog.ts crediting). The state file makes "new" mean new since the last run; it is
// written only after a complete run.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cacheRoot } from "../common/cache.ts";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import type { Progress } from "../common/progress.ts";
import { changelogOf, recordsBySource } from "../db/importers/archive-changelog.ts";
import { Archive } from "../pkg/archive.ts";
import type { SourcesOverrides } from "../pkg/sources.ts";
import { repositoriesOf, resolveSources } from "../pkg/sources.ts";
import { compareVersions } from "../pkg/version.ts";
import { changelogFixes } from "./fixes.ts";

export const DOCKER_STACK = ["docker.io", "containerd", "runc"];

export interface WatchedVersion {
  package: string;
  source: string;
  version: string;
  /** The suites that carry it. */
  suites: string[];
  /** The version seen before it (on the last run, or the previous one in this report). */
  previous?: string;
  cves: string[];
}

interface WatchState {
  seen: Record<string, string>;
}

export function defaultWatchState(): string {
  return join(cacheRoot(), "advisory", "watch-docker.json");
}

function readState(path: string): WatchState {
  try {
    const s = JSON.parse(readFileSync(path, "utf8")) as WatchState;
    return typeof s.seen === "object" && s.seen ? s : { seen: {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { seen: {} };
    throw new BerthError(`${path}: not a watch state file (${(e as Error).message.split("\n")[0]})`);
  }
}

export async function watchPackages(o: {
  packages?: string[];
  sources?: SourcesOverrides;
  state?: string;
  progress?: Progress;
}): Promise<{ reports: WatchedVersion[]; suites: string[] }> {
  const packages = o.packages ?? DOCKER_STACK;
  const statePath = o.state ?? defaultWatchState();
  const state = readState(statePath);
  const cfg = resolveSources(o.sources ?? {});
  const archive = new Archive({ progress: o.progress });
  const index = await archive.loadIndex(repositoriesOf(cfg));
  const reports: WatchedVersion[] = [];
  for (const name of packages) {
    const recs = index.allVersions(name);
    if (!recs.length) throw new BerthError(`${name} is in none of the suites ${cfg.suites.join(", ")}`);
    const source = recs[0]!.source;
    const all = recordsBySource(index, new Set([source])).get(source) ?? [];
    const versions = [...new Set(recs.map((r) => r.sourceVersion))].sort(compareVersions);
    const seen = state.seen[name];
    const fresh = seen ? versions.filter((v) => compareVersions(v, seen) > 0) : versions.slice(-1);
    let previous = seen;
    for (const version of fresh) {
      const rec =
        recs.find((r) => r.sourceVersion === version && r.filename) ??
        all.find((r) => r.sourceVersion === version && r.filename);
      const text = rec ? await changelogOf(archive, index, rec) : undefined;
      // The first run has nothing seen: the newest upload's own fixes.
      const from = previous ?? previousUpload(text, version);
      const cves = text && from ? [...changelogFixes(text, from, version).keys()].sort() : [];
      reports.push({
        package: name,
        source,
        version,
        suites: [
          ...new Set(recs.filter((r) => r.sourceVersion === version).map((r) => r.origin.split("/")[0]!)),
        ],
        previous,
        cves,
      });
      previous = version;
    }
    state.seen[name] = versions[versions.length - 1]!;
  }
  await writeFileAtomic(statePath, `${JSON.stringify(state, null, 2)}\n`);
  return { reports, suites: cfg.suites };
}

/** The version of the upload before `version` in a changelog. */
function previousUpload(text: string | undefined, version: string): string | undefined {
  if (!text) return undefined;
  const versions = [...text.matchAll(/^\S+ \(([^)\s]+)\) /gm)].map((m) => m[1]!);
  const i = versions.indexOf(version);
  return i >= 0 ? versions[i + 1] : undefined;
}
