// The agent in a Berth image booted in QEMU (release v1 of test/shared/os-releases.ts, which carries
// Node.js 24 and Berth), with the fleet server on this machine's loopback, reached by the guest at
// 10.0.2.2. `berth agent enroll --enable` starts berth-agent.service from the image; what the server
// then shows is what the guest's own dpkg-query, uname and berth update status say, and what a scan of
// the image finds; a job given through the server is carried out by the unit.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BackgroundVm, freePort, guestSshArgs, startVm } from "../../src/os/qemu.ts";
import type { Job, NodeDetail, NodePage } from "../../src/server/api-schemas.ts";
import { berth, run, tempDir } from "../helpers.ts";
import {
  advisoryDb,
  api,
  initFleetDb,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
} from "../server/fleet.ts";
import { releaseSshKey, releaseV1, V1 } from "../shared/os-releases.ts";

const MINUTE = 60_000;

describe("berth agent in a Berth image under QEMU", () => {
  let vm: BackgroundVm;
  let server: ServerProcess;
  let key: string;
  let image: string;
  let admin: string;
  let enroll: string;
  const dir = tempDir("berth-agent-qemu-");
  const advisory = join(dir, "advisory.sqlite");
  const lines: string[] = [];

  const ssh = (command: string, timeout = 600) =>
    run("timeout", [String(timeout), "ssh", ...guestSshArgs(vm.sshPort, key, command)]);
  const sudoOk = async (command: string, timeout = 600) => {
    const r = await ssh(`sudo ${command}`, timeout);
    assert.equal(r.code, 0, `${command}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const until = async <T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> => {
    const t0 = Date.now();
    for (;;) {
      const v = await f();
      if (v !== undefined) return v;
      if (Date.now() - t0 > ms)
        throw new Error(`${what}: not within ${ms / 1000} s; console: ${lines.slice(-5).join(" | ")}`);
      await new Promise((r) => setTimeout(r, 3000));
    }
  };

  before(async () => {
    [key, image] = await Promise.all([releaseSshKey(), releaseV1()]);
    await advisoryDb(advisory);
    const db = await sqliteDatabase();
    ({ admin, enroll } = await initFleetDb(db.url));
    // Agents report every 10 s here, so the test waits less.
    server = await startServerProcess({
      db: db.url,
      advisoryDb: advisory,
      port: await freePort(),
      interval: 10,
    });
    vm = await startVm({ image, firmware: "uefi", onLine: (l) => lines.push(l) });
    await vm.waitForLine(/BERTH-CHECK: container ran/, 15 * MINUTE);
  });
  after(async () => {
    await vm?.stop();
    await server?.kill();
  });

  test("enrol --enable starts the image's unit; the server shows the guest as the guest sees itself", async () => {
    const url = `http://10.0.2.2:${server.port}`;
    const out = JSON.parse(
      await sudoOk(`berth agent enroll --server ${url} --token ${enroll} --enable --json`),
    ) as {
      nodeId: string;
      unit: string;
    };
    assert.equal(out.unit, "/usr/lib/systemd/system/berth-agent.service", "the unit shipped in berth-base");
    assert.equal((await sudoOk("systemctl is-enabled berth-agent.service")).trim(), "enabled");
    const hostname = (await sudoOk("hostname")).trim();
    const d = await until("the node's first report", 10 * MINUTE, async () => {
      const r = await api<NodeDetail>(server.url, admin, "GET", `/api/v1/nodes/${out.nodeId}/detail`);
      return r.status === 200 && r.body.node.seq > 0 ? r.body : undefined;
    });
    assert.equal(d.node.hostname, hostname);
    assert.equal(d.node.release, V1);
    assert.equal(d.node.kernel, (await sudoOk("uname -r")).trim());
    const dpkg = (await sudoOk("dpkg-query -W -f '${Package}:${Architecture}=${Version}\\n'"))
      .trim()
      .split("\n")
      .sort();
    assert.deepEqual(d.packages.map((p) => `${p.name}:${p.architecture}=${p.version}`).sort(), dpkg);
    // The update state comes from the guest's own berth update status.
    const status = JSON.parse(await sudoOk("berth update status --json")) as {
      booted: { slot: string };
      slots: { slot: string; state: string; release?: string }[];
    };
    assert.equal(d.node.update.booted, status.booted.slot);
    assert.deepEqual(
      d.node.update.slots.map((s) => [s.name, s.state, s.release]),
      status.slots.map((s) => [s.slot, s.state, s.release ?? null]),
    );
    // The findings are those of a scan of the image on this side, with the same database.
    const scan = JSON.parse((await berth(["scan", image, "--db", advisory, "--json", "-q"])).stdout) as {
      findings: { vulnId: string; package: string; installed: string; status: string }[];
    };
    const keys = (fs: { vulnId: string; package: string; installed: string; status: string }[]) =>
      fs.map((f) => `${f.vulnId} ${f.package} ${f.installed} ${f.status}`).sort();
    assert.ok(scan.findings.length > 0);
    assert.deepEqual(keys(d.findings), keys(scan.findings));
    const page = await api<NodePage>(server.url, admin, "GET", `/api/v1/nodes?hostname=${hostname}`);
    assert.equal(page.body.total, 1);
  });

  test("work given through the server is carried out by the unit; the hardening score follows", async () => {
    const nodes = await api<NodePage>(server.url, admin, "GET", "/api/v1/nodes");
    const id = nodes.body.nodes[0]!.id;
    const made = await api<{ id: string }>(server.url, admin, "POST", `/api/v1/nodes/${id}/jobs`, {
      kind: "rescan",
    });
    assert.equal(made.status, 201);
    const job = await until("the rescan job", 15 * MINUTE, async () => {
      const j = (await api<Job>(server.url, admin, "GET", `/api/v1/jobs/${made.body.id}`)).body;
      return j.state === "succeeded" || j.state === "failed" ? j : undefined;
    });
    assert.equal(job.state, "succeeded");
    const harden = await until("a hardening score", 20 * MINUTE, async () => {
      const n = (await api<NodeDetail>(server.url, admin, "GET", `/api/v1/nodes/${id}/detail`)).body;
      return n.node.harden ?? undefined;
    });
    assert.equal(harden.profile, "security-mode");
    assert.ok(harden.score > 0 && harden.score <= 100);
    const journal = await ssh("sudo journalctl -u berth-agent.service --no-pager -n 20");
    assert.equal((await sudoOk("systemctl is-active berth-agent.service")).trim(), "active", journal.stdout);
  });
});
