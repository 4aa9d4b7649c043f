// `berth agent`: enrol this node with a fleet server, then report to it and carry out its work.

import { type Command, Option } from "commander";
import { ReportQueue } from "../../agent/queue.ts";
import { AgentState, DEFAULT_STATE_DIR } from "../../agent/state.ts";
import { BerthError, UsageError } from "../../common/errors.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

// The agent's modules (harden rules, scan) load only when an agent command runs.
const agentModule = () => import("../../agent/agent.ts");

const stateDirOption = () =>
  new Option("--state-dir <dir>", "the agent's identity, queue and job records").default(DEFAULT_STATE_DIR);

export function registerAgentCommands(program: Command): void {
  const agent = program
    .command("agent")
    .description("the node agent: enrol with a fleet server, report inventory, carry out work")
    .addHelpText(
      "after",
      `
Examples:
  berth agent enroll --server https://fleet:8443 --token berth-enroll-...
  berth agent run                                   every 60 s (the server's interval), with jitter
  berth agent run --once --state-dir /tmp/agent2    one report, then exit
  berth agent status --json`,
    );

  agent
    .command("enroll")
    .description("make this node's Ed25519 key and trade an enrolment token for a node id")
    .requiredOption("--server <url>", "the fleet server, e.g. https://fleet.example:8443")
    .requiredOption("--token <token>", "an enrolment token (berth server token create)")
    .addOption(stateDirOption())
    .option("--hostname <name>", "the name to enrol under (default: this machine's)")
    .option("--force", "enrol again with a new key and node id")
    .option("--enable", "then enable and start the berth-agent systemd unit (default state directory only)")
    .option("--json", "JSON output")
    .action(
      async (
        o: {
          server: string;
          token: string;
          stateDir: string;
          hostname?: string;
          force?: boolean;
          enable?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (o.enable && o.stateDir !== DEFAULT_STATE_DIR)
          throw new UsageError(
            `--enable runs the unit on ${DEFAULT_STATE_DIR}; drop --state-dir or --enable`,
          );
        if (!/^https?:\/\/[^/\s]+/.test(o.server))
          throw new UsageError(`--server wants http(s)://HOST[:PORT], not "${o.server}"`);
        const { enrollAgent } = await agentModule();
        const id = await enrollAgent({
          server: o.server,
          token: o.token,
          stateDir: o.stateDir,
          hostname: o.hostname,
          force: o.force,
        });
        const unit = o.enable ? await (await import("../../agent/systemd.ts")).enableAgentUnit() : undefined;
        if (o.json) printJson({ ...id, ...(unit ? { unit } : {}) });
        else {
          say(contextOf(cmd), `enrolled as node ${id.nodeId} with ${id.server}; state in ${o.stateDir}`);
          if (unit) say(contextOf(cmd), `${unit} enabled and started`);
        }
      },
    );

  agent
    .command("run")
    .description("report every interval (delta against the last acknowledged report) and carry out work")
    .addOption(stateDirOption())
    .option("--once", "one round (read, report, work), then exit")
    .option("--harden-profile <name>", "berth harden profile for the node's score", "security-mode")
    .option("--no-harden", "do not run the hardening check")
    .option("--harden-interval <seconds>", "seconds between hardening checks", (v) => Number(v), 6 * 3600)
    .option("--advisory-db <path>", "advisory database for the hardening kernel rule")
    .option("--json", "with --once: the round's result as JSON")
    .action(
      async (
        o: {
          stateDir: string;
          once?: boolean;
          hardenProfile: string;
          harden: boolean;
          hardenInterval: number;
          advisoryDb?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        if (!(o.hardenInterval >= 0)) throw new UsageError("--harden-interval wants a number of seconds");
        const { Agent } = await agentModule();
        const a = new Agent({
          stateDir: o.stateDir,
          hardenProfile: o.harden ? o.hardenProfile : undefined,
          hardenInterval: o.hardenInterval,
          advisoryDb: o.advisoryDb,
          log: ctx.quiet || o.json ? undefined : (l) => process.stderr.write(`berth agent: ${l}\n`),
        });
        if (o.once) {
          const r = await a.cycle();
          if (o.json) printJson({ nodeId: a.identity.nodeId, ...r });
          else
            say(
              ctx,
              `report ${r.seq} sent; ${r.acked} acknowledged; ${r.jobs.length} jobs run; ${r.queued} waiting`,
            );
          return;
        }
        const stop = new AbortController();
        process.once("SIGTERM", () => stop.abort());
        process.once("SIGINT", () => stop.abort());
        await a.run(stop.signal);
      },
    );

  agent
    .command("status")
    .description("this agent's identity and queue")
    .addOption(stateDirOption())
    .option("--json", "JSON output")
    .action((o: { stateDir: string; json?: boolean }, cmd: Command) => {
      const state = new AgentState(o.stateDir);
      const id = state.identity();
      if (!id) throw new BerthError(`not enrolled (no ${state.path("node.json")})`);
      const q = new ReportQueue(state);
      const out = {
        ...id,
        lastQueued: q.last()?.seq ?? 0,
        acknowledged: q.acked(),
        waiting: q.seqs().length,
      };
      if (o.json) printJson(out);
      else
        say(
          contextOf(cmd),
          `node ${id.nodeId} at ${id.server}: report ${out.lastQueued} queued last, ${out.acknowledged} acknowledged, ${out.waiting} waiting`,
        );
    });
}
