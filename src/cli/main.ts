#!/usr/bin/env node
// The `berth` command: one family of subcommands per part of the product.

import { Command, CommanderError } from "commander";
import { errorLine, exitCodeOf } from "../common/errors.ts";

/**
 * The command families, in the order help lists them. Each is loaded only when it is asked for: a
 * command's start-up then pays for its own part only (the fleet server, the Kubernetes client and the
 * image builder are large), which matters on small nodes and under emulation.
 */
const FAMILIES: [string, () => Promise<(program: Command) => void>][] = [
  ["pkg", async () => (await import("./commands/pkg.ts")).registerPkgCommands],
  ["os", async () => (await import("./commands/os.ts")).registerOsCommands],
  ["images", async () => (await import("./commands/images.ts")).registerImagesCommands],
  ["scan", async () => (await import("./commands/scan.ts")).registerScanCommands],
  ["db", async () => (await import("./commands/db.ts")).registerDbCommands],
  ["harden", async () => (await import("./commands/harden.ts")).registerHardenCommands],
  ["patch", async () => (await import("./commands/patch.ts")).registerPatchCommands],
  ["repo", async () => (await import("./commands/repo.ts")).registerRepoCommands],
  ["advisory", async () => (await import("./commands/advisory.ts")).registerAdvisoryCommands],
  ["k8s", async () => (await import("./commands/k8s.ts")).registerK8sCommands],
  ["server", async () => (await import("./commands/server.ts")).registerServerCommands],
  ["agent", async () => (await import("./commands/agent.ts")).registerAgentCommands],
  ["fleet", async () => (await import("./commands/fleet.ts")).registerFleetCommands],
  ["operator", async () => (await import("./commands/operator.ts")).registerOperatorCommands],
  ["update", async () => (await import("./commands/update.ts")).registerUpdateCommands],
];

export async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new Command("berth")
    .description(
      "Berth: a container host OS built from Debian packages, and the toolkit that builds, secures, patches and updates it.",
    )
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
  // Help, no command or an unknown one (for suggestions) needs every family.
  // (The only global option, -q, takes no value: the first other word names the family.)
  const family = argv.find((a) => !a.startsWith("-"));
  // Only `berth --version`: commander recognises program options anywhere on the line, so a program
  // --version would swallow `berth update apply --version V` (print 0.1.0 and exit 0, applying nothing).
  if (family === undefined) program.version("0.1.0");
  const asked = FAMILIES.filter(([name]) => name === family);
  for (const [, load] of asked.length ? asked : FAMILIES) (await load())(program);

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
  const program = await buildProgram(argv);
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
