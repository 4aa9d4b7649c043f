// Scale-out: two `berth server` processes on one PostgreSQL database. Agents split between them (and
// switch, as behind a load balancer); each process shows the whole fleet; work queued through one is
// delivered through the other; a signed request replayed to the other process is refused; and a rollout
// ticked by both never has more nodes at work than it allows.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { mutate, rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import type { Job, NodePage, Rollout } from "../../src/server/api-schemas.ts";
import { mapLimit } from "../helpers.ts";
import { api, hostPool, initFleetDb, pgDatabase, type ServerProcess, startServerProcess } from "./fleet.ts";

describe("two server processes on one PostgreSQL", () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let admin: string;
  let drop: () => Promise<void>;
  const nodes: SimulatedNode[] = [];

  before(async () => {
    const db = await pgDatabase();
    drop = db.drop;
    const t = await initFleetDb(db.url);
    admin = t.admin;
    [a, b] = await Promise.all([
      startServerProcess({ db: db.url, tickMs: 200 }),
      startServerProcess({ db: db.url, tickMs: 200 }),
    ]);
    const pool = await hostPool();
    const r = rng(5);
    for (let i = 0; i < 20; i++)
      nodes.push(
        new SimulatedNode(
          simulatedSnapshot(r, i, {
            pool,
            minPackages: 30,
            maxPackages: 60,
            containers: 4,
            codename: "trixie",
          }),
        ),
      );
    await mapLimit(nodes, 8, async (n, i) => {
      await n.enroll((i % 2 ? b : a).url, t.enroll);
      await n.checkIn();
    });
  });
  after(async () => {
    await a?.kill();
    await b?.kill();
    await drop?.();
  });

  test("each process shows the whole fleet, whichever process a node reported to", async () => {
    const ids = nodes.map((n) => n.nodeId).sort();
    for (const s of [a, b]) {
      const page = await api<NodePage>(s.url, admin, "GET", "/api/v1/nodes?limit=500");
      assert.equal(page.body.total, 20);
      assert.deepEqual(page.body.nodes.map((n) => n.id).sort(), ids);
      assert.ok(page.body.nodes.every((n) => n.seq === 1 && n.online));
    }
    // Nodes switch process between reports; the deltas chain across processes.
    const r = rng(9);
    for (const [i, n] of nodes.entries()) {
      n.client = n.client!.via((i % 2 ? a : b).url);
      n.snapshot = mutate(r, mutate(r, n.snapshot));
      await n.checkIn();
      assert.equal(n.acked, 2);
    }
    const fromA = await api<{ containers: { id: string }[] }>(
      a.url,
      admin,
      "GET",
      `/api/v1/nodes/${nodes[3]!.nodeId}/detail`,
    );
    assert.deepEqual(
      fromA.body.containers.map((c) => c.id).sort(),
      nodes[3]!.snapshot.containers.map((c) => c.id).sort(),
    );
  });

  test("work queued through one process reaches the node through the other", async () => {
    const n = nodes[0]!;
    n.client = n.client!.via(b.url);
    const made = await api<{ id: string }>(a.url, admin, "POST", `/api/v1/nodes/${n.nodeId}/jobs`, {
      kind: "rescan",
    });
    assert.equal(made.status, 201);
    await n.checkIn();
    assert.deepEqual(
      n.jobs.map((j) => j.id),
      [made.body.id],
    );
    assert.equal(await n.finishJob(made.body.id, "succeeded"), 200);
    assert.equal(
      (await api<Job>(a.url, admin, "GET", `/api/v1/jobs/${made.body.id}`)).body.state,
      "succeeded",
    );
  });

  test("a request accepted by one process is a replay to the other", async () => {
    const n = nodes[1]!;
    const h = n.client!.sign("GET", "/api/v1/agent/jobs", "");
    assert.equal((await fetch(`${a.url}/api/v1/agent/jobs`, { headers: h })).status, 200);
    assert.equal((await fetch(`${b.url}/api/v1/agent/jobs`, { headers: h })).status, 401);
  });

  test("a rollout ticked by both processes keeps to its concurrency", async () => {
    const made = await api<Rollout>(a.url, admin, "POST", "/api/v1/rollouts", {
      name: "scale-out",
      kind: "update-apply",
      params: { version: "2026.12.1" },
      waves: [{ percent: 100 }],
      maxConcurrent: 3,
      failureThreshold: 1,
    });
    assert.equal(made.status, 201);
    const id = made.body.id;
    let maxAtWork = 0;
    for (let round = 0; round < 400; round++) {
      const ro = (await api<Rollout>((round % 2 ? a : b).url, admin, "GET", `/api/v1/rollouts/${id}`)).body;
      maxAtWork = Math.max(maxAtWork, ro.progress.queued + ro.progress.running);
      if (ro.state === "completed") break;
      // Each node that has work finishes it, through whichever process it talks to now.
      await mapLimit(nodes, 8, async (n, i) => {
        n.client = n.client!.via(((round + i) % 2 ? a : b).url);
        n.jobs = [];
        await n.checkIn();
        for (const j of n.jobs) if (j.rolloutId === id) await n.finishJob(j.id, "succeeded");
      });
    }
    const done = (await api<Rollout>(b.url, admin, "GET", `/api/v1/rollouts/${id}`)).body;
    assert.equal(done.state, "completed");
    assert.equal(done.progress.succeeded, 20);
    assert.ok(maxAtWork <= 3, `up to ${maxAtWork} nodes at work at once`);
    const jobs = await api<{ jobs: Job[] }>(a.url, admin, "GET", `/api/v1/jobs?rolloutId=${id}&limit=1000`);
    assert.equal(jobs.body.jobs.length, 20, "one job per node, never two");
    assert.equal(new Set(jobs.body.jobs.map((j) => j.nodeId)).size, 20);
  });
});
