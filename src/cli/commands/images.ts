// `berth images`: build, list, show, rescan and keep current the curated middleware images.

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { formatBytes, renderTable } from "../../common/format.ts";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { BERTH_VERSION } from "../../common/version.ts";
import { AdvisoryDb, defaultDbPath } from "../../db/database.ts";
import { buildCuratedImage, type ImageBuildRecord, readBuildRecord } from "../../images/build.ts";
import {
  definitionNames,
  definitionPath,
  type OutdatedImage,
  outdatedImage,
  readDefinitions,
  ViewCache,
} from "../../images/catalog.ts";
import { DEFAULT_SUITES, type ImageDefinition, readDefinition } from "../../images/definition.ts";
import { summarizeFindings } from "../../images/gate.ts";
import { viewOptionsOf } from "../../images/plan.ts";
import { Archive } from "../../pkg/archive.ts";
import { renderFindings, type ScanResult, toSarif } from "../../scan/formats.ts";
import { matchInventory } from "../../scan/match.ts";
import { inventoryOf } from "../../scan/targets.ts";
import { type CommandContext, contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";
import { scanResultOf } from "../scan-result.ts";

/** The repository's definitions and its root (for `repo:` paths). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const IMAGES_DIR = join(REPO_ROOT, "images");
const DEFAULT_OUT = "out/images";

const suitesOption = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

interface BuildFlags {
  all?: boolean;
  out: string;
  load?: boolean;
  suite?: string[];
  repository: string;
  db: string;
  offline?: boolean;
  definitions: string;
}

function shortDigest(d: string): string {
  return d.replace(/^sha256:/, "").slice(0, 12);
}

async function buildAll(
  defs: ImageDefinition[],
  o: BuildFlags,
  ctx: CommandContext,
): Promise<ImageBuildRecord[]> {
  const archive = new Archive({ progress: ctx.progress, offline: o.offline });
  const views = new ViewCache(archive);
  const db = new AdvisoryDb(o.db);
  const records: ImageBuildRecord[] = [];
  const failures: string[] = [];
  try {
    for (const def of defs) {
      ctx.progress.note(`${def.name}: building`);
      try {
        const view = await views.get(viewOptionsOf(def, o.suite));
        const updates = await views.get({ ...viewOptionsOf(def), suites: DEFAULT_SUITES });
        const r = await buildCuratedImage(def, {
          archive,
          view,
          updates,
          out: o.out,
          repository: o.repository,
          repoRoot: REPO_ROOT,
          db,
          load: o.load,
          progress: ctx.progress,
        });
        records.push(r);
        ctx.progress.note(
          `${def.name}: ${r.ref} ${formatBytes(r.compressedBytes)}, ${r.packages.length} packages, ${r.cves.total} CVEs (${r.cves.fixable} fixable) in ${r.buildSeconds} s`,
        );
      } catch (e) {
        if (defs.length === 1 || e instanceof UsageError) throw e;
        failures.push(`${def.name}: ${(e as Error).message.split("\n")[0]}`);
      }
    }
  } finally {
    db.close();
  }
  if (ctx.json) printJson(records);
  else if (records.length)
    say(
      ctx,
      renderTable(
        ["image", "version", "size", "packages", "CVEs", "fixable", "digest", "seconds"],
        records.map((r) => [
          r.name,
          r.version,
          formatBytes(r.compressedBytes),
          r.packages.length,
          r.cves.total,
          r.cves.fixable,
          shortDigest(r.manifestDigest),
          r.buildSeconds,
        ]),
      ),
    );
  if (failures.length) throw new BerthError(failures.join("; "));
  return records;
}

async function builtRecords(out: string, names: string[], dir: string): Promise<ImageBuildRecord[]> {
  const list = names.length ? names : definitionNames(dir);
  const records: ImageBuildRecord[] = [];
  for (const n of list) {
    const r = await readBuildRecord(out, n);
    if (r) records.push(r);
    else if (names.length)
      throw new UsageError(`${n} has not been built into ${out}: run berth images build ${n}`);
  }
  return records;
}

async function outdatedOf(
  records: ImageBuildRecord[],
  o: { out: string; suite?: string[]; db: string; offline?: boolean; definitions: string },
  ctx: CommandContext,
): Promise<OutdatedImage[]> {
  const archive = new Archive({ progress: ctx.progress, offline: o.offline });
  const views = new ViewCache(archive);
  const db = new AdvisoryDb(o.db);
  try {
    const out: OutdatedImage[] = [];
    for (const r of records) {
      const def = readDefinition(definitionPath(o.definitions, r.name));
      const updates = await views.get({ ...viewOptionsOf(def), suites: o.suite ?? DEFAULT_SUITES });
      out.push(await outdatedImage(r, join(o.out, r.name, "oci"), updates, db, archive, ctx.progress));
    }
    return out;
  } finally {
    db.close();
  }
}

function printOutdated(list: OutdatedImage[], ctx: CommandContext): void {
  const stale = list.filter((i) => i.packages.length);
  if (!stale.length) {
    say(ctx, "every built image is current");
    return;
  }
  for (const i of stale) {
    say(
      ctx,
      `${i.name} ${i.version}: ${i.packages.length} packages have newer versions; ${i.cves.length} CVEs fixed by them`,
    );
    say(
      ctx,
      renderTable(
        ["package", "installed", "candidate", "fixes"],
        i.packages.map((p) => [p.name, p.installed, p.candidate, p.fixes.map((f) => f.vulnId).join(" ")]),
      ),
    );
  }
}

const defsOption = (cmd: Command) =>
  cmd.option("--definitions <dir>", "directory of image definitions", IMAGES_DIR);

export function registerImagesCommands(program: Command): void {
  const images = program
    .command("images")
    .description("curated middleware images built from Debian .debs: non-root, reproducible, with SBOMs");

  defsOption(
    images
      .command("build")
      .description("build images into OCI layouts and docker-save archives, scan them, and publish")
      .argument("[names...]", "image names (definitions in images/) or definition files")
      .option("--all", "every definition")
      .option("--out <dir>", "output root: each image goes to <dir>/<name>/", DEFAULT_OUT)
      .option("--load", "also load each image into the local Docker engine")
      .option(
        "--suite <list>",
        "suites to build from instead of the definition's (comma-separated)",
        suitesOption,
      )
      .option("--repository <prefix>", "image references are <prefix>/<name>:<version>", "berth")
      .option("--db <path>", "advisory database for the security gate", defaultDbPath())
      .option("--offline", "use only the cache")
      .option("--json", "print the build records as JSON"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  berth images build nginx\n  berth images build --all --load\n  berth images build redis --suite trixie --out /srv/images",
    )
    .action(async (names: string[], o: BuildFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      await buildAll(readDefinitions(o.definitions, names, !!o.all), o, ctx);
    });

  defsOption(
    images
      .command("list")
      .description("the definitions, with their last build: version, size, packages, CVEs, digest")
      .option("--out <dir>", "output root of the builds", DEFAULT_OUT)
      .option("--json", "print as JSON"),
  ).action(async (o: { out: string; definitions: string }, cmd: Command) => {
    const ctx = contextOf(cmd);
    const rows = await Promise.all(
      definitionNames(o.definitions).map(async (n) => ({
        def: readDefinition(definitionPath(o.definitions, n)),
        build: await readBuildRecord(o.out, n),
      })),
    );
    if (ctx.json)
      return printJson(
        rows.map((r) => ({
          name: r.def.name,
          main: r.def.main,
          description: r.def.description,
          build: r.build
            ? {
                version: r.build.version,
                ref: r.build.ref,
                manifestDigest: r.build.manifestDigest,
                compressedBytes: r.build.compressedBytes,
                packages: r.build.packages.length,
                cves: r.build.cves,
              }
            : null,
        })),
      );
    say(
      ctx,
      renderTable(
        ["image", "main package", "built version", "size", "packages", "CVEs", "digest"],
        rows.map((r) => [
          r.def.name,
          r.def.main,
          r.build?.version ?? "(not built)",
          r.build ? formatBytes(r.build.compressedBytes) : "",
          r.build ? String(r.build.packages.length) : "",
          r.build ? `${r.build.cves.total} (${r.build.cves.fixable} fixable)` : "",
          r.build ? shortDigest(r.build.manifestDigest) : "",
        ]),
      ),
    );
  });

  defsOption(
    images
      .command("show")
      .description("one image: its definition, last build, packages with the chain that pulled each in, CVEs")
      .argument("<name>", "image name")
      .option("--out <dir>", "output root of the builds", DEFAULT_OUT)
      .option("--json", "print as JSON"),
  ).action(async (name: string, o: { out: string; definitions: string }, cmd: Command) => {
    const ctx = contextOf(cmd);
    const def = readDefinition(definitionPath(o.definitions, name));
    const build = await readBuildRecord(o.out, def.name);
    if (ctx.json) {
      const { where: _w, ...definition } = def;
      return printJson({ definition, build: build ?? null });
    }
    say(ctx, `${def.name}: ${def.description}`);
    say(ctx, `  definition ${def.source}; main package ${def.main}; suites ${def.suites.join(", ")}`);
    say(
      ctx,
      `  runs as ${def.run.user.name} (${def.run.user.uid}): ${[...def.run.entrypoint, ...def.run.cmd].join(" ")}`,
    );
    if (def.run.ports.length) say(ctx, `  ports ${def.run.ports.join(", ")}`);
    if (def.run.volumes.length) say(ctx, `  volumes ${def.run.volumes.join(", ")}`);
    if (def.run.tmpfs.length) say(ctx, `  tmpfs ${def.run.tmpfs.join(", ")}`);
    say(ctx, `  shell: ${def.shellReason ? `yes, because ${def.shellReason}` : "none"}`);
    for (const d of def.drop) say(ctx, `  drops ${d.package}: ${d.reason}`);
    if (!build) return say(ctx, `  not built yet in ${o.out}: berth images build ${def.name}`);
    say(ctx, `\nlast build: ${build.ref} ${build.manifestDigest}`);
    say(
      ctx,
      `  ${formatBytes(build.compressedBytes)} compressed, ${formatBytes(build.uncompressedBytes)} unpacked; archive state ${build.created}`,
    );
    say(
      ctx,
      `  CVEs: ${build.cves.total} (${build.cves.fixable} fixable, ${build.cves.unfixed} unfixed: ${
        Object.entries(build.cves.byStatus)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") || "none"
      })`,
    );
    for (const d of build.dropped)
      if (d.alsoRemoved.length) say(ctx, `  dropping ${d.package} also removed ${d.alsoRemoved.join(", ")}`);
    say(
      ctx,
      `\n${renderTable(
        ["package", "version", "licenses", "pulled in by"],
        build.packages.map((p) => [
          p.name,
          p.version,
          p.licenses.join(" AND ") || "NOASSERTION",
          p.chain.join(" > "),
        ]),
      )}`,
    );
  });

  defsOption(
    images
      .command("scan")
      .description("rescan built images against the current advisory database (the periodic rescan)")
      .argument("[names...]", "image names (default: every built image)")
      .option("--out <dir>", "output root of the builds", DEFAULT_OUT)
      .option("--db <path>", "advisory database", defaultDbPath())
      .option("--format <format>", "table, json or sarif", "table")
      .option("--json", "same as --format json")
      .option("--output <file>", "write the report to a file (atomically)"),
  ).action(
    async (
      names: string[],
      o: { out: string; db: string; format: string; json?: boolean; output?: string; definitions: string },
      cmd: Command,
    ) => {
      const ctx = contextOf(cmd);
      const format = o.json ? "json" : o.format;
      if (!["table", "json", "sarif"].includes(format))
        throw new UsageError(`unknown format "${format}" (table, json, sarif)`);
      const records = await builtRecords(o.out, names, o.definitions);
      if (!records.length) throw new UsageError(`no built images in ${o.out}: run berth images build --all`);
      if (!existsSync(o.db))
        throw new BerthError(`no advisory database at ${o.db}: run berth db update first`);
      const db = new AdvisoryDb(o.db, { readOnly: true });
      const results: ScanResult[] = [];
      try {
        for (const r of records) {
          const inv = await inventoryOf(join(o.out, r.name, "oci"));
          inv.target = r.ref;
          results.push(scanResultOf(inv, matchInventory(db, inv), db));
        }
      } finally {
        db.close();
      }
      let text: string;
      if (format === "json")
        text = JSON.stringify(
          results.map((r) => ({ ...r, cves: summarizeFindings(r.findings) })),
          null,
          2,
        );
      else if (format === "sarif") {
        const logs = results.map((r) => toSarif(r, BERTH_VERSION) as { runs: unknown[] });
        text = JSON.stringify({ ...logs[0]!, runs: logs.flatMap((l) => l.runs) }, null, 2);
      } else text = results.map(renderFindings).join("\n\n");
      if (o.output) await writeFileAtomic(o.output, `${text}\n`);
      else if (format === "table") say(ctx, text);
      else process.stdout.write(`${text}\n`);
    },
  );

  const outdatedFlags = (c: Command) =>
    defsOption(
      c
        .option("--out <dir>", "output root of the builds", DEFAULT_OUT)
        .option(
          "--suite <list>",
          `suites to compare with (default: ${DEFAULT_SUITES.join(",")})`,
          suitesOption,
        )
        .option("--db <path>", "advisory database (the changelog fixes are recorded in it)", defaultDbPath())
        .option("--offline", "use only the cache")
        .option("--json", "print as JSON"),
    );

  outdatedFlags(
    images
      .command("outdated")
      .description("built images with a newer candidate for any package, and the CVEs the newer versions fix")
      .argument("[names...]", "image names (default: every built image)"),
  ).action(
    async (
      names: string[],
      o: { out: string; suite?: string[]; db: string; offline?: boolean; definitions: string },
      cmd: Command,
    ) => {
      const ctx = contextOf(cmd);
      const list = await outdatedOf(await builtRecords(o.out, names, o.definitions), o, ctx);
      if (ctx.json) return printJson(list);
      printOutdated(list, ctx);
    },
  );

  outdatedFlags(
    images
      .command("rebuild")
      .description("rebuild images: the outdated ones (--outdated) or those named")
      .argument("[names...]", "image names")
      .option("--outdated", "rebuild only the built images that berth images outdated lists")
      .option("--load", "also load each image into the local Docker engine")
      .option("--repository <prefix>", "image references are <prefix>/<name>:<version>", "berth"),
  ).action(
    async (names: string[], o: BuildFlags & { outdated?: boolean; suite?: string[] }, cmd: Command) => {
      const ctx = contextOf(cmd);
      let targets = names;
      if (o.outdated) {
        const list = await outdatedOf(await builtRecords(o.out, names, o.definitions), o, ctx);
        targets = list.filter((i) => i.packages.length).map((i) => i.name);
        if (!targets.length) {
          if (ctx.json) return printJson([]);
          return say(ctx, "every built image is current; nothing to rebuild");
        }
        say(ctx, `rebuilding ${targets.join(", ")}`);
      } else if (!names.length) throw new UsageError("name images to rebuild, or use --outdated");
      await buildAll(readDefinitions(o.definitions, targets, false), o, ctx);
    },
  );
}
