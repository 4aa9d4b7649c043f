// `berth advisory`: Berth Security Advisories from two releases, and the Docker watch.

import { existsSync } from "node:fs";
import type { Command } from "commander";
import { generateAdvisories } from "../../advisory/generate.ts";
import { DOCKER_STACK, defaultWatchState, watchPackages } from "../../advisory/watch.ts";
import { AdvisoryDb, defaultDbPath } from "../../db/database.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";
import { addSourceOptions } from "./pkg.ts";

interface SourceFlags {
  suite?: string[];
  component?: string[];
  arch?: string;
  mirror?: string;
  securityMirror?: string;
  keyring?: string;
  sources?: string;
}

export function registerAdvisoryCommands(program: Command): void {
  const adv = program
    .command("advisory")
    .description("Berth Security Advisories (OSV) from two releases; the Docker watch");

  adv
    .command("generate")
    .description("compare two releases and write BSA-YYYY-NNNN advisories (OSV JSON) and summary.md")
    .argument("<older>", "the older release: a berth os build output directory or an OCI layout")
    .argument("<newer>", "the newer release of the same kind")
    .option("--out <dir>", "where to write advisories/ and summary.md", "advisories")
    .option("--registry <file>", "the id registry that keeps numbering stable (default: OUT/ids.json)")
    .option("--db <path>", "advisory database consulted too, when it exists", defaultDbPath())
    .option("--json", "print the advisories written as JSON")
    .addHelpText(
      "after",
      `
Examples:
  berth advisory generate out/v1 out/v2 --out bsa
  berth advisory generate old-oci/ new-oci/ --out bsa --registry /srv/berth/bsa-ids.json
  berth repo add /srv/repo advisory bsa/advisories/BSA-2026-0001.json`,
    )
    .action(
      async (
        older: string,
        newer: string,
        o: { out: string; registry?: string; db: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const db = existsSync(o.db) ? new AdvisoryDb(o.db, { readOnly: true }) : undefined;
        try {
          const r = await generateAdvisories(older, newer, {
            out: o.out,
            registry: o.registry,
            db,
            progress: ctx.progress,
          });
          if (ctx.json) return printJson(r);
          for (const a of r.advisories)
            say(ctx, `${a.id} ${a.source} ${a.from} -> ${a.to} ${a.severity}: ${a.cves.join(" ")}`);
          say(ctx, `${r.advisories.length} advisories, ${r.others.length} other changes; ${r.summary}`);
        } finally {
          db?.close();
        }
      },
    );

  const watch = adv.command("watch").description("follow packages in the configured suites");
  addSourceOptions(
    watch
      .command("docker")
      .description(`report new versions of ${DOCKER_STACK.join(", ")} with the CVEs their changelogs name`)
      .option("--state <file>", "what was seen on the last run", defaultWatchState())
      .option("--json", "print as JSON"),
  )
    .addHelpText(
      "after",
      `
Examples:
  berth advisory watch docker --suite trixie,trixie-security
  berth advisory watch docker --json --state /var/lib/berth/watch-docker.json`,
    )
    .action(async (o: SourceFlags & { state: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const r = await watchPackages({
        state: o.state,
        progress: ctx.progress,
        sources: {
          file: o.sources,
          mirror: o.mirror,
          securityMirror: o.securityMirror,
          suites: o.suite,
          components: o.component,
          architecture: o.arch,
          keyring: o.keyring,
        },
      });
      if (ctx.json) return printJson(r);
      if (!r.reports.length) say(ctx, `nothing new in ${r.suites.join(", ")}`);
      for (const v of r.reports)
        say(
          ctx,
          `${v.package} ${v.version} (${v.suites.join(", ")})${v.previous ? `, after ${v.previous}` : ""}: ${v.cves.length ? v.cves.join(" ") : "no CVEs named"}`,
        );
    });
}
