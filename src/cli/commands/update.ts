// `berth update`: A/B OS updates on a Berth node from the signed repository — status, check, apply
// (into the inactive slot, boot-counted, with the running release kept as the fallback) and rollback.

import type { Command } from "commander";
import { UsageError } from "../../common/errors.ts";
import { formatBytes, renderTable } from "../../common/format.ts";
import { checkReleaseVersion } from "../../os/release.ts";
import { applyUpdate, checkUpdate, reboot, rollbackUpdate } from "../../update/apply.ts";
import { updateStatus } from "../../update/status.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

interface ChoiceFlags {
  repository?: string;
  version?: string;
  maxVersion?: string;
  ignoreWaves?: boolean;
  allowDowngrade?: boolean;
  retry?: boolean;
}

function checked(o: ChoiceFlags) {
  if (o.version) checkReleaseVersion(o.version, "--version");
  if (o.maxVersion) checkReleaseVersion(o.maxVersion, "--max-version");
  if (o.repository && !/^(https?|file):\/\//.test(o.repository))
    throw new UsageError(`--repository wants a URL (http://, https:// or file://), not "${o.repository}"`);
  return {
    repository: o.repository,
    version: o.version,
    maxVersion: o.maxVersion,
    ignoreWaves: o.ignoreWaves,
    allowDowngrade: o.allowDowngrade,
    retryBad: o.retry,
  };
}

const choiceOptions = (c: Command) =>
  c
    .option("--repository <url>", "another address for the repository (the trusted root stays the image's)")
    .option("--version <version>", "this release, not the newest one (waves do not hold it back)")
    .option("--max-version <version>", "never beyond this release")
    .option("--ignore-waves", "take the release even if its rollout has not reached this node")
    .option("--allow-downgrade", "allow a release older than the running one")
    .option("--retry", "allow a release that failed on this node before");

export function registerUpdateCommands(program: Command): void {
  const update = program
    .command("update")
    .description("A/B OS updates on this node from the signed repository: status, check, apply, rollback")
    .addHelpText(
      "after",
      `
Examples:
  berth update status                      booted slot and release, the other slot, tries, last attempt
  berth update check                       is a newer release available to this node now?
  berth update apply --reboot              install it into the other slot and boot it (on trial)
  berth update apply --version 2026.12.2   a given release
  berth update rollback --reboot           back to the other slot's release`,
    );

  update
    .command("status")
    .description("the booted slot and release, the other slot's release and state, tries, last attempt, seed")
    .option("--repository <url>", "show this address instead of the configured one")
    .option("--json", "JSON output")
    .action(async (o: { repository?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const s = await updateStatus(o);
      if (ctx.json) return printJson(s);
      say(ctx, `booted: slot ${s.booted.slot ?? "?"}, release ${s.booted.release ?? "?"}`);
      say(
        ctx,
        renderTable(
          ["slot", "release", "state", "tries left", "", "size"],
          s.slots.map((x) => [
            x.slot,
            x.release ?? "—",
            x.state,
            x.triesLeft === undefined ? "—" : String(x.triesLeft),
            [x.booted ? "booted" : "", x.next ? "boots next" : ""].filter(Boolean).join(", "),
            x.bytes ? formatBytes(x.bytes) : "",
          ]),
        ),
      );
      const a = s.lastAttempt;
      say(
        ctx,
        a
          ? `last attempt: ${a.version} into slot ${a.slot} from ${a.from ?? "?"} at ${a.started ?? "?"}: ${a.result ?? "not assessed yet"}${a.resolved ? ` (${a.resolved})` : ""}`
          : "last attempt: none",
      );
      if (s.health)
        say(
          ctx,
          `health: ${s.health.release} ${s.health.result} at ${s.health.time}${s.health.reasons ? `: ${s.health.reasons}` : ""}`,
        );
      say(ctx, `bad releases: ${s.bad.length ? s.bad.join(", ") : "none"}`);
      say(ctx, `repository: ${s.repository ?? "none configured"}`);
      say(ctx, `wave seed: ${s.seed}`);
    });

  choiceOptions(
    update
      .command("check")
      .description("refresh the signed metadata; say whether a newer release is available to this node now"),
  )
    .option("--json", "JSON output")
    .action(async (o: ChoiceFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const r = await checkUpdate(checked(o));
      if (ctx.json)
        return printJson({
          available: !!r.release,
          version: r.release?.version,
          current: r.current,
          repository: r.repository,
          seed: r.seed,
          summary: r.summary,
          skipped: r.skipped,
        });
      say(ctx, r.summary);
      for (const s of r.skipped)
        say(ctx, `  ${s.version}: ${s.why}${s.opensAt ? ` (opens ${s.opensAt})` : ""}`);
    });

  choiceOptions(
    update
      .command("apply")
      .description(
        "download and verify a release, write it into the inactive slot, boot it next (on trial) with the running one as fallback",
      ),
  )
    .option("--tries <n>", "boots the new release gets before the node falls back (default: the release's)")
    .option("--reboot", "reboot into it when it is installed")
    .option("--json", "JSON output")
    .action(async (o: ChoiceFlags & { reboot?: boolean; tries?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const tries = o.tries === undefined ? undefined : Number(o.tries);
      if (tries !== undefined && !(Number.isInteger(tries) && tries >= 1 && tries <= 9))
        throw new UsageError("--tries wants a whole number from 1 to 9");
      const r = await applyUpdate({ ...checked(o), tries, progress: ctx.progress });
      if (ctx.json) printJson({ ...r, choice: { summary: r.choice.summary, skipped: r.choice.skipped } });
      else if (!r.installed) say(ctx, r.choice.summary);
      else
        say(
          ctx,
          r.reused
            ? `${r.version} is already in slot ${r.slot}: it boots next`
            : `installed ${r.version} into slot ${r.slot} (${r.entry}); it boots next, on trial${r.images.length ? `; images loaded: ${r.images.join(", ")}` : ""}`,
        );
      if (r.installed && o.reboot) {
        if (!ctx.json) say(ctx, "rebooting");
        await reboot();
      }
    });

  update
    .command("rollback")
    .description("boot the other slot's release next (on purpose)")
    .option("--force", "even if that release is recorded as bad")
    .option("--reboot", "reboot into it now")
    .option("--json", "JSON output")
    .action(async (o: { force?: boolean; reboot?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const r = await rollbackUpdate(o);
      if (ctx.json) printJson(r);
      else say(ctx, `${r.to} (slot ${r.slot}) boots next instead of ${r.from}`);
      if (o.reboot) {
        if (!ctx.json) say(ctx, "rebooting");
        await reboot();
      }
    });
}
