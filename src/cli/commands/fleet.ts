// `berth fleet`: what the console shows, from the command line, through the server's API.

import type { Command } from "commander";
import { UsageError } from "../../common/errors.ts";
import { renderTable } from "../../common/format.ts";
import { ApiClient, query } from "../../server/api-client.ts";
import type { Node, NodeDetail, NodePage } from "../../server/api-schemas.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

interface ConnFlags {
  server?: string;
  apiToken?: string;
  json?: boolean;
}

function client(o: ConnFlags): ApiClient {
  const server = o.server ?? process.env.BERTH_SERVER;
  const token = o.apiToken ?? process.env.BERTH_API_TOKEN;
  if (!server) throw new UsageError("--server URL (or $BERTH_SERVER) is needed");
  if (!token) throw new UsageError("--api-token T (or $BERTH_API_TOKEN) is needed");
  if (!/^https?:\/\//.test(server))
    throw new UsageError(`--server wants http(s)://HOST[:PORT], not "${server}"`);
  return new ApiClient(server, token);
}

const conn = (c: Command) =>
  c
    .option("--server <url>", "the fleet server ($BERTH_SERVER)")
    .option("--api-token <token>", "an API token ($BERTH_API_TOKEN)")
    .option("--json", "JSON output");

const findings = (n: Node) =>
  n.findings.total
    ? `${n.findings.critical}C ${n.findings.high}H ${n.findings.medium}M ${n.findings.total}`
    : "0";

export function registerFleetCommands(program: Command): void {
  const fleet = program
    .command("fleet")
    .description("the fleet as the server sees it: hosts, one host's detail")
    .addHelpText(
      "after",
      `
Examples:
  berth fleet hosts --server https://fleet:8443 --api-token T
  berth fleet hosts --cve CVE-2024-6387 --json
  berth fleet hosts --package openssl --version-below 3.0.15-1
  berth fleet host 6c1f...`,
    );

  conn(
    fleet
      .command("hosts")
      .description("enrolled hosts with their release, posture and update state")
      .option("--search <text>", "hostnames containing this")
      .option("--online", "only hosts that reported recently")
      .option("--offline", "only hosts that did not")
      .option("--release <r>", "only this release")
      .option("--kernel <k>", "only this running kernel")
      .option("--cve <id>", "only hosts a vulnerability affects")
      .option("--score-below <n>", "only hosts whose hardening score is below this")
      .option("--patch <name>", "only hosts with this live patch")
      .option("--package <name>", "only hosts with this package")
      .option("--version-below <v>", "with --package: only versions older than this")
      .option("--all", "every page, not only the first 100 hosts"),
  ).action(
    async (
      o: ConnFlags & {
        search?: string;
        online?: boolean;
        offline?: boolean;
        release?: string;
        kernel?: string;
        cve?: string;
        scoreBelow?: string;
        patch?: string;
        package?: string;
        versionBelow?: string;
        all?: boolean;
      },
      cmd: Command,
    ) => {
      if (o.online && o.offline) throw new UsageError("--online and --offline exclude each other");
      if (o.versionBelow && !o.package) throw new UsageError("--version-below goes with --package");
      const api = client(o);
      const nodes: Node[] = [];
      let cursor: string | undefined;
      let total = 0;
      do {
        const page = await api.get<NodePage>(
          `/api/v1/nodes${query({
            search: o.search,
            online: o.online ? true : o.offline ? false : undefined,
            release: o.release,
            kernel: o.kernel,
            cve: o.cve,
            scoreBelow: o.scoreBelow,
            patch: o.patch,
            package: o.package,
            versionBelow: o.versionBelow,
            limit: o.all ? 500 : 100,
            cursor,
          })}`,
        );
        nodes.push(...page.nodes);
        total = page.total;
        cursor = o.all ? page.next : undefined;
      } while (cursor);
      if (o.json) return printJson({ total, nodes });
      say(
        contextOf(cmd),
        renderTable(
          ["id", "hostname", "online", "release", "kernel", "findings", "score", "update"],
          nodes.map((n) => [
            n.id,
            n.hostname,
            n.online ? "yes" : "no",
            n.release ?? "",
            n.kernel ?? "",
            findings(n),
            n.harden ? n.harden.score : "",
            n.update.state,
          ]),
        ),
      );
      say(contextOf(cmd), `\n${nodes.length} of ${total} hosts`);
    },
  );

  conn(
    fleet
      .command("host")
      .description("one host: packages, containers, findings, hardening, jobs")
      .argument("<id>", "node id"),
  ).action(async (id: string, o: ConnFlags, cmd: Command) => {
    const d = await client(o).get<NodeDetail>(`/api/v1/nodes/${encodeURIComponent(id)}/detail`);
    if (o.json) return printJson(d);
    const n = d.node;
    const ctx = contextOf(cmd);
    say(
      ctx,
      `${n.hostname} (${n.id}) ${n.online ? "online" : "offline"}, last seen ${n.lastSeen ?? "never"}`,
    );
    say(ctx, `release ${n.release ?? "?"}, kernel ${n.kernel ?? "?"}, update ${n.update.state}`);
    say(
      ctx,
      `${d.packages.length} packages, ${d.containers.length} containers, hardening ${n.harden ? `${n.harden.score}/100 (${n.harden.failing} failing)` : "not checked"}`,
    );
    if (d.findings.length)
      say(
        ctx,
        `\n${renderTable(
          ["vulnerability", "severity", "package", "installed", "fixed in"],
          d.findings.map((f) => [f.vulnId, f.severity, f.package, f.installed, f.fixedVersion ?? f.status]),
        )}`,
      );
    if (d.containers.length)
      say(
        ctx,
        `\n${renderTable(
          ["container", "image", "state"],
          d.containers.map((c) => [c.name, c.image, c.state]),
        )}`,
      );
    if (d.jobs.length)
      say(
        ctx,
        `\n${renderTable(
          ["job", "kind", "state", "updated"],
          d.jobs.map((j) => [j.id, j.kind, j.state, j.updatedAt]),
        )}`,
      );
  });
}
