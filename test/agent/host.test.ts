// Real agents on this machine, through the berth CLI as an operator runs it: `berth server init` and
// `token create`, `berth agent enroll` and `run --once`, `berth fleet host(s)`. What the server shows for
// the host equals what `berth scan host` and `berth harden check` say run locally, and dpkg-query and
// docker ps; a database update re-evaluates the node without it reporting again. Several agents with
// their own state directories are several nodes; an agent whose server is down keeps its report queued
// until the server is back; jobs run once, through the berth commands, and report their outcome.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Job, NodeDetail, NodePage } from "../../src/server/api-schemas.ts";
import { berth, isOneLineError, runSync, SHARED_DATA, tempDir } from "../helpers.ts";
import { advisoryDb, api, type ServerProcess, startServerProcess } from "../server/fleet.ts";

interface ScanJson {
  findings: {
    vulnId: string;
    package: string;
    installed: string;
    status: string;
    severity: string;
    fixedVersion?: string;
    dataSource: string;
  }[];
}
interface HardenJson {
  summary: { score: number };
  results: { id: string; status: string }[];
}

const findingKeys = (fs: ScanJson["findings"]) =>
  fs
    .map((f) => `${f.vulnId} ${f.package} ${f.installed} ${f.status} ${f.severity} ${f.fixedVersion ?? ""}`)
    .sort();

async function ok(args: string[], env?: NodeJS.ProcessEnv) {
  const r = await berth(args, { env });
  assert.equal(r.code, 0, `berth ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** dpkg-query's view of this machine: name:architecture=version of every package it lists. */
function dpkgPackages(): string[] {
  return runSync("dpkg-query", ["-W", "-f", "${Package}:${Architecture}=${Version}\\n"])
    .stdout.trim()
    .split("\n")
    .sort();
}

const runningContainers = () =>
  new Set(runSync("docker", ["ps", "-q", "--no-trunc"]).stdout.trim().split("\n").filter(Boolean));

describe("berth agent on this host", () => {
  const dir = tempDir("berth-agent-host-");
  const advisory = join(dir, "advisory.sqlite");
  const fleetDb = `sqlite:${join(dir, "fleet.sqlite")}`;
  const state = (n: number) => join(dir, `agent-${n}`);
  const env = { BERTH_DB: advisory };
  let server: ServerProcess;
  let admin: string;
  let enrollToken: string;
  let hostId: string;

  before(async () => {
    await advisoryDb(advisory);
    admin = (JSON.parse(await ok(["server", "init", "--db", fleetDb, "--json"])) as { adminToken: string })
      .adminToken;
    assert.match(admin, /^berth-api-/);
    const again = await berth(["server", "init", "--db", fleetDb]);
    assert.equal(again.code, 1, "a second init is refused");
    assert.ok(isOneLineError(again.stderr), again.stderr);
    enrollToken = (
      await ok(["server", "token", "create", "--db", fleetDb, "--ttl", "30m", "--uses", "10"])
    ).trim();
    assert.match(enrollToken, /^berth-enroll-/);
    server = await startServerProcess({ db: fleetDb, advisoryDb: advisory, tickMs: 500 });
  });
  after(async () => {
    await server?.kill();
  });

  /** The arguments of `berth agent enroll` for agent `n`'s state directory, with the shared token. */
  const enrollArgs = (n: number, ...extra: string[]) => [
    "agent",
    "enroll",
    "--server",
    server.url,
    "--token",
    enrollToken,
    "--state-dir",
    state(n),
    ...extra,
  ];

  const detail = async (id: string) =>
    JSON.parse(
      await ok(["fleet", "host", id, "--server", server.url, "--api-token", admin, "--json"]),
    ) as NodeDetail;

  test("the host enrols and reports; the server shows what scan, harden check, dpkg-query and docker say", async () => {
    const enrolled = JSON.parse(await ok(enrollArgs(1, "--json"))) as { nodeId: string };
    hostId = enrolled.nodeId;
    const key = readFileSync(join(state(1), "node.key"), "utf8");
    assert.match(key, /BEGIN PRIVATE KEY/);
    const dpkgBefore = dpkgPackages();
    const dockerBefore = runningContainers();
    const run = JSON.parse(
      await ok(["agent", "run", "--once", "--state-dir", state(1), "--advisory-db", advisory, "--json"], env),
    ) as { seq: number; acked: number; queued: number };
    // One report at once, one more with the hardening check's result.
    assert.deepEqual([run.seq, run.acked, run.queued], [2, 2, 0]);
    const scan = JSON.parse(await ok(["scan", "host", "--db", advisory, "--json", "-q"], env)) as ScanJson;
    const harden = JSON.parse(await ok(["harden", "check", "--db", advisory, "--json"], env)) as HardenJson;
    const dpkgAfter = dpkgPackages();
    const dockerAfter = runningContainers();

    const d = await detail(hostId);
    const served = d.packages.map((p) => `${p.name}:${p.architecture}=${p.version}`).sort();
    assert.ok(
      JSON.stringify(served) === JSON.stringify(dpkgBefore) ||
        JSON.stringify(served) === JSON.stringify(dpkgAfter),
      "the server's packages are dpkg-query's",
    );
    assert.equal(d.node.kernel, runSync("uname", ["-r"]).stdout.trim());
    assert.ok(scan.findings.length > 0, "the fixture gives this host findings");
    assert.deepEqual(findingKeys(d.findings), findingKeys(scan.findings));
    assert.equal(d.node.findings.total, scan.findings.length);
    assert.equal(d.node.harden?.score, harden.summary.score);
    assert.deepEqual(
      d.hardenFailing,
      harden.results
        .filter((r) => r.status === "fail")
        .map((r) => r.id)
        .sort(),
    );
    // Containers come and go on a shared machine: what the agent saw lies between the two looks.
    const seen = new Set(d.containers.map((c) => c.id));
    for (const id of dockerBefore)
      if (dockerAfter.has(id)) assert.ok(seen.has(id), `container ${id} missing`);
    for (const id of seen) assert.ok(dockerBefore.has(id) || dockerAfter.has(id), `container ${id} unknown`);
    assert.equal(d.node.online, true);
    assert.equal(d.node.update.state, "idle");
  });

  test("a database update re-evaluates the node without it reporting again", async () => {
    const before = (
      await api<{ advisoryDb: { generation: string } }>(server.url, admin, "GET", "/api/v1/fleet/status")
    ).body.advisoryDb.generation;
    await advisoryDb(advisory, [`kernel-cna=${join(SHARED_DATA, "kernel-cna/cves.jsonl.gz")}`]);
    let status = { advisoryDb: { generation: before, evaluatedAt: null as string | null } };
    for (let i = 0; i < 600 && status.advisoryDb.generation === before; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      status = (await api<typeof status>(server.url, admin, "GET", "/api/v1/fleet/status")).body;
    }
    assert.notEqual(status.advisoryDb.generation, before);
    const scan = JSON.parse(await ok(["scan", "host", "--db", advisory, "--json", "-q"], env)) as ScanJson;
    assert.ok(scan.findings.some((f) => f.dataSource === "kernel-cna" || f.package.startsWith("linux")));
    let d = await detail(hostId);
    for (let i = 0; i < 120 && d.findings.length !== scan.findings.length; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      d = await detail(hostId);
    }
    assert.deepEqual(findingKeys(d.findings), findingKeys(scan.findings));
    assert.equal(d.node.seq, 2, "the node did not report again");
    const history = await api<{ points: { critical: number; high: number }[] }>(
      server.url,
      admin,
      "GET",
      "/api/v1/fleet/vulnerabilities/history",
    );
    assert.ok(history.body.points.length >= 1);
  });

  test("several agents with their own state directories are several nodes", async () => {
    for (const n of [2, 3, 4]) await ok(enrollArgs(n, "--hostname", `fleet-test-${n}`));
    await Promise.all(
      [2, 3, 4].map((n) => ok(["agent", "run", "--once", "--no-harden", "--state-dir", state(n)])),
    );
    const hosts = JSON.parse(
      await ok(["fleet", "hosts", "--server", server.url, "--api-token", admin, "--json"]),
    ) as {
      total: number;
      nodes: NodePage["nodes"];
    };
    assert.equal(hosts.total, 4);
    const names = hosts.nodes.map((n) => n.hostname).sort();
    assert.deepEqual(names.slice(0, 3), ["fleet-test-2", "fleet-test-3", "fleet-test-4"]);
    assert.equal(new Set(hosts.nodes.map((n) => n.id)).size, 4);
    const keys = [1, 2, 3, 4].map(
      (n) =>
        (JSON.parse(readFileSync(join(state(n), "node.json"), "utf8")) as { publicKey: string }).publicKey,
    );
    assert.equal(new Set(keys).size, 4, "each agent made its own key");
    const pkgs = hosts.nodes.map((n) => n.packages);
    assert.ok(pkgs.every((p) => p === pkgs[0] && p > 100));
    assert.equal(hosts.nodes.find((n) => n.hostname === "fleet-test-2")?.harden, null);
    // Enrolling the same state directory again is refused without --force.
    const again = await berth(enrollArgs(2));
    assert.equal(again.code, 1);
    assert.ok(isOneLineError(again.stderr), again.stderr);
  });

  test("with the server down the report waits in the queue; it is delivered when the server is back", async () => {
    const port = server.port;
    await server.kill();
    const down = await berth(["agent", "run", "--once", "--no-harden", "--state-dir", state(2)]);
    assert.equal(down.code, 1);
    assert.ok(isOneLineError(down.stderr), down.stderr);
    assert.match(down.stderr, /cannot reach/);
    const waiting = JSON.parse(await ok(["agent", "status", "--state-dir", state(2), "--json"])) as {
      nodeId: string;
      lastQueued: number;
      acknowledged: number;
      waiting: number;
    };
    assert.deepEqual([waiting.lastQueued, waiting.acknowledged, waiting.waiting], [2, 1, 1]);
    server = await startServerProcess({ db: fleetDb, advisoryDb: advisory, port, tickMs: 500 });
    await ok(["agent", "run", "--once", "--no-harden", "--state-dir", state(2)]);
    const after = JSON.parse(
      await ok(["agent", "status", "--state-dir", state(2), "--json"]),
    ) as typeof waiting;
    assert.deepEqual([after.lastQueued, after.acknowledged, after.waiting], [3, 3, 0]);
    assert.equal((await detail(waiting.nodeId)).node.seq, 3);
  });

  test("jobs run once through the berth commands, and their outcome reaches the server", async () => {
    const id = (JSON.parse(readFileSync(join(state(3), "node.json"), "utf8")) as { nodeId: string }).nodeId;
    const rescan = await api<{ id: string }>(server.url, admin, "POST", `/api/v1/nodes/${id}/jobs`, {
      kind: "rescan",
    });
    const patch = await api<{ id: string }>(server.url, admin, "POST", `/api/v1/nodes/${id}/jobs`, {
      kind: "patch-apply",
      params: { name: "no-such-patch" },
    });
    const harden = await api<{ id: string }>(server.url, admin, "POST", `/api/v1/nodes/${id}/jobs`, {
      kind: "harden-apply",
      params: { name: "no-such-profile" },
    });
    const r = JSON.parse(
      await ok(["agent", "run", "--once", "--no-harden", "--state-dir", state(3), "--json"]),
    ) as {
      jobs: { id: string }[];
    };
    assert.equal(r.jobs.length, 3);
    const job = async (j: string) => (await api<Job>(server.url, admin, "GET", `/api/v1/jobs/${j}`)).body;
    assert.equal((await job(rescan.body.id)).state, "succeeded");
    const p = await job(patch.body.id);
    assert.equal(p.state, "failed");
    assert.match(p.error ?? "", /repository/);
    const h = await job(harden.body.id);
    assert.equal(h.state, "failed");
    assert.match(h.error ?? "", /unknown profile/, "the berth command's own error line");
    // Another round: the server hands out nothing new, and nothing runs twice.
    const again = JSON.parse(
      await ok(["agent", "run", "--once", "--no-harden", "--state-dir", state(3), "--json"]),
    ) as {
      jobs: unknown[];
    };
    assert.equal(again.jobs.length, 0);
    assert.equal((await job(patch.body.id)).updatedAt, p.updatedAt);
  });
});
