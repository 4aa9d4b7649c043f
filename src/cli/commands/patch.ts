// `berth patch`: shared libraries upgraded inside running processes, and kernel livepatches.

import type { Command } from "commander";
import { BerthError, errorLine, UsageError } from "../../common/errors.ts";
import { renderTable } from "../../common/format.ts";
import { PtraceHelper } from "../../patch/helper.ts";
import type { HostSummary, LibraryFile } from "../../patch/host.ts";
import { patchStateDir, patchStatus } from "../../patch/journal.ts";
import type { PatchResult } from "../../patch/live.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";
import { type FromRepoFlags, repoLibrary } from "./livepatch-facts.ts";
import { registerKernelPatchCommands } from "./patch-kernel.ts";

// The comparison loads a WebAssembly disassembler: only the commands that need it pay for it, not every
// `berth` invocation.
const host = () => import("../../patch/host.ts");

interface LibFlags {
  lib?: string;
  new?: string;
  fromDeb?: string;
  pid?: string[];
  all?: boolean;
  json?: boolean;
  state: string;
}

/** --pid PID... or --all (undefined: every process that maps the library). */
function pidsOf(o: LibFlags): number[] | undefined {
  if (o.all && o.pid?.length) throw new UsageError("give --pid or --all, not both");
  if (o.pid?.length) {
    const bad = o.pid.find((p) => !/^\d+$/.test(p));
    if (bad) throw new UsageError(`--pid wants process IDs, not "${bad}"`);
    return o.pid.map(Number);
  }
  if (!o.all) throw new UsageError("name the processes: --pid PID... or --all");
  return undefined;
}

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    throw new BerthError("berth patch needs root (ptrace and /proc/PID/mem of other users' processes)");
}

/** The library files to apply: --new FILE (with --lib), or every shared library of --from-deb PKG.deb. */
export async function filesOf(o: LibFlags): Promise<LibraryFile[]> {
  if (o.new && o.fromDeb) throw new UsageError("give --new or --from-deb, not both");
  if (o.new) return [(await host()).libraryFile(o.new, o.lib)];
  if (o.fromDeb) {
    if (o.lib)
      throw new UsageError("--lib goes with --new; --from-deb applies every library the package ships");
    return (await host()).librariesFromDeb(o.fromDeb, o.state);
  }
  throw new UsageError("name the new library: --new FILE or --from-deb PKG.deb");
}

const ms = (ns: number) => `${(ns / 1e6).toFixed(2)} ms`;

function printSummary(cmd: Command, s: HostSummary, json: boolean): void {
  if (json) {
    printJson(s);
    if (s.refused.length) process.exitCode = 1;
    return;
  }
  const ctx = contextOf(cmd);
  say(
    ctx,
    `${s.patched.length} process${s.patched.length === 1 ? "" : "es"} patched, ${s.refused.length} refused, ${s.unchanged.length} unchanged (${(s.wallMs / 1000).toFixed(2)} s)`,
  );
  for (const r of s.patched)
    say(
      ctx,
      `  ${r.pid} ${r.comm}: ${r.lib}: ${r.functions} functions copied, ${r.redirected} redirected, ${r.identical} identical; paused ${ms(r.pauseNs)}${r.retries ? ` after ${r.retries} retries` : ""}`,
    );
  for (const u of s.unchanged) say(ctx, `  ${u.pid} ${u.comm}: ${u.lib}: ${u.note}`);
  for (const f of s.refused) process.stderr.write(`berth: ${f.pid} ${f.comm}: ${f.reason}\n`);
  if (s.refused.length) process.exitCode = 1;
}

function printResults(
  cmd: Command,
  done: PatchResult[],
  failed: { pid: number; error: string }[],
  json: boolean,
): void {
  if (json) printJson({ done, failed });
  else {
    for (const r of done)
      say(
        contextOf(cmd),
        `${r.pid} ${r.comm}: ${r.lib}: ${r.writes} writes restored, ${r.functions} functions unmapped; paused ${ms(r.pauseNs)}${r.retries ? ` after ${r.retries} retries` : ""}`,
      );
    for (const f of failed) process.stderr.write(`berth: ${f.pid}: ${f.error}\n`);
  }
  if (failed.length) process.exitCode = 1;
}

export function registerPatchCommands(program: Command): void {
  const patch = program
    .command("patch")
    .description("live patching: shared libraries in running processes, kernel livepatches");
  const lib = patch
    .command("lib")
    .description("upgrade a shared library inside running processes, without restarting them")
    .addHelpText(
      "after",
      `
Examples:
  berth patch lib plan --new ./libcrypto.so.3 --all          what would change, in every process
  berth patch lib apply --from-deb libssl3_3.0.17-1~deb12u3_amd64.deb --all
  berth patch lib apply --new libdemo-v2.so --lib libdemo --pid 4242
  berth patch lib status
  berth patch lib rollback --pid 4242                         one layer back (v3 -> v2 -> v1)`,
    );
  const state = (c: Command) =>
    c.option("--state <dir>", "where per-process journals are kept", patchStateDir());
  const targets = (c: Command) =>
    c
      .option("--new <file>", "the new build of the library (a shared object)")
      .option("--from-deb <file>", "every shared library a Debian package ships")
      .option(
        "--lib <name-or-path>",
        "with --new: the mapped library (file name, prefix or path); default: its soname",
      )
      .option("--pid <pid...>", "processes")
      .option("--all", "every process that maps the library (containers included)")
      .option("--json", "JSON output");

  state(
    targets(
      lib
        .command("plan")
        .description(
          "show, per process, which functions would be redirected, which are identical, and what blocks it",
        ),
    ),
  ).action(async (o: LibFlags, cmd: Command) => {
    requireRoot();
    const pids = pidsOf(o);
    const files = await filesOf(o);
    const { plans, errors } = await (await host()).planLibraries(files, pids, { stateDir: o.state });
    if (o.json) printJson({ plans, errors });
    else {
      const ctx = contextOf(cmd);
      if (!plans.length && !errors.length) say(ctx, "no running process maps these libraries");
      for (const p of plans) {
        say(
          ctx,
          `${p.pid} ${p.comm}: ${p.lib}: ${p.state}; ${p.compared} functions compared, ${p.identical} identical (${p.lineNumbersOnly} differ only in source line numbers), ${p.copied} to copy (${p.added} new), ${p.redirected.length} to redirect (analysis ${p.analysisMs} ms)`,
        );
        for (const r of p.redirected.slice(0, 40))
          say(ctx, `    ${r.name}: ${r.method}${r.why ? ` — ${r.why}` : ""}`);
        if (p.redirected.length > 40) say(ctx, `    ... ${p.redirected.length - 40} more (--json lists all)`);
        for (const r of p.refusals.slice(0, 10)) say(ctx, `    refused: ${r}`);
        if (p.refusals.length > 10) say(ctx, `    ... ${p.refusals.length - 10} more refusals`);
      }
      for (const e of errors) process.stderr.write(`berth: ${e.pid}: ${e.error}\n`);
    }
    if (errors.length || plans.some((p) => p.state === "refused")) process.exitCode = 1;
  });

  state(
    targets(
      lib
        .command("apply")
        .description("redirect the changed functions of each process's library to the new build's code")
        .argument("[target]", "with --from-repo: the livepatch-lib target's name")
        .option(
          "--from-repo <url>",
          "take the new library from a Berth repository (TUF-verified) by target name",
        )
        .option("--trusted-root <file>", "with --from-repo: root.json to trust (default the image's)"),
    ),
  ).action(async (target: string | undefined, o: LibFlags & FromRepoFlags, cmd: Command) => {
    requireRoot();
    const repo = await repoLibrary(target, o);
    const h = new PtraceHelper();
    try {
      const chosen = repo?.select(pidsOf(o));
      const pids = chosen ? chosen.pids : pidsOf(o);
      const files = repo ? [{ path: repo.path, lib: repo.lib }] : await filesOf(o);
      const s = await (await host()).applyLibraries(h, files, pids, { stateDir: o.state });
      s.refused.push(...(chosen?.refused ?? []));
      if (!s.patched.length && !s.refused.length && !s.unchanged.length)
        throw new BerthError(`no running process maps ${files.map((f) => f.lib).join(", ")}`);
      printSummary(cmd, s, !!o.json);
    } finally {
      h.close();
      await repo?.cleanup();
    }
  });

  state(
    lib
      .command("rollback")
      .description("take back the newest patch layer in each process, restoring the original bytes")
      .option("--pid <pid...>", "processes")
      .option("--all", "every process with patches")
      .option("--json", "JSON output"),
  ).action(async (o: LibFlags, cmd: Command) => {
    requireRoot();
    const pids = o.all ? patchStatus(o.state).map((j) => j.pid) : pidsOf(o);
    if (!pids?.length) throw new BerthError("no patched processes");
    const h = new PtraceHelper();
    const done: PatchResult[] = [];
    const failed: { pid: number; error: string }[] = [];
    try {
      for (const pid of pids)
        try {
          done.push(await (await import("../../patch/live.ts")).rollbackPatch(h, pid, { stateDir: o.state }));
        } catch (e) {
          failed.push({ pid, error: errorLine(e) });
        }
    } finally {
      h.close();
    }
    printResults(cmd, done, failed, !!o.json);
  });

  state(
    lib.command("status").description("what is patched in which process").option("--json", "JSON output"),
  ).action((o: LibFlags, cmd: Command) => {
    const s = patchStatus(o.state);
    if (o.json) return printJson(s);
    say(
      contextOf(cmd),
      s.length
        ? renderTable(
            ["pid", "command", "library", "layers", "now running", "functions", "writes"],
            s.map((j) => [
              j.pid,
              j.comm,
              j.layers[0]!.lib,
              j.layers.length,
              j.layers.at(-1)!.loadedAs,
              j.layers.at(-1)!.functions,
              j.layers.at(-1)!.writes.length,
            ]),
          )
        : "no patched processes",
    );
  });
  registerKernelPatchCommands(patch);
}
