// Rollouts against a real `berth server` (SQLite): waves open the fleet by percentage and start time;
// no more nodes work at once than allowed; a failure rate over the threshold pauses the rollout by itself;
// pause, resume and the global stop switch hold back work; and a server killed with SIGKILL in the middle
// of a rollout carries on after a restart, never giving a node the same work twice.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import type { Job, Rollout } from "../../src/server/api-schemas.ts";
import { mapLimit } from "../helpers.ts";
import {
  api,
  hostPool,
  initFleetDb,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
} from "./fleet.ts";

describe("rollouts", () => {
  let server: ServerProcess;
  let dbUrl: string;
  let admin: string;
  const nodes: SimulatedNode[] = [];

  before(async () => {
    const db = await sqliteDatabase();
    dbUrl = db.url;
    const t = await initFleetDb(db.url);
    admin = t.admin;
    server = await startServerProcess({ db: db.url, tickMs: 150 });
    const pool = await hostPool();
    const r = rng(77);
    for (let i = 0; i < 20; i++) {
      const n = new SimulatedNode(
        simulatedSnapshot(r, i, {
          pool,
          minPackages: 20,
          maxPackages: 40,
          containers: 2,
          codename: "trixie",
        }),
      );
      await n.enroll(server.url, t.enroll);
      await n.checkIn();
      nodes.push(n);
    }
  });
  after(async () => {
    await server?.kill();
  });

  const get = async (id: string) =>
    (await api<Rollout>(server.url, admin, "GET", `/api/v1/rollouts/${id}`)).body;
  const create = async (body: Record<string, unknown>) => {
    const r = await api<Rollout>(server.url, admin, "POST", "/api/v1/rollouts", {
      kind: "update-apply",
      params: { version: "2026.12.1" },
      failureThreshold: 1,
      ...body,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
  };
  const jobsOf = async (id: string) =>
    (await api<{ jobs: Job[] }>(server.url, admin, "GET", `/api/v1/jobs?rolloutId=${id}&limit=1000`)).body
      .jobs;

  /**
   * One round of every node checking in and finishing the rollout's work it holds, `fail` deciding
   * which nodes fail. Returns how many jobs were finished.
   */
  async function round(id: string, fail: (i: number) => boolean = () => false): Promise<number> {
    let finished = 0;
    await mapLimit(nodes, 8, async (n, i) => {
      n.jobs = [];
      await n.checkIn();
      for (const j of n.jobs.filter((x) => x.rolloutId === id)) {
        await n.finishJob(j.id, "running");
        await n.finishJob(
          j.id,
          fail(i) ? "failed" : "succeeded",
          fail(i) ? "health check failed" : undefined,
        );
        finished++;
      }
    });
    return finished;
  }
  const settle = () => new Promise((r) => setTimeout(r, 600));

  test("waves open the fleet in steps; concurrency holds; the rollout completes", async () => {
    const startSecond = new Date(Date.now() + 20_000).toISOString();
    const id = await create({
      name: "waves",
      waves: [{ percent: 25 }, { percent: 100, startAt: startSecond }],
      maxConcurrent: 2,
    });
    let maxAtWork = 0;
    // Before the second wave's start: only the first 25% (5 nodes) get work.
    while (Date.now() < Date.parse(startSecond) - 3000) {
      const ro = await get(id);
      maxAtWork = Math.max(maxAtWork, ro.progress.queued + ro.progress.running);
      await round(id);
      await settle();
    }
    const firstWave = await jobsOf(id);
    assert.equal(new Set(firstWave.map((j) => j.nodeId)).size, 5, "the first wave is 25% of 20 nodes");
    assert.equal((await get(id)).progress.reached, 5);
    for (let k = 0; k < 200; k++) {
      const ro = await get(id);
      maxAtWork = Math.max(maxAtWork, ro.progress.queued + ro.progress.running);
      if (ro.state === "completed") break;
      await round(id);
      await settle();
    }
    const done = await get(id);
    assert.equal(done.state, "completed");
    assert.equal(done.progress.succeeded, 20);
    assert.ok(maxAtWork <= 2, `${maxAtWork} nodes at work at once`);
    // The first wave's nodes came first, in the rollout's stable order.
    const all = (await jobsOf(id)).sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
    assert.deepEqual(new Set(all.slice(0, 5).map((j) => j.nodeId)), new Set(firstWave.map((j) => j.nodeId)));
  });

  test("a failure rate over the threshold pauses the rollout by itself, and says why", async () => {
    const id = await create({
      name: "failing",
      waves: [{ percent: 100 }],
      maxConcurrent: 4,
      failureThreshold: 0.5,
      minFinished: 4,
    });
    for (let k = 0; k < 100 && (await get(id)).state === "running"; k++) {
      await round(id, () => true);
      await settle();
    }
    const ro = await get(id);
    assert.equal(ro.state, "paused");
    assert.match(ro.reason ?? "", /failed/);
    const count = (await jobsOf(id)).length;
    await round(id);
    await settle();
    await round(id);
    assert.equal((await jobsOf(id)).length, count, "no new work while paused");
    assert.ok(ro.progress.failed >= 4);
  });

  test("pause, resume and the global stop switch hold work back", async () => {
    const id = await create({ name: "manual", waves: [{ percent: 100 }], maxConcurrent: 3 });
    for (let k = 0; k < 50 && (await jobsOf(id)).length === 0; k++) await settle();
    assert.equal((await api(server.url, admin, "POST", `/api/v1/rollouts/${id}/pause`)).status, 200);
    await settle();
    const held = await jobsOf(id);
    assert.ok(held.length > 0 && held.length <= 3);
    // Queued work of a paused rollout is not handed out.
    await round(id);
    for (const j of await jobsOf(id)) assert.equal(j.state, "queued", "nothing sent while paused");
    assert.equal((await get(id)).state, "paused");
    assert.equal((await api(server.url, admin, "POST", `/api/v1/rollouts/${id}/resume`)).status, 200);
    // The global stop switch: nothing is handed out or created while it is on.
    assert.equal((await api(server.url, admin, "PUT", "/api/v1/settings", { stopped: true })).status, 200);
    await settle();
    const before = await jobsOf(id);
    await round(id);
    await settle();
    assert.equal((await jobsOf(id)).length, before.length);
    assert.ok((await jobsOf(id)).every((j) => j.state === "queued"));
    assert.equal((await api(server.url, admin, "PUT", "/api/v1/settings", { stopped: false })).status, 200);
    await settle();
    assert.ok((await round(id)) > 0, "work flows again");
    assert.equal((await api(server.url, admin, "POST", `/api/v1/rollouts/${id}/stop`)).status, 200);
    assert.equal((await api(server.url, admin, "POST", `/api/v1/rollouts/${id}/resume`)).status, 409);
    const audit = await api<{ entries: { action: string }[] }>(
      server.url,
      admin,
      "GET",
      "/api/v1/audit?limit=1000",
    );
    for (const a of [
      "rollout.create",
      "rollout.pause",
      "rollout.resume",
      "rollout.stop",
      "fleet.stop",
      "fleet.start",
    ])
      assert.ok(
        audit.body.entries.some((e) => e.action === a),
        a,
      );
  });

  test("a rollout survives kill -9 of the server and finishes after the restart, one job per node", async () => {
    const id = await create({ name: "restart", waves: [{ percent: 100 }], maxConcurrent: 3 });
    for (let k = 0; k < 100 && (await get(id)).progress.succeeded < 6; k++) {
      await round(id);
      await settle();
    }
    server.proc.kill("SIGKILL");
    await server.exited;
    server = await startServerProcess({ db: dbUrl, port: server.port, tickMs: 150 });
    for (let k = 0; k < 200; k++) {
      if ((await get(id)).state === "completed") break;
      await round(id);
      await settle();
    }
    const ro = await get(id);
    assert.equal(ro.state, "completed");
    assert.equal(ro.progress.succeeded, 20);
    const jobs = await jobsOf(id);
    assert.equal(jobs.length, 20);
    assert.equal(new Set(jobs.map((j) => j.nodeId)).size, 20);
  });
});
