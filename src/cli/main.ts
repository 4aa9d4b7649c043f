#!/usr/bin/env node
// The `berth` command: one family of subcommands per part of the product.

import { Command, CommanderError } from "commander";
import { registerDbCommands } from "../db/commands.ts";
import { registerHardenCommands } from "../harden/commands.ts";
import { registerOsCommands } from "../os/commands.ts";
import { registerPatchCommands } from "../patch/commands.ts";
import { registerPkgCommands } from "../pkg/commands.ts";
import { registerScanCommands } from "../scan/commands.ts";

import { errorLine, exitCodeOf } from "./errors.ts";

export function buildProgram(): Command {
  const program = new Command("berth")
    .description(
      "Berth: a container host OS built from Debian packages, and the toolkit that builds, secures, patches and updates it.",
    )
    .version("0.1.0")
    .option("-q, --quiet", "no progress display and no informational output")
    .showSuggestionAfterError(true)
    .configureOutput({
      // Commander's own errors are printed once, as one line, by the handler below.
      writeErr: (s) => {
        if (!s.startsWith("error:")) process.stderr.write(s);
      },
    })
    .addHelpText(
      "after",
      `
Examples:
  berth pkg compare 1:2.0-1 gt 2.0~rc1-3     exit 0 when the relation holds, as dpkg does
  berth pkg resolve docker.io --why runc     the closure of an install, and why runc is in it
  berth pkg installed --json                 this machine's packages with their source packages
  berth os build && berth os run --check     build the default image, boot it, run a container`,
    );
  program.exitOverride();
  registerPkgCommands(program);
  registerOsCommands(program);
  registerScanCommands(program);
  registerDbCommands(program);
  registerHardenCommands(program);
  registerPatchCommands(program);

  // Every subcommand exits through our handler too.
  const override = (c: Command) => {
    c.exitOverride();
    c.configureOutput({
      writeErr: (s) => {
        if (!s.startsWith("error:")) process.stderr.write(s);
      },
    });
    c.commands.forEach(override);
  };
  program.commands.forEach(override);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0)
        return 0;
      if (e.code === "commander.help") return 0;
      process.stderr.write(`berth: ${e.message.replace(/^error:\s*/, "")}\n`);
      return 2;
    }
    process.stderr.write(`berth: ${errorLine(e)}\n`);
    if (process.env.BERTH_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return exitCodeOf(e);
  }
}

// A reader that goes away (berth scan host | head) is not an error of ours.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
});
const code = await main(process.argv.slice(2));

// Let stdout drain before exiting so piped JSON is never cut short.
process.exitCode = code;
