// The fleet server's defences, against a real `berth server` process: wrong, expired and used-up
// tokens; node keys that reach only their own node's data; replayed and stale signatures; malformed,
// oversized and fuzzed reports refused with 4xx and nothing stored; the console's session cookie; and a
// read-only user who can change nothing.

import assert from "node:assert/strict";
import { request } from "node:http";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test } from "node:test";
import type { Snapshot } from "../../src/agent/delta.ts";
import { fullReport } from "../../src/agent/delta.ts";
import { rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import type { Job } from "../../src/server/api-schemas.ts";
import {
  enrollProofText,
  newNodeKey,
  privateKeyFromPem,
  requestText,
  sha256Hex,
  signText,
} from "../../src/server/signature.ts";
import {
  api,
  hostPool,
  initFleetDb,
  pgDatabase,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
} from "./fleet.ts";
import { fuzzBody } from "./fuzz.ts";

/** A request signed by `node` with a chosen time and node id (for forging). */
async function signedRaw(
  server: string,
  o: { nodeId: string; keyPem: string; time: number; method: string; path: string; body: string },
) {
  const sig = signText(
    privateKeyFromPem(o.keyPem),
    requestText(o.method, o.path, String(o.time), sha256Hex(o.body)),
  );
  const res = await fetch(`${server}${o.path}`, {
    method: o.method,
    headers: {
      "x-berth-node": o.nodeId,
      "x-berth-time": String(o.time),
      "x-berth-signature": sig,
      ...(o.body ? { "content-type": "application/json" } : {}),
    },
    ...(o.body ? { body: o.body } : {}),
  });
  return { status: res.status, text: await res.text() };
}

/**
 * A POST that can read an answer the server gives before it has read the body (413 as soon as the
 * declared length is too large): the headers go first, and the body only if no answer comes within
 * `waitMs` (a server that closes while a client still writes resets the connection, and the answer is lost).
 */
function rawPost(
  url: string,
  headers: Record<string, string>,
  body: string,
  waitMs = 0,
): Promise<{ status: number; text: string }> {
  return new Promise((res, rej) => {
    let answered = false;
    const req = request(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
        timeout: 120_000,
      },
      (r) => {
        answered = true;
        let text = "";
        r.setEncoding("utf8").on("data", (d: string) => {
          text += d;
        });
        const done = () => {
          res({ status: r.statusCode ?? 0, text });
          req.destroy();
        };
        r.on("end", done);
        r.on("error", done);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer in 120 s")));
    req.on("error", (e) => {
      if (!answered) rej(e);
    });
    req.flushHeaders();
    setTimeout(() => {
      if (!answered) req.end(body);
    }, waitMs);
  });
}

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`fleet server security (${backend})`, () => {
    let server: ServerProcess;
    let tokens: { admin: string; enroll: string };
    let dbUrl: string;
    let drop: () => Promise<void>;
    let a: SimulatedNode;
    let b: SimulatedNode;
    let snapshot: (i: number) => Snapshot;

    before(async () => {
      const db = backend === "sqlite" ? await sqliteDatabase() : await pgDatabase();
      dbUrl = db.url;
      drop = db.drop;
      tokens = await initFleetDb(db.url);
      server = await startServerProcess({ db: db.url });
      const pool = await hostPool();
      const r = rng(11);
      snapshot = (i) =>
        simulatedSnapshot(r, i, {
          pool,
          minPackages: 50,
          maxPackages: 80,
          containers: 3,
          codename: "trixie",
        });
      a = new SimulatedNode(snapshot(1));
      b = new SimulatedNode(snapshot(2));
      await a.enroll(server.url, tokens.enroll);
      await b.enroll(server.url, tokens.enroll);
      await a.checkIn();
      await b.checkIn();
    });
    after(async () => {
      await server?.kill();
      await drop?.();
    });

    /** Rows that a refused report must not have touched. */
    async function footprint() {
      if (backend === "sqlite") {
        const d = new DatabaseSync(dbUrl.slice("sqlite:".length), { readOnly: true });
        const q = (s: string) => Number((d.prepare(s).get() as { n: number }).n);
        const out = {
          seq: q("SELECT sum(seq) AS n FROM nodes"),
          pkgs: q("SELECT count(*) AS n FROM node_pkgs"),
          containers: q("SELECT count(*) AS n FROM node_containers"),
          failing: q("SELECT count(*) AS n FROM node_harden_failing"),
          consistent: q(
            "SELECT count(*) AS n FROM nodes n WHERE n.n_packages <> (SELECT count(*) FROM node_pkgs p WHERE p.nid = n.nid)",
          ),
        };
        d.close();
        return out;
      }
      const nodes = await api<{ nodes: { seq: number; packages: number; containers: number }[] }>(
        server.url,
        tokens.admin,
        "GET",
        "/api/v1/nodes",
      );
      return {
        seq: nodes.body.nodes.reduce((s, n) => s + n.seq, 0),
        pkgs: nodes.body.nodes.reduce((s, n) => s + n.packages, 0),
        containers: nodes.body.nodes.reduce((s, n) => s + n.containers, 0),
      };
    }

    test("enrolment: wrong, expired and used-up tokens are refused; a key must be proven", async () => {
      const key = newNodeKey();
      const enroll = (token: string, publicKey = key.publicKey, proofKey = key.privatePem) =>
        api(server.url, undefined, "POST", "/api/v1/enroll", {
          token,
          publicKey,
          hostname: "intruder",
          proof: signText(privateKeyFromPem(proofKey), enrollProofText(token, publicKey, "intruder")),
        });
      assert.equal((await enroll("berth-enroll-wrong")).status, 401);
      const short = await api<{ token: string }>(server.url, tokens.admin, "POST", "/api/v1/tokens", {
        kind: "enroll",
        ttlSeconds: 1,
      });
      assert.equal(short.status, 201);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await enroll(short.body.token)).status, 401, "expired token");
      const once = await api<{ token: string }>(server.url, tokens.admin, "POST", "/api/v1/tokens", {
        kind: "enroll",
        uses: 1,
      });
      assert.equal((await enroll(once.body.token)).status, 201);
      assert.equal((await enroll(once.body.token)).status, 401, "used-up token");
      // A proof made with another key than the one enrolled.
      assert.equal((await enroll(tokens.enroll, key.publicKey, newNodeKey().privatePem)).status, 400);
      assert.equal((await enroll(tokens.enroll, "not-a-key")).status, 400);
    });

    test("API tokens: none, wrong and expired are refused; read-only changes nothing", async () => {
      assert.equal((await api(server.url, undefined, "GET", "/api/v1/nodes")).status, 401);
      assert.equal((await api(server.url, "berth-api-wrong", "GET", "/api/v1/nodes")).status, 401);
      assert.equal(
        (await api(server.url, tokens.enroll, "GET", "/api/v1/nodes")).status,
        401,
        "enrolment token",
      );
      const exp = await api<{ token: string }>(server.url, tokens.admin, "POST", "/api/v1/tokens", {
        kind: "api",
        role: "admin",
        ttlSeconds: 1,
      });
      assert.equal((await api(server.url, exp.body.token, "GET", "/api/v1/nodes")).status, 200);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await api(server.url, exp.body.token, "GET", "/api/v1/nodes")).status, 401, "expired");

      const ro = await api<{ token: string }>(server.url, tokens.admin, "POST", "/api/v1/tokens", {
        kind: "api",
        role: "read-only",
      });
      const t = ro.body.token;
      const before = await api<{ entries: unknown[] }>(
        server.url,
        tokens.admin,
        "GET",
        "/api/v1/audit?limit=1000",
      );
      assert.equal((await api(server.url, t, "GET", "/api/v1/nodes")).status, 200);
      const changes: [string, string, unknown][] = [
        ["POST", `/api/v1/nodes/${a.nodeId}/jobs`, { kind: "rescan" }],
        ["PUT", "/api/v1/settings", { stopped: true }],
        ["POST", "/api/v1/users", { name: "mallory", password: "password123", role: "admin" }],
        ["POST", "/api/v1/tokens", { kind: "api", role: "admin" }],
        [
          "POST",
          "/api/v1/rollouts",
          { name: "x", kind: "rescan", waves: [{ percent: 100 }], maxConcurrent: 1, failureThreshold: 0.5 },
        ],
      ];
      for (const [method, path, body] of changes)
        assert.equal((await api(server.url, t, method, path, body)).status, 403, `${method} ${path}`);
      const after = await api<{ entries: unknown[] }>(
        server.url,
        tokens.admin,
        "GET",
        "/api/v1/audit?limit=1000",
      );
      assert.equal(
        after.body.entries.length,
        before.body.entries.length,
        "nothing was audited: nothing changed",
      );
      assert.deepEqual((await api(server.url, t, "GET", "/api/v1/settings")).body, { stopped: false });
      assert.deepEqual(
        (await api<{ jobs: Job[] }>(server.url, t, "GET", `/api/v1/jobs?nodeId=${a.nodeId}`)).body.jobs,
        [],
      );
    });

    test("a node key reaches only its own node: forged ids, others' jobs, replays, stale times", async () => {
      const made = await api<{ id: string }>(
        server.url,
        tokens.admin,
        "POST",
        `/api/v1/nodes/${b.nodeId}/jobs`,
        {
          kind: "rescan",
        },
      );
      // A's signed poll never returns B's job; A cannot report on it either.
      const mine = await a.client!.request<{ jobs: Job[] }>("GET", "/api/v1/agent/jobs");
      assert.equal(mine.status, 200);
      assert.ok(!mine.body.jobs.some((j) => j.id === made.body.id));
      const touch = await a.client!.request("POST", `/api/v1/agent/jobs/${made.body.id}`, {
        state: "succeeded",
      });
      assert.equal(touch.status, 404);
      assert.equal(
        (await api<Job>(server.url, tokens.admin, "GET", `/api/v1/jobs/${made.body.id}`)).body.state,
        "queued",
      );
      // A's signature under B's id.
      const headers = a.client!.sign("GET", "/api/v1/agent/jobs", "");
      const forged = await fetch(`${server.url}/api/v1/agent/jobs`, {
        headers: { ...headers, "x-berth-node": b.nodeId },
      });
      assert.equal(forged.status, 401);
      // The same signed request twice: the second is a replay.
      const h2 = a.client!.sign("GET", "/api/v1/agent/jobs", "");
      assert.equal((await fetch(`${server.url}/api/v1/agent/jobs`, { headers: h2 })).status, 200);
      assert.equal((await fetch(`${server.url}/api/v1/agent/jobs`, { headers: h2 })).status, 401);
      // A signature for another path does not open this one.
      const h3 = a.client!.sign("GET", "/api/v1/agent/config", "");
      assert.equal((await fetch(`${server.url}/api/v1/agent/jobs`, { headers: h3 })).status, 401);
      // A body changed after signing.
      const report = fullReport(50, a.snapshot);
      const h4 = a.client!.sign("POST", "/api/v1/agent/reports", JSON.stringify(report));
      const tampered = await fetch(`${server.url}/api/v1/agent/reports`, {
        method: "POST",
        headers: { ...h4, "content-type": "application/json" },
        body: JSON.stringify({ ...report, release: "evil" }),
      });
      assert.equal(tampered.status, 401);
      // An enrolment token or an admin token is not a node identity.
      for (const token of [tokens.enroll, tokens.admin])
        assert.equal((await api(server.url, token, "GET", "/api/v1/agent/jobs")).status, 401);
      // Far from the server's clock: refused even though the signature is right.
      const key = newNodeKey();
      const enrolled = await api<{ nodeId: string }>(server.url, undefined, "POST", "/api/v1/enroll", {
        token: tokens.enroll,
        publicKey: key.publicKey,
        hostname: "clock",
        proof: signText(
          privateKeyFromPem(key.privatePem),
          enrollProofText(tokens.enroll, key.publicKey, "clock"),
        ),
      });
      assert.equal(enrolled.status, 201);
      const at = (time: number) =>
        signedRaw(server.url, {
          nodeId: enrolled.body.nodeId,
          keyPem: key.privatePem,
          time,
          method: "GET",
          path: "/api/v1/agent/jobs",
          body: "",
        });
      assert.equal((await at(Date.now() - 10 * 60_000)).status, 401);
      assert.equal((await at(Date.now() + 10 * 60_000)).status, 401);
      assert.equal((await at(Date.now())).status, 200);
    });

    test("malformed and oversized reports are refused with 4xx and nothing of them is stored", async () => {
      const before = await footprint();
      const seq = a.queue.last()!.seq + 1;
      const valid = fullReport(seq, a.snapshot);
      const cases: [string, string, number, number?][] = [
        ["not JSON", "{seq:", 400],
        ["an array", "[]", 400],
        ["no seq", JSON.stringify({ ...valid, seq: undefined }), 400],
        ["a string seq", JSON.stringify({ ...valid, seq: "7" }), 400],
        ["an unknown field", JSON.stringify({ ...valid, admin: true }), 400],
        ["a delta on the wrong base", JSON.stringify({ ...valid, full: false, base: seq - 5 }), 400],
        [
          "a package twice",
          JSON.stringify({ ...valid, packages: { set: [...valid.packages!.set!, valid.packages!.set![0]] } }),
          400,
        ],
        [
          "a NUL in a name",
          JSON.stringify({
            ...valid,
            packages: {
              set: [{ ...valid.packages!.set![0]!, name: "bad\u0000name" }, ...valid.packages!.set!.slice(1)],
            },
          }),
          400,
        ],
        [
          "too many packages",
          JSON.stringify({
            ...valid,
            packages: {
              set: Array.from({ length: 20001 }, (_, i) => ({ ...valid.packages!.set![0]!, name: `p${i}` })),
            },
          }),
          400,
        ],
        ["9 MB", JSON.stringify({ ...valid, hostname: "h".repeat(9 * 1024 * 1024) }), 413, 5000],
      ];
      for (const [what, body, status, waitMs] of cases) {
        const headers = a.client!.sign("POST", "/api/v1/agent/reports", body);
        const res = await rawPost(
          `${server.url}/api/v1/agent/reports`,
          { ...headers, "content-type": "application/json" },
          body,
          waitMs,
        );
        assert.equal(res.status, status, `${what}: ${res.text}`);
      }
      assert.deepEqual(await footprint(), before);
      // And the node's own next report is still accepted.
      assert.ok((await a.checkIn()) >= 1);
      assert.equal(a.queue.seqs().length, 0);
    });

    test("fuzzed reports: never a 5xx, never a crash, nothing half-stored", async () => {
      const r = rng(2024);
      const seq = a.queue.last()!.seq + 1;
      const valid = fullReport(seq, a.snapshot);
      const seen = new Map<number, number>();
      for (let i = 0; i < 300; i++) {
        const body = fuzzBody(r, { ...valid, seq: seq + i });
        const headers = a.client!.sign("POST", "/api/v1/agent/reports", body);
        const res = await fetch(`${server.url}/api/v1/agent/reports`, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body,
        });
        await res.text();
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        assert.ok(
          res.status < 500,
          `case ${i} got ${res.status}: ${body.slice(0, 200)}\n${server.log().slice(-3000)}`,
        );
      }
      assert.ok((seen.get(400) ?? 0) > 100, JSON.stringify([...seen]));
      assert.equal(server.proc.exitCode, null, "the server is still running");
      const fp = (await footprint()) as { consistent?: number };
      if (backend === "sqlite") assert.equal(fp.consistent, 0);
      // The node carries on: its queue resyncs with whatever the server committed.
      await a.queue.enqueueFull(a.snapshot, seq + 1000);
      await a.send();
      const d = await api<{ packages: unknown[]; node: { seq: number } }>(
        server.url,
        tokens.admin,
        "GET",
        `/api/v1/nodes/${a.nodeId}/detail`,
      );
      assert.equal(d.body.packages.length, a.snapshot.packages.length);
      assert.equal(d.body.node.seq, seq + 1000);
    });

    test("the console: no session, no data; sessions are HttpOnly, Secure, SameSite=Strict; read-only users", async () => {
      assert.equal((await api(server.url, undefined, "GET", "/api/v1/fleet/status")).status, 401);
      for (const [name, role] of [
        ["alice", "admin"],
        ["bob", "read-only"],
      ])
        assert.equal(
          (
            await api(server.url, tokens.admin, "POST", "/api/v1/users", {
              name,
              password: `${name}-pass-1`,
              role,
            })
          ).status,
          201,
        );
      const bad = await fetch(`${server.url}/api/v1/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "alice", password: "wrong-password" }),
      });
      assert.equal(bad.status, 401);
      assert.equal(bad.headers.get("set-cookie"), null);
      const login = async (name: string) => {
        const res = await fetch(`${server.url}/api/v1/session`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name, password: `${name}-pass-1` }),
        });
        assert.equal(res.status, 200);
        const c = res.headers.get("set-cookie")!;
        assert.match(c, /HttpOnly/i);
        assert.match(c, /Secure/i);
        assert.match(c, /SameSite=Strict/i);
        return c.split(";")[0]!;
      };
      const alice = await login("alice");
      assert.equal(
        (await api(server.url, undefined, "GET", "/api/v1/fleet/status", undefined, { cookie: alice }))
          .status,
        200,
      );
      // A change carried by the cookie from another origin is refused.
      const cross = await api(
        server.url,
        undefined,
        "PUT",
        "/api/v1/settings",
        { stopped: true },
        {
          cookie: alice,
          origin: "https://evil.example",
        },
      );
      assert.equal(cross.status, 403);
      const bob = await login("bob");
      assert.equal(
        (await api(server.url, undefined, "GET", "/api/v1/nodes", undefined, { cookie: bob })).status,
        200,
      );
      assert.equal(
        (
          await api(
            server.url,
            undefined,
            "POST",
            `/api/v1/nodes/${a.nodeId}/jobs`,
            { kind: "rescan" },
            { cookie: bob },
          )
        ).status,
        403,
      );
      // Logged out: the cookie is dead.
      await fetch(`${server.url}/api/v1/session`, { method: "DELETE", headers: { cookie: alice } });
      assert.equal(
        (await api(server.url, undefined, "GET", "/api/v1/nodes", undefined, { cookie: alice })).status,
        401,
      );
      assert.equal(
        (
          await api(server.url, undefined, "GET", "/api/v1/nodes", undefined, {
            cookie: "berth_session=forged",
          })
        ).status,
        401,
      );
    });
  });
}
