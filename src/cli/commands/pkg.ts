// `berth pkg`: the Debian package layer on the command line.

import { copyFile, mkdir } from "node:fs/promises";
import { basename, join, resolve as resolvePath } from "node:path";
import { gunzipSync } from "node:zlib";
import { type Command, Option } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { formatBytes, renderTable } from "../../common/format.ts";
import { Archive } from "../../pkg/archive.ts";
import { extractDeb, listDeb, readDebControl, readDebFile } from "../../pkg/deb.ts";
import type { PackageIndex } from "../../pkg/index.ts";
import { parseRequest, type Resolution, resolve, whyChain } from "../../pkg/resolve.ts";
import { repositoriesOf, resolveSources, type SourcesConfig } from "../../pkg/sources.ts";
import { type InstalledPackage, readRootPackages, readStatus } from "../../pkg/status.ts";
import { COMPARE_OPERATORS, evaluateRelation, VersionSyntaxError } from "../../pkg/version.ts";
import { type CommandContext, contextOf, say, warn } from "../context.ts";
import { printJson } from "../output.ts";

interface SourceFlags {
  mirror?: string;
  securityMirror?: string;
  suite?: string[];
  component?: string[];
  arch?: string;
  keyring?: string;
  sources?: string;
  offline?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(",").filter(Boolean)];

/** Options that choose the archive, shared by every command that reads it. */
export function addSourceOptions(cmd: Command): Command {
  return cmd
    .option("--suite <suite>", "suite or codename, repeatable or comma-separated (default: trixie)", collect)
    .option("--component <name>", "archive component, repeatable (default: main)", collect)
    .option("--arch <arch>", "architecture (default: amd64)")
    .option("--mirror <url>", "Debian mirror (default: this machine's apt mirror)")
    .option("--security-mirror <url>", "Debian security mirror for *-security suites")
    .option("--keyring <file>", "OpenPGP keyring for the Release signatures")
    .option(
      "--sources <file>",
      "YAML file with mirror, securityMirror, suites, components, architecture, keyring",
    )
    .option("--offline", "use only the cache; never ask the mirror");
}

export function sourcesFromFlags(o: SourceFlags): SourcesConfig {
  return resolveSources({
    file: o.sources,
    mirror: o.mirror,
    securityMirror: o.securityMirror,
    suites: o.suite,
    components: o.component,
    architecture: o.arch,
    keyring: o.keyring,
  });
}

export async function loadIndexFor(
  o: SourceFlags,
  ctx: CommandContext,
): Promise<{ index: PackageIndex; cfg: SourcesConfig; archive: Archive }> {
  const cfg = sourcesFromFlags(o);
  const archive = new Archive({ progress: ctx.progress, offline: o.offline });
  const index = await archive.loadIndex(repositoriesOf(cfg), cfg.architecture);
  return { index, cfg, archive };
}

function printInstalled(pkgs: InstalledPackage[], ctx: CommandContext): void {
  if (ctx.json) {
    printJson(
      pkgs.map((p) => ({
        name: p.name,
        version: p.version,
        architecture: p.architecture,
        status: p.status,
        source: p.source,
        sourceVersion: p.sourceVersion,
      })),
    );
    return;
  }
  say(
    ctx,
    renderTable(
      ["Package", "Version", "Arch", "Status", "Source", "Source version"],
      pkgs.map((p) => [p.name, p.version, p.architecture, p.status, p.source, p.sourceVersion]),
    ),
  );
  say(ctx, `${pkgs.length} packages`);
}

function printResolution(res: Resolution, ctx: CommandContext, why?: string): void {
  if (why) {
    const chain = whyChain(res, why);
    if (!chain) throw new BerthError(`${why} is not part of this closure`);
    if (ctx.json) {
      printJson({
        package: why,
        chain: chain.map((p) => ({ name: p.name, version: p.version, reason: p.reason })),
      });
      return;
    }
    chain.forEach((p, i) => {
      const via = p.reason.relation ? `  (${p.reason.kind}: ${p.reason.relation})` : `  (${p.reason.kind})`;
      say(ctx, `${"  ".repeat(i)}${i ? "-> " : ""}${p.name} ${p.version}${via}`);
    });
    return;
  }
  if (ctx.json) {
    printJson(res);
    return;
  }
  say(
    ctx,
    renderTable(
      ["Package", "Version", "Installed", "Pulled in by"],
      res.packages.map((p) => [
        p.name,
        p.version,
        formatBytes(p.installedSize * 1024),
        p.reason.parent ? `${p.reason.parent} (${p.reason.kind}: ${p.reason.relation})` : p.reason.kind,
      ]),
    ),
  );
  say(ctx, `${res.packages.length} packages, ${formatBytes(res.installedBytes)} installed`);
  for (const c of res.conflicts) warn(c.message);
  for (const u of res.unsatisfied) warn(u.message);
}

export function registerPkgCommands(program: Command): void {
  const pkg = program
    .command("pkg")
    .description(
      "Debian packages: versions, status databases, archive indexes, .deb files, dependency closure",
    );

  pkg
    .command("compare")
    .description(
      "compare two Debian versions as `dpkg --compare-versions` does (exit 0 if the relation holds, 1 if not)",
    )
    .argument("<a>", "first version")
    .argument("<op>", `relation: ${COMPARE_OPERATORS.join(" ")}`)
    .argument("<b>", "second version")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  berth pkg compare 1.0~rc1 lt 1.0 && echo older\n  berth pkg compare 2:1.0 '>>' 1:9.9",
    )
    .action((a: string, op: string, b: string, _o, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (!COMPARE_OPERATORS.includes(op))
        throw new UsageError(`unknown relation '${op}' (use one of: ${COMPARE_OPERATORS.join(" ")})`);
      let outcome: ReturnType<typeof evaluateRelation>;
      try {
        outcome = evaluateRelation(a, op, b);
      } catch (e) {
        if (e instanceof VersionSyntaxError) throw new UsageError(e.message);
        throw e;
      }
      for (const w of outcome.warnings) warn(w);
      if (ctx.json) printJson({ a, op, b, holds: outcome.holds });
      process.exitCode = outcome.holds ? 0 : 1;
    });

  pkg
    .command("installed")
    .description(
      "list the packages of a dpkg database (this machine's, a root file system's, or a status file/status.d)",
    )
    .addOption(
      new Option("--root <dir>", "a root file system (reads var/lib/dpkg/status and status.d/)").conflicts(
        "status",
      ),
    )
    .option("--status <path>", "a dpkg status file or a status.d directory")
    .option("--json", "JSON: [{name, version, architecture, status, source, sourceVersion}]")
    .addHelpText(
      "after",
      "\nExamples:\n  berth pkg installed\n  berth pkg installed --root /srv/rootfs --json\n  berth pkg installed --status image/var/lib/dpkg/status.d",
    )
    .action(async (o: { root?: string; status?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const pkgs = o.status
        ? await readStatus(resolvePath(o.status))
        : o.root
          ? await readRootPackages(resolvePath(o.root))
          : await readStatus("/var/lib/dpkg/status");
      printInstalled(pkgs, ctx);
    });

  addSourceOptions(
    pkg
      .command("resolve")
      .description(
        "the packages a fresh `apt-get install --no-install-recommends PKG...` installs, each with the chain that pulled it in",
      )
      .argument("<package...>", "NAME, NAME=VERSION or 'NAME (>= VERSION)'")
      .option("--why <package>", "show only the dependency chain that brings in this package")
      .option("--essential", "start from the Essential: yes set, as debootstrap does (and include it)")
      .option("--required", "also install every Priority: required package")
      .option("--installed <status>", "a dpkg status file whose packages count as already installed")
      .option("--json", "print the resolution as JSON"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  berth pkg resolve docker.io\n  berth pkg resolve openssh-server --why libssl3t64\n  berth pkg resolve nginx --suite trixie,trixie-security --json",
    )
    .action(
      async (
        names: string[],
        o: SourceFlags & { why?: string; essential?: boolean; required?: boolean; installed?: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        let request: ReturnType<typeof parseRequest>[];
        try {
          request = names.map(parseRequest);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        const { index } = await loadIndexFor(o, ctx);
        const installed = o.installed ? await index.recordsFromStatusFile(resolvePath(o.installed)) : [];
        const res = resolve(index, request, { essential: o.essential, required: o.required, installed });
        printResolution(res, ctx, o.why);
        if (res.unsatisfied.some((u) => u.relation === u.package)) process.exitCode = 1;
      },
    );

  addSourceOptions(
    pkg
      .command("show")
      .description("the candidate record of packages in the archive index")
      .argument("<package...>")
      .option("--json", "print as JSON"),
  ).action(async (names: string[], o: SourceFlags, cmd: Command) => {
    const ctx = contextOf(cmd);
    const { index } = await loadIndexFor(o, ctx);
    const recs = names.map((n) => {
      const r = index.candidate(n);
      if (!r) throw new BerthError(`package ${n} is not in the index`);
      return r;
    });
    if (ctx.json) return printJson(recs.map(({ id: _id, ...r }) => r));
    for (const r of recs) {
      say(ctx, `${r.name} ${r.version} (${r.architecture}) from ${r.origin}`);
      say(
        ctx,
        `  source: ${r.source} ${r.sourceVersion}; installed size ${formatBytes(r.installedSize * 1024)}; ${r.filename}`,
      );
      if (r.preDepends) say(ctx, `  pre-depends: ${r.preDepends}`);
      if (r.depends) say(ctx, `  depends: ${r.depends}`);
      if (r.provides) say(ctx, `  provides: ${r.provides}`);
    }
  });

  addSourceOptions(
    pkg
      .command("download")
      .description("download .deb files (hash-checked, cached) and copy them to a directory")
      .argument("<package...>")
      .option("--dest <dir>", "where to put the files", ".")
      .option("--json", "print the downloaded paths as JSON"),
  ).action(async (names: string[], o: SourceFlags & { dest: string }, cmd: Command) => {
    const ctx = contextOf(cmd);
    const { index, archive } = await loadIndexFor(o, ctx);
    const recs = names.map((n) => {
      const r = index.candidate(n);
      if (!r) throw new BerthError(`package ${n} is not in the index`);
      return r;
    });
    const paths = await archive.fetchDebs(recs);
    await mkdir(o.dest, { recursive: true });
    const out: string[] = [];
    for (let i = 0; i < recs.length; i++) {
      const target = join(o.dest, basename(recs[i]!.filename!));
      await copyFile(paths[i]!, target);
      out.push(target);
    }
    if (ctx.json) printJson(out);
    else for (const p of out) say(ctx, p);
  });

  const deb = pkg.command("deb").description("read .deb files: control, contents, one file, safe extraction");
  deb
    .command("info")
    .argument("<file>")
    .option("--json", "print as JSON")
    .description("the control stanza of a .deb")
    .action(async (file: string, _o, cmd: Command) => {
      const ctx = contextOf(cmd);
      const s = await readDebControl(file);
      if (ctx.json) printJson(s);
      else for (const [k, v] of Object.entries(s)) say(ctx, `${k}: ${v}`);
    });
  deb
    .command("list")
    .argument("<file>")
    .option("--control", "list control.tar instead of data.tar")
    .option("--json", "print as JSON")
    .description("the members of a .deb's data (or control) tarball")
    .action(async (file: string, o: { control?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const entries = await listDeb(file, o.control ? "control" : "data");
      if (ctx.json) return printJson(entries);
      for (const e of entries)
        say(
          ctx,
          `${e.type.padEnd(9)} ${(e.mode & 0o7777).toString(8).padStart(4, "0")} ${String(e.size).padStart(10)} ./${e.path}${e.linkname ? ` -> ${e.linkname}` : ""}`,
        );
    });
  deb
    .command("cat")
    .argument("<file>")
    .argument("<path>", "path inside the package, e.g. usr/share/doc/bash/changelog.Debian.gz")
    .option("--gunzip", "decompress a .gz file before printing")
    .description("print one file of a .deb")
    .action(async (file: string, inner: string, o: { gunzip?: boolean }) => {
      const buf = await readDebFile(file, inner);
      if (!buf) throw new BerthError(`${file} has no file ${inner}`);
      process.stdout.write(o.gunzip ? gunzipSync(buf) : buf);
    });
  deb
    .command("extract")
    .argument("<file>")
    .argument("<dir>")
    .option("--json", "print a summary as JSON")
    .description("extract a .deb's files into a directory; nothing is ever written outside it")
    .action(async (file: string, dir: string, _o, cmd: Command) => {
      const ctx = contextOf(cmd);
      const r = await extractDeb(file, resolvePath(dir));
      if (ctx.json) printJson(r);
      else
        say(
          ctx,
          `${r.files} files, ${r.directories} directories, ${r.symlinks} symlinks, ${r.hardlinks} hard links${r.skipped.length ? `; skipped ${r.skipped.length} device nodes` : ""}`,
        );
    });

  addSourceOptions(
    pkg
      .command("update")
      .description("fetch and verify the Release and Packages indexes of the configured suites")
      .option("--json", "print as JSON"),
  ).action(async (o: SourceFlags, cmd: Command) => {
    const ctx = contextOf(cmd);
    const cfg = sourcesFromFlags(o);
    const archive = new Archive({ progress: ctx.progress, offline: o.offline });
    const out = [];
    for (const repo of repositoriesOf(cfg)) {
      const vr = await archive.release(repo);
      for (const c of repo.components) {
        const path = await archive.packagesIndex(vr, c);
        out.push({
          uri: repo.uri,
          suite: repo.suite,
          codename: vr.release.codename,
          version: vr.release.version,
          date: vr.release.date,
          component: c,
          index: path,
          signers: vr.signers,
        });
      }
    }
    if (ctx.json) return printJson(out);
    for (const r of out)
      say(
        ctx,
        `${r.uri} ${r.suite} (${r.codename} ${r.version ?? ""}, ${r.date?.toISOString()}) ${r.component}: verified; signed by ${r.signers.length} key(s)`,
      );
  });
}
