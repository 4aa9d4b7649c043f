// `berth operator`: the Kubernetes operator that rolls UpdatePlans node by node through the fleet
// server, in a cluster (its ServiceAccount) or outside one (a kubeconfig).

import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { parseDuration } from "../../k8s/duration.ts";
import { FleetAgents } from "../../k8s/fleet-agents.ts";
import { Kube } from "../../k8s/kube.ts";
import { DEFAULT_NAMESPACE } from "../../k8s/names.ts";
import { Operator } from "../../k8s/operator.ts";
import { contextOf } from "../context.ts";

interface OperatorFlags {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  identity: string;
  server?: string;
  tokenFile?: string;
  leaseDuration: string;
  lockDuration: string;
  poll: string;
  resync: string;
  evictRetry: string;
  stats?: string;
  json?: boolean;
}

function ms(flag: string, v: string): number {
  const n = parseDuration(v);
  if (n === undefined || n <= 0)
    throw new UsageError(`${flag} wants a duration such as 15s or 2m, not "${v}"`);
  return n;
}

function fleetToken(o: OperatorFlags): string {
  if (o.tokenFile) {
    try {
      const t = readFileSync(o.tokenFile, "utf8").trim();
      if (!t) throw new BerthError(`${o.tokenFile} is empty`);
      return t;
    } catch (e) {
      if (e instanceof BerthError) throw e;
      throw new BerthError(`cannot read the fleet API token: ${(e as Error).message}`);
    }
  }
  const t = process.env.BERTH_FLEET_TOKEN?.trim();
  if (!t) throw new UsageError("give the fleet server's API token: --token-file FILE or $BERTH_FLEET_TOKEN");
  return t;
}

export function registerOperatorCommands(program: Command): void {
  program
    .command("operator")
    .description(
      "roll UpdatePlans over a Kubernetes cluster's nodes, one slot at a time, through the fleet server",
    )
    .option(
      "--kubeconfig <file>",
      "outside a cluster: the kubeconfig (default $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    .option("--context <name>", "kubeconfig context")
    .option("--namespace <ns>", "namespace of the operator's Leases", DEFAULT_NAMESPACE)
    .option("--identity <id>", "this replica's name for leader election", `${hostname()}-${process.pid}`)
    .option("--server <url>", "the fleet server (docs/fleet.md)")
    .option("--token-file <file>", "the fleet server API token (else $BERTH_FLEET_TOKEN)")
    .option(
      "--lease-duration <d>",
      "leader Lease duration: a standby takes over this long after the leader stops",
      "15s",
    )
    .option("--lock-duration <d>", "a node slot unrenewed this long is released", "5m")
    .option("--poll <d>", "how often an updating node's agent is asked", "2s")
    .option("--resync <d>", "reconcile at least this often", "2s")
    .option("--evict-retry <d>", "pause between evictions a PodDisruptionBudget refused", "5s")
    .option("--stats <file>", "on exit, write the requests made (JSON) to FILE")
    .option("--json", "log JSON lines")
    .addHelpText(
      "after",
      `
Examples:
  berth operator --kubeconfig ~/.kube/config --namespace berth-system --server https://fleet:8443 --token-file token
  BERTH_FLEET_TOKEN=... berth operator --server http://127.0.0.1:8443           in a pod: its ServiceAccount
  kubectl get updateplans -w                                                     watch it work`,
    )
    .action(async (o: OperatorFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (!o.server) throw new UsageError("--server: the fleet server's URL is needed");
      try {
        new URL(o.server);
      } catch {
        throw new UsageError(`--server "${o.server}" is not a URL`);
      }
      const durations = {
        leaseDurationMs: ms("--lease-duration", o.leaseDuration),
        lockDurationMs: ms("--lock-duration", o.lockDuration),
        pollMs: ms("--poll", o.poll),
        resyncMs: ms("--resync", o.resync),
        evictRetryMs: ms("--evict-retry", o.evictRetry),
      };
      const agents = new FleetAgents({ server: o.server, token: fleetToken(o) });
      const kube = new Kube({ kubeconfig: o.kubeconfig, context: o.context });
      const log = (line: string) => {
        if (ctx.quiet) return;
        const time = new Date().toISOString();
        process.stdout.write(o.json ? `${JSON.stringify({ time, msg: line })}\n` : `${time} ${line}\n`);
      };
      const operator = new Operator(kube, {
        namespace: o.namespace,
        identity: o.identity,
        agents,
        ...durations,
        renewDeadlineMs: Math.round((durations.leaseDurationMs * 2) / 3),
        retryMs: Math.max(500, Math.round(durations.leaseDurationMs / 7)),
        log,
      });
      const stop = new AbortController();
      for (const sig of ["SIGINT", "SIGTERM"] as const)
        process.once(sig, () => {
          log(`operator: ${sig}, handing over`);
          stop.abort();
        });
      try {
        await operator.run(stop.signal);
      } finally {
        // A graceful stop has handed the lease over; keep-alive sockets must not hold the exit up.
        setTimeout(() => process.exit(), 3000).unref();
        if (o.stats)
          await writeFileAtomic(
            o.stats,
            `${JSON.stringify({ ...operator.stats(), fleet: Object.fromEntries(agents.counts) }, null, 2)}\n`,
          );
      }
    });
}
