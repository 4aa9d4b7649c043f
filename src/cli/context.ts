import type { Command } from "commander";
import type { Progress } from "../common/progress.ts";
import { progressFor } from "./progress.ts";

/** What every command action gets: output mode and a progress reporter. */
export interface CommandContext {
  json: boolean;
  quiet: boolean;
  progress: Progress;
}

export function contextOf(cmd: Command): CommandContext {
  const o = cmd.optsWithGlobals() as { json?: boolean; quiet?: boolean };
  const json = !!o.json;
  const quiet = !!o.quiet;
  return { json, quiet, progress: progressFor({ json, quiet }) };
}

/** Prints a line of human output unless --quiet (JSON output is never suppressed). */
export function say(ctx: CommandContext, line: string): void {
  if (!ctx.quiet) process.stdout.write(`${line}\n`);
}

/** A warning on stderr, in the "berth: warning: ..." form. */
export function warn(message: string): void {
  process.stderr.write(`berth: warning: ${message}\n`);
}
