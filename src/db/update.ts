// Updating the advisory database: one source (a file, a directory or a URL), or every default source at
// once. A machine that reaches only the Debian archive still updates what it can: each source is tried
// on its own, remote downloads in parallel, and each gets a result line; the run fails only when no
// source could be updated.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot } from "../common/cache.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { writeStreamAtomic } from "../common/fsutil.ts";
import { sha256File } from "../common/hash.ts";
import { httpGet } from "../common/http.ts";
import type { Progress } from "../common/progress.ts";
import { Archive } from "../pkg/archive.ts";
import { repositoriesOf, resolveSources } from "../pkg/sources.ts";
import type { InstalledPackage } from "../pkg/status.ts";
import type { AdvisoryDb } from "./database.ts";
import { importArchiveChangelogs } from "./importers/archive-changelog.ts";
import { fetchBerthAdvisories, importBerthAdvisories } from "./importers/berth-advisories.ts";
import { importTrackerJson } from "./importers/debian-tracker.ts";
import { importAdvisoryList } from "./importers/dsa-list.ts";
import { importKernelCna, importKernelStreams } from "./importers/kernel.ts";
import { importOsv } from "./importers/osv.ts";

/** Where each remote source comes from when no location is given. */
export const DEFAULT_LOCATIONS: Record<string, string> = {
  "debian-tracker": "https://security-tracker.debian.org/tracker/data/json",
  "debian-dsa": "https://salsa.debian.org/security-tracker-team/security-tracker/-/raw/master/data/DSA/list",
  "debian-dla": "https://salsa.debian.org/security-tracker-team/security-tracker/-/raw/master/data/DLA/list",
  osv: "https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip",
  "kernel-streams":
    "https://raw.githubusercontent.com/nluedtke/linux_kernel_cves/master/data/stream_fixes.json",
};

export const SOURCE_NAMES = [
  "debian-tracker",
  "debian-dsa",
  "debian-dla",
  "osv",
  "kernel-cna",
  "kernel-streams",
  "debian-archive",
  "berth-advisories",
];

export interface UpdateRequest {
  name: string;
  location?: string;
  /** A local copy of a remote location, already downloaded. */
  fetched?: string;
}

export function parseSourceRequest(v: string): UpdateRequest {
  const eq = v.indexOf("=");
  const name = eq < 0 ? v : v.slice(0, eq);
  if (!SOURCE_NAMES.includes(name))
    throw new UsageError(`unknown source "${name}" (known: ${SOURCE_NAMES.join(", ")})`);
  return { name, location: eq < 0 ? undefined : v.slice(eq + 1) };
}

/**
 * The sources a bare `berth db update` updates: every remote source at its default URL, and the
 * archive's changelogs for the target's pending updates (the one source the Debian archive alone serves).
 */
export function defaultRequests(): UpdateRequest[] {
  return [...Object.keys(DEFAULT_LOCATIONS).map((name) => ({ name })), { name: "debian-archive" }];
}

/** The packages and release of the target whose pending updates the debian-archive source reads. */
export interface ArchiveTarget {
  name: string;
  codename?: string;
  packages: InstalledPackage[];
}

export interface UpdateOptions {
  /** Resolves the debian-archive source's target (the CLI reads it through src/scan). */
  archiveTarget?: () => Promise<ArchiveTarget>;
  /** With kernel-streams: the mainline introduce/fix list. */
  cvesTxt?: string;
  /** With berth-advisories: the repository's trusted root (default: the one baked into the image). */
  trustedRoot?: string;
  progress?: Progress;
}

export interface SourceResult {
  source: string;
  location?: string;
  /** What was imported, when the source was updated. */
  result?: string;
  /** Why not, when it was not (one line). */
  error?: string;
}

const REMOTE = /^https?:\/\//;

/** A local path as is; a URL downloaded into Berth's cache first. */
async function download(location: string): Promise<string> {
  if (!REMOTE.test(location)) return location;
  const name = location.replace(/[^A-Za-z0-9.]+/g, "_").slice(-120);
  const target = join(cacheRoot(), "db", "downloads", name);
  const res = await httpGet(location, { timeoutMs: 120_000 });
  await writeStreamAtomic(target, res.stream, []);
  return target;
}

function whereOf(req: UpdateRequest): string | undefined {
  return req.location ?? DEFAULT_LOCATIONS[req.name];
}

/** Updates one source. Returns a one-line summary of what was imported. */
export async function updateSource(
  db: AdvisoryDb,
  req: UpdateRequest,
  o: UpdateOptions = {},
): Promise<string> {
  const where = whereOf(req);
  const localCopy = async (location: string) => (location === where && req.fetched) || download(location);
  switch (req.name) {
    case "debian-tracker": {
      const path = await localCopy(where!);
      let data: unknown;
      try {
        data = JSON.parse(await readFile(path, "utf8"));
      } catch (e) {
        throw new BerthError(`${where}: not valid JSON (${(e as Error).message.split("\n")[0]})`);
      }
      return `${importTrackerJson(db, data, where!, await sha256File(path))} release statuses`;
    }
    case "debian-dsa":
    case "debian-dla": {
      const path = await localCopy(where!);
      return `${importAdvisoryList(db, req.name, await readFile(path, "utf8"), where!, await sha256File(path))} advisory lines`;
    }
    case "osv":
      return `${await importOsv(db, await localCopy(where!))} affected ranges`;
    case "kernel-cna":
      if (!where)
        throw new UsageError(
          "kernel-cna needs a location: --source kernel-cna=PATH (CVE JSON 5 records: .jsonl[.gz] or a directory)",
        );
      return `${await importKernelCna(db, await localCopy(where))} kernel CVE records`;
    case "kernel-streams":
      return `${await importKernelStreams(db, await localCopy(where!), o.cvesTxt ? await localCopy(o.cvesTxt) : undefined)} per-branch fixes and mainline ranges`;
    case "debian-archive": {
      if (!o.archiveTarget) throw new BerthError("debian-archive: no target to read packages from");
      const target = await o.archiveTarget();
      const codename = target.codename;
      if (!codename)
        throw new BerthError(`${target.name}: no release codename in os-release; cannot pick suites`);
      const cfg = resolveSources({
        suites: [codename, `${codename}-updates`, `${codename}-security`],
        mirror: req.location,
      });
      const archive = new Archive({ progress: o.progress });
      const index = await archive.loadIndex(repositoriesOf(cfg));
      const r = await importArchiveChangelogs(
        db,
        archive,
        index,
        target.packages,
        codename,
        `${cfg.mirror} ${cfg.suites.join(",")}`,
        o.progress,
      );
      const unread = r.unreadable.length ? ` (${r.unreadable.length} not on the mirror)` : "";
      return `${r.pending.length} of ${r.checked} source packages have newer versions; ${r.records} CVE fixes from their changelogs${unread}`;
    }
    case "berth-advisories": {
      const { url, docs } = await fetchBerthAdvisories(req.location, { trustedRoot: o.trustedRoot });
      const rows = importBerthAdvisories(db, docs, url);
      return `${docs.length} Berth Security Advisories (${rows} package fixes) from ${url}`;
    }
  }
  throw new UsageError(`unknown source ${req.name}`);
}

/**
 * Updates each requested source on its own: remote files are downloaded in parallel first (into the
 * cache, so the import that follows reads them locally), then each source is imported. A source that
 * fails gets its error; the others go on.
 */
export async function updateSources(
  db: AdvisoryDb,
  requests: UpdateRequest[],
  o: UpdateOptions = {},
): Promise<SourceResult[]> {
  const downloads = new Map<UpdateRequest, Promise<string>>();
  for (const req of requests) {
    const where = whereOf(req);
    if (where && REMOTE.test(where) && !["debian-archive", "berth-advisories"].includes(req.name))
      downloads.set(req, download(where));
  }
  for (const p of downloads.values()) p.catch(() => {});
  const results: SourceResult[] = [];
  for (const req of requests) {
    const location = whereOf(req);
    try {
      const fetched = await downloads.get(req);
      results.push({ source: req.name, location, result: await updateSource(db, { ...req, fetched }, o) });
    } catch (e) {
      if (e instanceof UsageError) throw e;
      results.push({ source: req.name, location, error: (e as Error).message.split("\n")[0] });
    }
  }
  return results;
}
