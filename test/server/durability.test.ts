// Durability: 1,000 simulated agents (each with its own on-disk queue, real keys, real packages of this
// machine) send a burst of reports; the server is killed with SIGKILL in the middle. After a restart,
// every report acknowledged before the kill is there, exactly as sent, and the agents' queues drain to
// what they last reported. For SQLite (WAL) and for PostgreSQL.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { Snapshot } from "../../src/agent/delta.ts";
import { mutate, rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import type { NodeDetail } from "../../src/server/api-schemas.ts";
import { mapLimit, tempDir } from "../helpers.ts";
import {
  api,
  hostPool,
  initFleetDb,
  pgDatabase,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
  storedNodes,
} from "./fleet.ts";

const AGENTS = 1000;
const REPORTS = 2;

const pkgSet = (ps: { name: string; architecture: string; version: string }[]) =>
  ps.map((p) => `${p.name}:${p.architecture}=${p.version}`).sort();

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`durability under kill -9 (${backend})`, () => {
    let server: ServerProcess | undefined;
    let drop: () => Promise<void> = async () => {};
    after(async () => {
      await server?.kill("SIGKILL");
      await drop();
    });

    test(`${AGENTS} agents, a burst of ${AGENTS * REPORTS} reports, the server killed halfway`, async () => {
      const db = backend === "sqlite" ? await sqliteDatabase() : await pgDatabase();
      drop = db.drop;
      const tokens = await initFleetDb(db.url);
      server = await startServerProcess({ db: db.url });
      const port = server.port;
      const pool = await hostPool();
      const r = rng(42);
      const dir = tempDir("berth-durability-");
      const nodes = Array.from(
        { length: AGENTS },
        (_, i) =>
          new SimulatedNode(
            simulatedSnapshot(r, i, {
              pool,
              minPackages: 20,
              maxPackages: 60,
              containers: 2,
              codename: "bookworm",
            }),
            join(dir, `agent-${i}`),
          ),
      );
      await mapLimit(nodes, 16, (n) => n.enroll(server!.url, tokens.enroll));

      // Every node queues its burst first (a full report, then deltas), remembering what each seq says.
      const states = nodes.map(() => new Map<number, Snapshot>());
      for (const [i, n] of nodes.entries())
        for (let k = 0; k < REPORTS; k++) {
          if (k) n.snapshot = mutate(r, mutate(r, n.snapshot));
          states[i]!.set(await n.queueReport(), n.snapshot);
        }

      // Send it all; kill the server once a third of the burst is acknowledged.
      let acked = 0;
      let killed = false;
      const killAt = Math.floor((AGENTS * REPORTS) / 3);
      const first = server;
      const burst = mapLimit(nodes, 48, async (n) => {
        for (let k = 0; k < REPORTS && !killed; k++) {
          const seq = n.queue.seqs()[0];
          if (seq === undefined) break;
          try {
            // One report at a time, so the kill lands between and inside requests.
            const report = n.queue.read(seq)!;
            const a = await n.client!.request<{ ack: number }>("POST", "/api/v1/agent/reports", report);
            if (a.status !== 200) throw new Error(`unexpected ${a.status}`);
            await n.queue.ack(a.body.ack);
            n.acked = n.queue.acked();
            if (++acked >= killAt && !killed) {
              killed = true;
              first.proc.kill("SIGKILL");
            }
          } catch {
            break;
          }
        }
      });
      await burst;
      await first.exited;
      assert.ok(killed, "the server was killed during the burst");
      const ackedAtKill = nodes.map((n) => n.acked);
      assert.ok(ackedAtKill.filter((a) => a > 0).length > 100);
      assert.ok(
        nodes.some((n) => n.queue.seqs().length > 0),
        "reports were still queued at the kill",
      );

      // Restart on the same database: every acknowledged report is there, as it was sent (read from the
      // database itself, not through the server).
      server = await startServerProcess({ db: db.url, port });
      const admin = tokens.admin;
      const stored = await storedNodes(db.url);
      for (const [i, n] of nodes.entries()) {
        const got = stored.get(n.nodeId)!;
        const want = ackedAtKill[i]!;
        assert.ok(got.seq >= want, `node ${i}: acknowledged ${want}, server has ${got.seq}`);
        if (got.seq > 0) {
          // Whatever seq the server holds, it holds that report's content exactly.
          const s = states[i]!.get(got.seq)!;
          assert.deepEqual(got.packages, pkgSet(s.packages), `node ${i} seq ${got.seq}`);
          assert.deepEqual(got.containers, s.containers.map((c) => c.id).sort());
        }
      }

      // The queues drain: every node ends at its last report.
      await mapLimit(nodes, 32, (n) => n.send());
      for (const n of nodes) assert.deepEqual(n.queue.seqs(), []);
      const final = await storedNodes(db.url);
      for (const [i, n] of nodes.entries()) {
        const got = final.get(n.nodeId)!;
        assert.equal(got.seq, REPORTS, `node ${i}`);
        assert.deepEqual(got.packages, pkgSet(n.snapshot.packages), `node ${i}`);
      }
      // And the server's own view agrees.
      const one = await api<NodeDetail>(server.url, admin, "GET", `/api/v1/nodes/${nodes[7]!.nodeId}/detail`);
      assert.deepEqual(pkgSet(one.body.packages), pkgSet(nodes[7]!.snapshot.packages));
      const status = await api<{ nodes: number; containers: number }>(
        server.url,
        admin,
        "GET",
        "/api/v1/fleet/status",
      );
      assert.equal(status.body.nodes, AGENTS);
      assert.equal(status.body.containers, AGENTS * 2);
    });
  });
}
