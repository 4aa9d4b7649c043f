// `berth patch`: shared libraries upgraded inside running processes, and kernel livepatches.

import type { Command } from "commander";
import { contextOf, say } from "../cli/context.ts";
import { BerthError, errorLine, UsageError } from "../cli/errors.ts";
import { printJson, renderTable } from "../cli/output.ts";
import { PtraceHelper } from "./helper.ts";
import { registerKernelPatchCommands } from "./kernel-commands.ts";
import { type PatchResult, patchLib, patchStateDir, patchStatus, rollbackLib } from "./lib.ts";
import { processesMapping } from "./proc.ts";

interface LibFlags {
  lib?: string;
  new?: string;
  pid?: string[];
  all?: boolean;
  got?: boolean;
  json?: boolean;
  state: string;
}

function pidsOf(o: LibFlags, lib: string | undefined): number[] {
  if (o.all && o.pid?.length) throw new UsageError("give --pid or --all, not both");
  if (o.pid?.length) {
    const pids = o.pid.map((p) => Number(p));
    const bad = o.pid.find((p) => !/^\d+$/.test(p));
    if (bad) throw new UsageError(`--pid wants process IDs, not "${bad}"`);
    return pids;
  }
  if (!o.all) throw new UsageError("name the processes: --pid PID... or --all");
  if (!lib) throw new UsageError("--all needs --lib");
  const pids = processesMapping(lib);
  if (!pids.length) throw new BerthError(`no running process maps ${lib}`);
  return pids;
}

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    throw new BerthError("berth patch needs root (ptrace and /proc/PID/mem of other users' processes)");
}

async function forEachProcess(
  pids: number[],
  o: LibFlags,
  cmd: Command,
  work: (h: PtraceHelper, pid: number) => Promise<PatchResult>,
): Promise<void> {
  const ctx = contextOf(cmd);
  const h = new PtraceHelper();
  const done: PatchResult[] = [];
  const failed: { pid: number; error: string }[] = [];
  try {
    for (const pid of pids)
      try {
        done.push(await work(h, pid));
      } catch (e) {
        failed.push({ pid, error: errorLine(e) });
      }
  } finally {
    h.close();
  }
  if (o.json) printJson({ done, failed });
  else {
    for (const r of done)
      say(
        ctx,
        `${r.pid} ${r.comm}: ${r.writes} writes, ${r.functions} functions, paused ${(r.pauseNs / 1e6).toFixed(2)} ms${r.retries ? `, ${r.retries} retries` : ""}`,
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
  berth patch lib apply --lib libssl.so.3 --new ./libssl.so.3.fixed --all
  berth patch lib apply --lib /usr/lib/x86_64-linux-gnu/libz.so.1 --new libz-new.so --pid 4242 --got
  berth patch lib status
  berth patch lib rollback --pid 4242          one layer back (v3 -> v2 -> v1)`,
    );
  const state = (c: Command) =>
    c.option("--state <dir>", "where per-process journals are kept", patchStateDir());

  state(
    lib
      .command("apply")
      .description("load NEW.so into each process and redirect every function of the old library to it")
      .requiredOption(
        "--lib <name-or-path>",
        "the mapped library (file name, prefix such as libdemo, or path)",
      )
      .requiredOption("--new <file>", "the replacement shared object")
      .option("--pid <pid...>", "processes to patch")
      .option("--all", "every process that maps the library (containers included)")
      .option("--got", "also rewrite GOT entries that point at the old functions")
      .option("--json", "JSON output"),
  ).action(async (o: LibFlags, cmd: Command) => {
    requireRoot();
    const pids = pidsOf(o, o.lib);
    await forEachProcess(pids, o, cmd, (h, pid) =>
      patchLib(h, pid, { lib: o.lib!, newPath: o.new!, got: o.got, stateDir: o.state }),
    );
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
    const pids = o.all ? patchStatus(o.state).map((j) => j.pid) : pidsOf(o, undefined);
    if (!pids.length) throw new BerthError("no patched processes");
    await forEachProcess(pids, o, cmd, (h, pid) => rollbackLib(h, pid, { stateDir: o.state }));
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
            ["pid", "command", "library", "layers", "now running", "writes"],
            s.map((j) => [
              j.pid,
              j.comm,
              j.layers[0]!.lib,
              j.layers.length,
              j.layers.at(-1)!.loadedAs,
              j.layers.at(-1)!.writes.length,
            ]),
          )
        : "no patched processes",
    );
  });
  registerKernelPatchCommands(patch);
}
