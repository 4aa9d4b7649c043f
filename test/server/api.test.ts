// The fleet API contract against a real `berth server` process, on SQLite and on PostgreSQL: simulated
// nodes (real keys, real packages of this machine) enrol and report; the operator-side routes answer in
// the documented shapes (checked with the TypeBox schemas the Kubernetes operator checks them with);
// reports are deltas with sequence numbers; jobs go queued -> sent -> running -> succeeded.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Value from "typebox/value";
import type { Snapshot } from "../../src/agent/delta.ts";
import { mutate, rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import * as S from "../../src/server/api-schemas.ts";
import { sharedTestRepository, testClient } from "../shared/repo.ts";
import {
  api,
  hostPool,
  initFleetDb,
  pgDatabase,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
} from "./fleet.ts";

const pkgSet = (ps: { name: string; architecture: string; version: string }[]) =>
  ps.map((p) => `${p.name}:${p.architecture}=${p.version}`).sort();

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`fleet API (${backend})`, () => {
    let server: ServerProcess;
    let admin: string;
    let drop: () => Promise<void>;
    const nodes: SimulatedNode[] = [];

    before(async () => {
      const db = backend === "sqlite" ? await sqliteDatabase() : await pgDatabase();
      drop = db.drop;
      const t = await initFleetDb(db.url);
      admin = t.admin;
      server = await startServerProcess({ db: db.url });
      const pool = await hostPool();
      const r = rng(7);
      for (let i = 0; i < 3; i++) {
        const n = new SimulatedNode(
          simulatedSnapshot(r, i, {
            pool,
            minPackages: 100,
            maxPackages: 300,
            containers: 5,
            codename: "trixie",
          }),
        );
        await n.enroll(server.url, t.enroll);
        assert.equal(await n.checkIn(), 1);
        assert.equal(n.acked, 1);
        nodes.push(n);
      }
    });
    after(async () => {
      await server?.kill();
      await drop?.();
    });

    test("nodes: listed in the contract's shape, filtered by hostname, paged by cursor", async () => {
      const all = await api<S.NodePage>(server.url, admin, "GET", "/api/v1/nodes");
      assert.equal(all.status, 200);
      assert.ok(
        Value.Check(S.NodePage, all.body),
        JSON.stringify([...Value.Errors(S.NodePage, all.body)][0]),
      );
      assert.equal(all.body.total, 3);
      for (const n of all.body.nodes) {
        assert.equal(n.online, true);
        assert.equal(n.release, "2026.11.1");
        assert.equal(n.update.state, "good");
        assert.equal(n.containers, 5);
        assert.ok(Value.Check(S.Node, n));
      }
      const one = await api<S.NodePage>(
        server.url,
        admin,
        "GET",
        `/api/v1/nodes?hostname=${nodes[1]!.snapshot.hostname}`,
      );
      assert.deepEqual(
        one.body.nodes.map((n) => n.id),
        [nodes[1]!.nodeId],
      );
      const p1 = await api<S.NodePage>(server.url, admin, "GET", "/api/v1/nodes?limit=2");
      assert.equal(p1.body.nodes.length, 2);
      assert.ok(p1.body.next);
      const p2 = await api<S.NodePage>(
        server.url,
        admin,
        "GET",
        `/api/v1/nodes?limit=2&cursor=${p1.body.next}`,
      );
      assert.equal(p2.body.nodes.length, 1);
      assert.equal(p2.body.next, undefined);
      assert.deepEqual(
        [...p1.body.nodes, ...p2.body.nodes].map((n) => n.hostname),
        nodes.map((n) => n.snapshot.hostname).sort(),
      );
      const byId = await api<S.Node>(server.url, admin, "GET", `/api/v1/nodes/${nodes[0]!.nodeId}`);
      assert.ok(Value.Check(S.Node, byId.body));
      assert.equal(byId.body.packages, nodes[0]!.snapshot.packages.length);
      assert.equal((await api(server.url, admin, "GET", "/api/v1/nodes/no-such-node")).status, 404);
      assert.equal((await api(server.url, admin, "GET", "/api/v1/nodes?cursor=bogus")).status, 400);
    });

    test("a delta changes exactly what changed; the detail shows the node's packages and containers", async () => {
      const n = nodes[0]!;
      const r = rng(99);
      let s: Snapshot = n.snapshot;
      for (let i = 0; i < 5; i++) s = mutate(r, s);
      // A package removed and one upgraded, for certain.
      s = {
        ...s,
        packages: s.packages.slice(1).map((p, i) => (i === 0 ? { ...p, version: `${p.version}+t1` } : p)),
      };
      n.snapshot = s;
      await n.queueReport();
      const queued = n.queue.read(n.queue.seqs()[0]!)!;
      assert.equal(queued.full, false);
      assert.ok((queued.packages?.add?.length ?? 0) >= 1 && (queued.packages?.remove?.length ?? 0) >= 1);
      await n.send();
      const d = await api<S.NodeDetail>(server.url, admin, "GET", `/api/v1/nodes/${n.nodeId}/detail`);
      assert.equal(d.status, 200);
      assert.ok(Value.Check(S.NodeDetail, d.body));
      assert.deepEqual(pkgSet(d.body.packages), pkgSet(s.packages));
      assert.deepEqual(d.body.containers.map((c) => c.id).sort(), s.containers.map((c) => c.id).sort());
      assert.deepEqual(d.body.hardenFailing, s.harden!.failing);
      assert.equal(d.body.node.seq, 2);
    });

    test("sequence numbers: a resend is acknowledged again, a gap is answered 409 with the seq needed", async () => {
      const n = nodes[1]!;
      n.snapshot = mutate(rng(3), n.snapshot);
      await n.queueReport();
      const report = n.queue.read(n.queue.seqs()[0]!)!;
      const first = await n.client!.request<S.ReportAck>("POST", "/api/v1/agent/reports", report);
      assert.equal(first.status, 200);
      assert.equal(first.body.ack, 2);
      const again = await n.client!.request<S.ReportAck>("POST", "/api/v1/agent/reports", report);
      assert.equal(again.status, 200);
      assert.equal(again.body.ack, 2);
      const gap = await n.client!.request<S.ReportConflict>("POST", "/api/v1/agent/reports", {
        ...report,
        seq: 5,
        base: 4,
      });
      assert.equal(gap.status, 409);
      assert.equal(gap.body.expected, 3);
      // The same seq with other content is not the same report.
      const other = await n.client!.request<S.ReportConflict>("POST", "/api/v1/agent/reports", {
        ...report,
        release: "other",
      });
      assert.equal(other.status, 409);
      await n.queue.ack(2);
      // The agent's sender recovers from a server that lost its place: a full report.
      await n.queue.enqueueFull(n.snapshot, 9);
      await n.send();
      const node = await api<S.Node>(server.url, admin, "GET", `/api/v1/nodes/${n.nodeId}`);
      assert.equal(node.body.seq, 9);
    });

    test("jobs: queued, carried on the next acknowledgement (sent), running, succeeded; audited", async () => {
      const n = nodes[2]!;
      const made = await api<S.CreateJobResponse>(
        server.url,
        admin,
        "POST",
        `/api/v1/nodes/${n.nodeId}/jobs`,
        {
          kind: "update-apply",
          params: { version: "2026.12.1", reboot: true },
        },
      );
      assert.equal(made.status, 201);
      const id = made.body.id;
      const j0 = await api<S.Job>(server.url, admin, "GET", `/api/v1/jobs/${id}`);
      assert.ok(Value.Check(S.Job, j0.body));
      assert.equal(j0.body.state, "queued");
      assert.deepEqual(j0.body.params, { version: "2026.12.1", reboot: true });
      await n.checkIn();
      assert.deepEqual(
        n.jobs.map((j) => j.id),
        [id],
      );
      assert.equal((await api<S.Job>(server.url, admin, "GET", `/api/v1/jobs/${id}`)).body.state, "sent");
      assert.equal(await n.finishJob(id, "running"), 200);
      assert.equal((await api<S.Job>(server.url, admin, "GET", `/api/v1/jobs/${id}`)).body.state, "running");
      assert.equal(await n.finishJob(id, "failed", "disk full"), 200);
      const done = await api<S.Job>(server.url, admin, "GET", `/api/v1/jobs/${id}`);
      assert.equal(done.body.state, "failed");
      assert.equal(done.body.error, "disk full");
      // A finished job stays finished.
      assert.equal(await n.finishJob(id, "succeeded"), 409);
      const list = await api<S.JobList>(server.url, admin, "GET", `/api/v1/jobs?nodeId=${n.nodeId}`);
      assert.deepEqual(
        list.body.jobs.map((j) => j.id),
        [id],
      );
      const audit = await api<{ entries: { action: string; actor: string; target: string | null }[] }>(
        server.url,
        admin,
        "GET",
        "/api/v1/audit",
      );
      assert.ok(
        audit.body.entries.some((e) => e.action === "job.create" && e.target === id && e.actor === "admin"),
      );
      assert.equal(audit.body.entries.filter((e) => e.action === "node.enroll").length, 3);
      assert.equal(
        (await api(server.url, admin, "POST", "/api/v1/nodes/no-such-node/jobs", { kind: "rescan" })).status,
        404,
      );
      assert.equal(
        (await api(server.url, admin, "POST", `/api/v1/nodes/${n.nodeId}/jobs`, { kind: "format-disk" }))
          .status,
        400,
      );
    });

    test("the OpenAPI document lists every route of the contract", async () => {
      const doc = await api<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
        server.url,
        undefined,
        "GET",
        "/api/v1/openapi.json",
      );
      assert.equal(doc.status, 200);
      assert.match(doc.body.openapi, /^3\./);
      for (const [path, method] of [
        ["/api/v1/enroll", "post"],
        ["/api/v1/agent/reports", "post"],
        ["/api/v1/agent/jobs", "get"],
        ["/api/v1/agent/jobs/{id}", "post"],
        ["/api/v1/nodes", "get"],
        ["/api/v1/nodes/{id}", "get"],
        ["/api/v1/nodes/{id}/jobs", "post"],
        ["/api/v1/jobs/{id}", "get"],
        ["/api/v1/rollouts", "post"],
        ["/api/v1/rollouts/{id}/pause", "post"],
        ["/api/v1/settings", "put"],
        ["/api/v1/session", "post"],
      ] as const)
        assert.ok(doc.body.paths[path]?.[method], `${method} ${path} missing from the OpenAPI document`);
      const nodeParams = (
        doc.body.paths["/api/v1/nodes"]!.get as { parameters: { name: string }[] }
      ).parameters.map((p) => p.name);
      for (const q of ["hostname", "cve", "limit", "cursor"]) assert.ok(nodeParams.includes(q), q);
    });
  });
}

describe("the fleet server serves the update repository to its nodes", () => {
  test("agents are told /repo/, and a TUF client refreshes through it", async () => {
    const repo = await sharedTestRepository();
    const db = await sqliteDatabase();
    const t = await initFleetDb(db.url);
    const server = await startServerProcess({
      db: db.url,
      extra: ["--repository", join(repo.dir, "repository")],
    });
    try {
      const n = new SimulatedNode(
        simulatedSnapshot(rng(1), 0, {
          pool: [],
          minPackages: 0,
          maxPackages: 0,
          containers: 0,
          codename: "trixie",
        }),
      );
      await n.enroll(server.url, t.enroll);
      const config = await n.client!.request<{ repository?: string }>("GET", "/api/v1/agent/config");
      assert.equal(config.body.repository, "/repo/");
      const root = await fetch(`${server.url}/repo/metadata/1.root.json`);
      assert.equal(root.status, 200);
      assert.deepEqual(await root.json(), JSON.parse(readFileSync(repo.trustedRoot, "utf8")));
      const client = testClient(`${server.url}/repo/`, repo.trustedRoot);
      await client.refresh();
      assert.ok(
        (await client.state()).timestamp,
        "the client trusts a timestamp fetched through the fleet server",
      );
      assert.equal((await fetch(`${server.url}/repo/../package.json`)).status, 404);
    } finally {
      await server.kill();
    }
  });
});
