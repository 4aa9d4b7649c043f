// `berth db`: build and inspect the advisory database.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { contextOf, say, warn } from "../cli/context.ts";
import { BerthError, UsageError } from "../cli/errors.ts";
import { printJson, renderTable } from "../cli/output.ts";
import { cacheRoot } from "../common/cache.ts";
import { writeStreamAtomic } from "../common/fsutil.ts";
import { sha256File } from "../common/hash.ts";
import { httpGet } from "../common/http.ts";
import { Archive } from "../pkg/archive.ts";
import { repositoriesOf, resolveSources } from "../pkg/sources.ts";
import { inventoryOf } from "../scan/targets.ts";
import { AdvisoryDb, defaultDbPath, SCHEMA_VERSION } from "./database.ts";
import { importArchiveChangelogs } from "./importers/archive-changelog.ts";
import { importTrackerJson } from "./importers/debian-tracker.ts";
import { importAdvisoryList } from "./importers/dsa-list.ts";
import { importKernelCna, importKernelStreams } from "./importers/kernel.ts";
import { importOsv } from "./importers/osv.ts";

/** Where each source comes from when no location is given. */
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
];

/** A local path as is; a URL downloaded into Berth's cache first. */
async function localCopy(location: string): Promise<string> {
  if (!/^https?:\/\//.test(location)) return location;
  const name = location.replace(/[^A-Za-z0-9.]+/g, "_").slice(-120);
  const target = join(cacheRoot(), "db", "downloads", name);
  const res = await httpGet(location, { timeoutMs: 120_000 });
  await writeStreamAtomic(target, res.stream, []);
  return target;
}

export interface UpdateRequest {
  name: string;
  location?: string;
}

export function parseSourceOption(v: string): UpdateRequest {
  const eq = v.indexOf("=");
  const name = eq < 0 ? v : v.slice(0, eq);
  if (!SOURCE_NAMES.includes(name))
    throw new UsageError(`unknown source "${name}" (known: ${SOURCE_NAMES.join(", ")})`);
  return { name, location: eq < 0 ? undefined : v.slice(eq + 1) };
}

export async function updateSource(
  db: AdvisoryDb,
  req: UpdateRequest,
  o: { target?: string; cvesTxt?: string; progress?: import("../common/progress.ts").Progress },
): Promise<string> {
  const where = req.location ?? DEFAULT_LOCATIONS[req.name];
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
      const inv = await inventoryOf(o.target ?? "host");
      const codename = inv.os?.codename;
      if (!codename)
        throw new BerthError(`${inv.target}: no release codename in os-release; cannot pick suites`);
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
        inv.packages,
        codename,
        `${cfg.mirror} ${cfg.suites.join(",")}`,
        o.progress,
      );
      return `${r.pending.length} of ${r.checked} source packages have newer versions; ${r.records} CVE fixes from their changelogs`;
    }
  }
  throw new UsageError(`unknown source ${req.name}`);
}

export function ageDays(db: AdvisoryDb): number | undefined {
  const times = db.sources().map((s) => Date.parse(s.imported_at));
  if (!times.length) return undefined;
  return (Date.now() - Math.max(...times)) / 86_400_000;
}

export function registerDbCommands(program: Command): void {
  const db = program
    .command("db")
    .description("the advisory database: Debian tracker, DSA/DLA, OSV, kernel CNA, archive changelogs");

  db.command("update")
    .description("import advisory sources (each from a file, directory or URL) into the database")
    .option(
      "--source <name[=location]>",
      `source to import, repeatable: ${SOURCE_NAMES.join(", ")}`,
      (v: string, prev: UpdateRequest[] = []) => [...prev, parseSourceOption(v)],
    )
    .option("--cves-txt <path>", "with kernel-streams: the mainline introduce/fix list (CVEs.txt)")
    .option(
      "--target <target>",
      "with debian-archive: whose packages to look up (host, a root, an image)",
      "host",
    )
    .option("--db <path>", "database file", defaultDbPath())
    .option("--json", "print what was imported as JSON")
    .addHelpText(
      "after",
      `
Examples:
  berth db update --source debian-tracker=./tracker.json --source debian-dsa=./DSA.list
  berth db update --source kernel-cna=../shared/data/kernel-cna/cves.jsonl.gz
  berth db update --source kernel-streams=stream_fixes.json.gz --cves-txt CVEs.txt
  berth db update --source debian-archive --target host      newer .debs' changelogs for this host
  berth db update                                          every remote source from its default URL`,
    )
    .action(
      async (o: { source?: UpdateRequest[]; cvesTxt?: string; target: string; db: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const requests = o.source ?? Object.keys(DEFAULT_LOCATIONS).map((name) => ({ name }));
        const adb = new AdvisoryDb(o.db);
        const results: { source: string; result?: string; error?: string }[] = [];
        try {
          for (const req of requests) {
            try {
              results.push({
                source: req.name,
                result: await updateSource(adb, req, {
                  target: o.target,
                  cvesTxt: o.cvesTxt,
                  progress: ctx.progress,
                }),
              });
            } catch (e) {
              if (requests.length === 1) throw e;
              results.push({ source: req.name, error: (e as Error).message.split("\n")[0] });
            }
          }
        } finally {
          adb.close();
        }
        if (ctx.json) printJson(results);
        else
          for (const r of results)
            r.error ? warn(`${r.source}: ${r.error}`) : say(ctx, `${r.source}: ${r.result}`);
        if (results.some((r) => r.error)) process.exitCode = 1;
      },
    );

  db.command("status")
    .description("sources in the database, record counts, import times and age")
    .option("--db <path>", "database file", defaultDbPath())
    .option(
      "--max-age <days>",
      "warn when the newest import is older than this",
      (v) => Number(v),
      Number(process.env.BERTH_DB_MAX_AGE ?? 7),
    )
    .option("--json", "print as JSON")
    .action((o: { db: string; maxAge: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const adb = new AdvisoryDb(o.db);
      try {
        const sources = adb.sources();
        const age = ageDays(adb);
        const counts = Object.fromEntries(
          ["advisories", "vulnerabilities", "kernel_cna", "kernel_streams", "kernel_mainline"].map((t) => [
            t,
            (adb.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n,
          ]),
        );
        const stale = age === undefined || age > o.maxAge;
        if (ctx.json)
          return printJson({
            path: o.db,
            schemaVersion: SCHEMA_VERSION,
            sources,
            tables: counts,
            ageDays: age,
            stale,
          });
        say(ctx, `${o.db} (schema ${SCHEMA_VERSION})`);
        if (sources.length)
          say(
            ctx,
            renderTable(
              ["source", "records", "imported", "from"],
              sources.map((s) => [s.name, s.records, s.imported_at, s.location]),
            ),
          );
        say(
          ctx,
          Object.entries(counts)
            .map(([k, v]) => `${k}: ${v}`)
            .join(", "),
        );
        if (age === undefined) warn("the database is empty: run berth db update");
        else if (stale)
          warn(
            `the newest import is ${age.toFixed(1)} days old (more than ${o.maxAge}): run berth db update`,
          );
      } finally {
        adb.close();
      }
    });
}
