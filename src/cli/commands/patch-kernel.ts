// `berth patch kernel`: build, load, disable, replace, status.

import { existsSync } from "node:fs";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { renderTable } from "../../common/format.ts";
import { buildLivepatch } from "../../patch/kernel-build.ts";
import { disableLivepatch, livepatches, loadLivepatch, signingPolicy, taint } from "../../patch/klp.ts";
import { contextOf, say, warn } from "../context.ts";
import { printJson } from "../output.ts";
import { type FromRepoFlags, kernelPatchSource } from "./livepatch-facts.ts";

const DEFAULT_MIRROR = process.env.BERTH_MIRROR || "http://deb.debian.org/debian";

function timeoutOf(o: { timeout: string }): number {
  const s = Number(o.timeout);
  if (!(s > 0)) throw new UsageError(`--timeout wants seconds, not "${o.timeout}"`);
  return s * 1000;
}

const blocked = (json: boolean) => (tasks: string[]) => {
  if (!json && tasks.length)
    warn(`transition waiting for ${tasks.length} tasks: ${tasks.slice(0, 5).join(", ")}`);
};

export function registerKernelPatchCommands(patch: Command): void {
  const kernel = patch
    .command("kernel")
    .description("kernel livepatches: build from replacement functions, load, disable, replace, status")
    .addHelpText(
      "after",
      `
Examples:
  berth patch kernel build fix.c --kernel 6.12.117+deb13-amd64 --name fix1     functions named livepatch_<original>
  berth patch kernel build fix.c --kernel $(uname -r) --name fix2 --replace   a cumulative patch
  berth patch kernel load fix1.ko                waits until every task runs the new code
  berth patch kernel replace fix2.ko             atomically supersedes earlier patches
  berth patch kernel disable fix2 --remove       back to the original code, module unloaded
  berth patch kernel status`,
    );

  kernel
    .command("build")
    .description("build a livepatch module against a kernel's Debian headers (kbuild)")
    .argument("<src>", "C file with replacement functions named livepatch_<original>")
    .requiredOption("--kernel <release>", "kernel release, e.g. 6.12.117+deb13-amd64")
    .requiredOption("--name <name>", "module (and livepatch) name")
    .option("--out <dir>", "where NAME.ko goes", ".")
    .option("--replace", "a cumulative patch that replaces all earlier ones")
    .option("--sign-key <file>", "private key to sign the module with (module.sig_enforce, lockdown)")
    .option("--sign-cert <file>", "the key's X.509 certificate")
    .option("--mirror <url>", "Debian mirror for the build root", DEFAULT_MIRROR)
    .option("--json", "JSON output")
    .action(
      async (
        src: string,
        o: {
          kernel: string;
          name: string;
          out: string;
          replace?: boolean;
          signKey?: string;
          signCert?: string;
          mirror: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (!existsSync(src)) throw new UsageError(`no such file: ${src}`);
        const ctx = contextOf(cmd);
        const task = ctx.progress.task(`building ${o.name}.ko for ${o.kernel}`, 0);
        const ko = await buildLivepatch({
          src,
          release: o.kernel,
          name: o.name,
          out: o.out,
          replace: !!o.replace,
          mirror: o.mirror,
          signKey: o.signKey,
          signCert: o.signCert,
          onLine: (l) => l.startsWith("I: ") && ctx.progress.note(l.slice(3)),
        });
        task.done();
        if (o.json) printJson({ module: ko, kernel: o.kernel, replace: !!o.replace, signed: !!o.signKey });
        else say(ctx, ko);
      },
    );

  const lifecycle = (name: string, description: string, replace: boolean) =>
    kernel
      .command(name)
      .description(description)
      .argument("<module>", "livepatch .ko (with --from-repo: the livepatch-kernel target's name)")
      .option("--timeout <seconds>", "how long to wait for the transition", "60")
      .option("--from-repo <url>", "take the module from a Berth repository (TUF-verified) by target name")
      .option("--trusted-root <file>", "with --from-repo: root.json to trust (default the image's)")
      .option("--json", "JSON output")
      .action(
        async (module: string, o: { timeout: string; json?: boolean } & FromRepoFlags, cmd: Command) => {
          if (!o.fromRepo && !existsSync(module)) throw new UsageError(`no such module: ${module}`);
          if (process.getuid?.() !== 0) throw new BerthError("loading kernel modules needs root");
          const src = await kernelPatchSource(module, o);
          const s = await loadLivepatch(src.path, {
            timeoutMs: timeoutOf(o),
            onBlocked: blocked(!!o.json),
            requireReplace: replace,
          }).finally(src.cleanup);
          if (o.json) printJson({ ...s, taint: taint() });
          else
            say(contextOf(cmd), `${s.name}: enabled, transition complete; patched ${s.functions.join(", ")}`);
        },
      );
  lifecycle("load", "load a livepatch module and wait until every task has switched", false);
  lifecycle("replace", "load a cumulative livepatch that atomically replaces the ones before it", true);

  kernel
    .command("disable")
    .description("roll a livepatch back: disable it and wait until every task runs the original code")
    .argument("<name>", "livepatch name (see status)")
    .option("--remove", "unload the module afterwards")
    .option("--timeout <seconds>", "how long to wait for the transition", "60")
    .option("--json", "JSON output")
    .action(async (name: string, o: { timeout: string; remove?: boolean; json?: boolean }, cmd: Command) => {
      if (process.getuid?.() !== 0) throw new BerthError("disabling a livepatch needs root");
      await disableLivepatch(name, {
        timeoutMs: timeoutOf(o),
        remove: !!o.remove,
        onBlocked: blocked(!!o.json),
      });
      if (o.json) printJson({ name, disabled: true, removed: !!o.remove, taint: taint() });
      else say(contextOf(cmd), `${name}: disabled${o.remove ? " and removed" : ""}`);
    });

  kernel
    .command("status")
    .description("livepatches on the running kernel, their state, the taint and the module signing policy")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }, cmd: Command) => {
      const s = { patches: livepatches(), taint: taint(), signing: signingPolicy() };
      if (o.json) return printJson(s);
      const ctx = contextOf(cmd);
      say(
        ctx,
        s.patches.length
          ? renderTable(
              ["name", "enabled", "transition", "functions"],
              s.patches.map((p) => [
                p.name,
                p.enabled ? "yes" : "no",
                p.transition ? "in progress" : "done",
                p.functions.join(", "),
              ]),
            )
          : "no livepatches",
      );
      say(ctx, `taint ${s.taint.value}${s.taint.flags.length ? ` (${s.taint.flags.join("; ")})` : ""}`);
      say(ctx, `module signing: ${s.signing.why}`);
    });
}
