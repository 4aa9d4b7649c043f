// `berth db`: build and inspect the advisory database.

import type { Command } from "commander";
import { BerthError } from "../../common/errors.ts";
import { renderTable } from "../../common/format.ts";
import { AdvisoryDb, defaultDbPath, SCHEMA_VERSION } from "../../db/database.ts";
import {
  defaultRequests,
  parseSourceRequest,
  SOURCE_NAMES,
  type UpdateRequest,
  updateSources,
} from "../../db/update.ts";
import { inventoryOf } from "../../scan/targets.ts";
import { contextOf, say, warn } from "../context.ts";
import { printJson } from "../output.ts";

/** "3.2 h", "8.1 d": an age for a table. */
export function formatAge(days: number): string {
  if (days < 1 / 24) return `${Math.max(0, Math.round(days * 1440))} min`;
  if (days < 1) return `${(days * 24).toFixed(1)} h`;
  return `${days.toFixed(1)} d`;
}

export function registerDbCommands(program: Command): void {
  const db = program
    .command("db")
    .description(
      "the advisory database: Debian tracker, DSA/DLA, OSV, kernel CNA, archive changelogs, Berth advisories",
    );

  db.command("update")
    .description("import advisory sources (each from a file, directory or URL) into the database")
    .option(
      "--source <name[=location]>",
      `source to import, repeatable: ${SOURCE_NAMES.join(", ")}`,
      (v: string, prev: UpdateRequest[] = []) => [...prev, parseSourceRequest(v)],
    )
    .option("--cves-txt <path>", "with kernel-streams: the mainline introduce/fix list (CVEs.txt)")
    .option(
      "--target <target>",
      "with debian-archive: whose packages to look up (host, a root, an image)",
      "host",
    )
    .option(
      "--trusted-root <file>",
      "with berth-advisories: the repository's root.json (default: the one baked into a Berth image)",
    )
    .option("--db <path>", "database file", defaultDbPath())
    .option("--json", "print what was imported as JSON")
    .addHelpText(
      "after",
      `
Examples:
  berth db update                                          every default source it can reach
  berth db update --source debian-tracker=./tracker.json --source debian-dsa=./DSA.list
  berth db update --source kernel-cna=../shared/data/kernel-cna/cves.jsonl.gz
  berth db update --source kernel-streams=stream_fixes.json.gz --cves-txt CVEs.txt
  berth db update --source debian-archive --target host      newer .debs' changelogs for this host
  berth db update --source berth-advisories=http://repo.example:8080 --trusted-root root.json

A bare update tries every remote source at its default URL and the archive's changelogs for the
target, prints one line per source, and fails only when no source could be updated. With --source,
it fails when any named source fails.`,
    )
    .action(
      async (
        o: { source?: UpdateRequest[]; cvesTxt?: string; target: string; trustedRoot?: string; db: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const requests = o.source ?? defaultRequests();
        const adb = new AdvisoryDb(o.db);
        let results: Awaited<ReturnType<typeof updateSources>>;
        try {
          results = await updateSources(adb, requests, {
            cvesTxt: o.cvesTxt,
            trustedRoot: o.trustedRoot,
            progress: ctx.progress,
            archiveTarget: async () => {
              const inv = await inventoryOf(o.target);
              return { name: inv.target, codename: inv.os?.codename, packages: inv.packages };
            },
          });
        } finally {
          adb.close();
        }
        const failed = results.filter((r) => r.error);
        // One named source that failed is the command's error, as one line.
        if (o.source && requests.length === 1 && failed.length) throw new BerthError(failed[0]!.error!);
        if (ctx.json) printJson(results);
        else
          for (const r of results)
            r.error ? warn(`${r.source}: not updated: ${r.error}`) : say(ctx, `${r.source}: ${r.result}`);
        const noneUpdated = failed.length === results.length;
        if (o.source ? failed.length > 0 : noneUpdated) process.exitCode = 1;
      },
    );

  db.command("status")
    .description("sources in the database, record counts, import times and each source's age")
    .option("--db <path>", "database file", defaultDbPath())
    .option(
      "--max-age <days>",
      "warn about sources older than this",
      (v) => Number(v),
      Number(process.env.BERTH_DB_MAX_AGE ?? 7),
    )
    .option("--json", "print as JSON")
    .action((o: { db: string; maxAge: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const adb = new AdvisoryDb(o.db);
      try {
        const ages = new Map(adb.sourceAges().map((a) => [a.name, a.ageDays]));
        const sources = adb.sources().map((s) => ({
          ...s,
          ageDays: ages.get(s.name)!,
          stale: ages.get(s.name)! > o.maxAge,
        }));
        const counts = Object.fromEntries(
          [
            "advisories",
            "vulnerabilities",
            "kernel_cna",
            "kernel_streams",
            "kernel_mainline",
            "berth_advisories",
          ].map((t) => [t, (adb.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n]),
        );
        const newest = sources.length ? Math.min(...sources.map((s) => s.ageDays)) : undefined;
        const stale = sources.filter((s) => s.stale);
        if (ctx.json)
          return printJson({
            path: o.db,
            schemaVersion: SCHEMA_VERSION,
            sources,
            tables: counts,
            ageDays: newest,
            stale: newest === undefined || stale.length > 0,
          });
        say(ctx, `${o.db} (schema ${SCHEMA_VERSION})`);
        if (sources.length)
          say(
            ctx,
            renderTable(
              ["source", "records", "imported", "age", "from"],
              sources.map((s) => [
                s.name,
                s.records,
                s.imported_at,
                `${formatAge(s.ageDays)}${s.stale ? " (old)" : ""}`,
                s.location,
              ]),
            ),
          );
        say(
          ctx,
          Object.entries(counts)
            .map(([k, v]) => `${k}: ${v}`)
            .join(", "),
        );
        if (newest === undefined) warn("the database is empty: run berth db update");
        else if (stale.length)
          warn(
            `${stale.map((s) => `${s.name} is ${s.ageDays.toFixed(1)} days old`).join(", ")} (more than ${o.maxAge}): run berth db update`,
          );
      } finally {
        adb.close();
      }
    });
}
