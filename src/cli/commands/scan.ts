// `berth scan`: vulnerabilities of the host, a root file system, an image, or a kernel release.

import { existsSync } from "node:fs";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { BERTH_VERSION } from "../../common/version.ts";
import { AdvisoryDb, defaultDbPath } from "../../db/database.ts";
import { parseSeverity, type Severity, severityRank } from "../../db/severity.ts";
import { renderFindings, summaryLine, toCycloneDx, toSarif } from "../../scan/formats.ts";
import type { Inventory } from "../../scan/inventory.ts";
import { upstreamVersion } from "../../scan/kernel-match.ts";
import { type Finding, matchInventory } from "../../scan/match.ts";
import { inventoryOf } from "../../scan/targets.ts";
import { contextOf, say, warn } from "../context.ts";
import { scanResultOf } from "../scan-result.ts";

interface ScanFlags {
  format?: string;
  json?: boolean;
  output?: string;
  ignoreUnfixed?: boolean;
  severity?: string;
  failOn?: string;
  release?: string;
  db: string;
  maxAge: number;
}

function filterFindings(findings: Finding[], o: ScanFlags): Finding[] {
  let out = findings;
  if (o.ignoreUnfixed) out = out.filter((f) => f.status === "fixed");
  if (o.severity) {
    const wanted = new Set(o.severity.split(",").map((s) => parseSeverityOrUsage(s)));
    out = out.filter((f) => wanted.has(f.severity));
  }
  return out;
}

function parseSeverityOrUsage(s: string): Severity {
  try {
    return parseSeverity(s);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function openDb(o: ScanFlags): AdvisoryDb {
  if (!existsSync(o.db)) throw new BerthError(`no advisory database at ${o.db}: run berth db update first`);
  const db = new AdvisoryDb(o.db, { readOnly: true });
  const ages = db.sourceAges();
  if (!ages.length) warn(`the advisory database ${o.db} is empty: run berth db update`);
  const old = ages.filter((a) => a.ageDays > o.maxAge);
  // Every source is matched against; each one past the limit is named.
  if (old.length)
    warn(
      `the advisory data matched against is more than ${o.maxAge} days old: ${old.map((a) => `${a.name} (${a.ageDays.toFixed(1)} days)`).join(", ")}; run berth db update`,
    );
  return db;
}

async function emit(
  inv: Inventory,
  all: Finding[],
  db: AdvisoryDb,
  o: ScanFlags,
  cmd: Command,
): Promise<void> {
  const ctx = contextOf(cmd);
  const findings = filterFindings(all, o);
  const result = scanResultOf(inv, findings, db);
  const format = o.json ? "json" : (o.format ?? "table");
  let text: string;
  switch (format) {
    case "table":
      text = renderFindings(result);
      break;
    case "json":
      text = JSON.stringify(result, null, 2);
      break;
    case "sarif":
      text = JSON.stringify(toSarif(result, BERTH_VERSION), null, 2);
      break;
    case "cyclonedx":
      text = toCycloneDx(result, inv, BERTH_VERSION);
      break;
    default:
      throw new UsageError(`unknown format "${format}" (table, json, sarif, cyclonedx)`);
  }
  if (o.output) {
    await writeFileAtomic(o.output, `${text}\n`);
    if (!ctx.quiet) process.stderr.write(`${summaryLine(result.summary)}; report written to ${o.output}\n`);
  } else if (format === "table") say(ctx, text);
  else process.stdout.write(`${text}\n`);
  if (o.failOn) {
    const threshold = parseSeverityOrUsage(o.failOn);
    const over = findings.filter((f) => severityRank(f.severity) >= severityRank(threshold));
    if (over.length) {
      process.stderr.write(`berth: ${over.length} vulnerabilities at or above ${threshold}\n`);
      process.exitCode = 1;
    }
  }
}

function scanOptions(cmd: Command): Command {
  return cmd
    .option("--format <format>", "table, json, sarif or cyclonedx", "table")
    .option("--json", "same as --format json")
    .option("--output <file>", "write the report to a file (atomically)")
    .option("--ignore-unfixed", "only vulnerabilities with a fixed version")
    .option("--severity <list>", "only these severities, e.g. HIGH,CRITICAL")
    .option("--fail-on <severity>", "exit 1 when a vulnerability at or above this severity is found")
    .option("--release <codename>", "match against this Debian release instead of the target's os-release")
    .option("--db <path>", "advisory database", defaultDbPath())
    .option(
      "--max-age <days>",
      "warn when the database is older than this",
      (v) => Number(v),
      Number(process.env.BERTH_DB_MAX_AGE ?? 7),
    );
}

async function scanKernel(
  release: string | undefined,
  debianVersion: string | undefined,
  o: ScanFlags,
  cmd: Command,
): Promise<void> {
  const db = openDb(o);
  try {
    let inv: Inventory;
    if (!release) {
      const host = await inventoryOf("host");
      inv = {
        target: "running kernel",
        kind: "kernel",
        os: host.os,
        packages: [],
        kernels: host.kernels.filter((k) => k.running),
      };
    } else {
      const upstream = upstreamVersion(debianVersion ?? release);
      if (!upstream) throw new UsageError(`cannot read a kernel version in "${release}"`);
      const debian = debianVersion
        ? { package: `linux-image-${release}`, packageVersion: debianVersion }
        : {};
      inv = {
        target: `kernel ${release}`,
        kind: "kernel",
        os: o.release ? { id: "debian", codename: o.release } : undefined,
        packages: [],
        kernels: [{ release, upstream, running: false, ...debian }],
      };
    }
    await emit(inv, matchInventory(db, inv, { release: o.release ?? inv.os?.codename }), db, o, cmd);
  } finally {
    db.close();
  }
}

export function registerScanCommands(program: Command): void {
  scanOptions(
    program
      .command("scan")
      .description(
        "vulnerabilities of the host, a root file system, an OCI layout, a docker save archive, a Docker image, a Berth OS image, or a kernel",
      )
      .argument(
        "<target>",
        "host | DIR | ARCHIVE.tar | docker:IMAGE | a berth os build output directory | kernel",
      )
      .argument(
        "[release]",
        "with kernel: a release such as 4.4.0, 6.18.44 or 6.1.0-26-amd64 (default: the running kernel)",
      )
      .argument(
        "[debianVersion]",
        "with kernel: the linux-image package version of a Debian kernel, e.g. 6.1.112-1",
      ),
  )
    .addHelpText(
      "after",
      `
Examples:
  berth scan host
  berth scan /srv/rootfs --format sarif --output scan.sarif
  berth scan docker:debian:trixie --ignore-unfixed --fail-on HIGH
  berth scan image.tar --format cyclonedx
  berth scan out/container-host
  berth scan kernel                              the running kernel
  berth scan kernel 4.4.0
  berth scan kernel 6.1.0-26-amd64 6.1.112-1 --release bookworm`,
    )
    .action(
      async (
        target: string,
        release: string | undefined,
        debianVersion: string | undefined,
        o: ScanFlags,
        cmd: Command,
      ) => {
        if (target === "kernel") return scanKernel(release, debianVersion, o, cmd);
        if (release)
          throw new UsageError(`unexpected argument "${release}" (only "berth scan kernel" takes more)`);
        const db = openDb(o);
        try {
          const inv = await inventoryOf(target);
          await emit(inv, matchInventory(db, inv, { release: o.release }), db, o, cmd);
        } finally {
          db.close();
        }
      },
    );
}
