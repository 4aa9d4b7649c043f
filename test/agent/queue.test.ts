// The agent's pieces that need no server: deltas that rebuild the exact snapshot (randomised), the
// on-disk queue (crash between its two writes, acknowledgement, folding a long queue into one full
// report), job command lines, and the mapping of `berth update status` to the fleet's update state.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { applyToSnapshot, deltaReport, fullReport, type Snapshot } from "../../src/agent/delta.ts";
import { commandFor, resolveInterrupted } from "../../src/agent/jobs.ts";
import { MAX_QUEUED, ReportQueue } from "../../src/agent/queue.ts";
import { mutate, rng, simulatedSnapshot } from "../../src/agent/simulate.ts";
import { AgentState } from "../../src/agent/state.ts";
import { updateStatusFrom } from "../../src/agent/update-status.ts";
import { tempDir } from "../helpers.ts";
import { hostPool } from "../server/fleet.ts";

/** A snapshot as sorted JSON: lists by key, object keys in order. */
const canon = (s: Snapshot): string => {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === "object"
        ? Object.fromEntries(
            Object.entries(v)
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([k, x]) => [k, sorted(x)]),
          )
        : v;
  return JSON.stringify(
    sorted({
      ...s,
      packages: [...s.packages].sort((a, b) =>
        `${a.name}:${a.architecture}` < `${b.name}:${b.architecture}` ? -1 : 1,
      ),
      containers: [...s.containers].sort((a, b) => (a.id < b.id ? -1 : 1)),
    }),
  );
};
const same = (a: Snapshot, b: Snapshot, what: string) =>
  assert.ok(canon(a) === canon(b), `${what}: snapshots differ`);

describe("agent reports", () => {
  test("a chain of deltas rebuilds every snapshot exactly (500 random changes on real packages)", async () => {
    const pool = await hostPool();
    const r = rng(1);
    let s = simulatedSnapshot(r, 0, {
      pool,
      minPackages: 200,
      maxPackages: 400,
      containers: 25,
      codename: "trixie",
    });
    let server = applyToSnapshot(undefined, fullReport(1, s));
    same(server, s, "full report");
    let sizes = 0;
    for (let seq = 2; seq < 502; seq++) {
      let next = mutate(r, s);
      if (r() < 0.1) next = { ...next, packages: next.packages.filter((_, i) => i % 37 !== seq % 37) };
      if (r() < 0.05) next = { ...next, harden: { ...next.harden!, score: Math.floor(r() * 100) } };
      const d = deltaReport(seq, s, next);
      assert.equal(d.full, false);
      assert.equal(d.base, seq - 1);
      sizes += JSON.stringify(d).length;
      server = applyToSnapshot(server, d);
      same(server, next, `seq ${seq}`);
      s = next;
    }
    // Small deltas: an average check-in is a small fraction of a full report.
    assert.ok(sizes / 500 < JSON.stringify(fullReport(1, s)).length / 20);
    // A changed release needs a full report.
    assert.equal(deltaReport(9, s, { ...s, os: { id: "debian", codename: "forky" } }).full, true);
  });

  test("the queue: written before sending, acknowledged away, folded when long, safe across a kill", async () => {
    const dir = tempDir("berth-queue-");
    const pool = await hostPool();
    const r = rng(2);
    let s = simulatedSnapshot(r, 0, {
      pool,
      minPackages: 20,
      maxPackages: 30,
      containers: 2,
      codename: "trixie",
    });
    const q = new ReportQueue(new AgentState(dir));
    assert.equal((await q.enqueue(s)).full, true);
    s = mutate(r, s);
    assert.equal((await q.enqueue(s)).full, false);
    assert.deepEqual(q.seqs(), [1, 2]);
    await q.ack(1);
    assert.deepEqual(q.seqs(), [2]);
    assert.equal(q.acked(), 1);
    // A kill between writing queue/3 and snapshot.json: the orphan entry is dropped on start, and the
    // next report takes its number from the last snapshot.
    mkdirSync(join(dir, "queue"), { recursive: true });
    writeFileSync(join(dir, "queue/000000000003.json"), JSON.stringify(deltaReport(3, s, s)));
    const again = new ReportQueue(new AgentState(dir));
    assert.deepEqual(again.seqs(), [2]);
    assert.equal((await again.enqueue(mutate(r, s))).seq, 3);
    // A server that stays away: past MAX_QUEUED reports, the queue is one full report.
    for (let i = 0; i < MAX_QUEUED + 5; i++) {
      s = mutate(r, s);
      await again.enqueue(s);
    }
    const left = again.seqs();
    assert.ok(left.length <= MAX_QUEUED, `${left.length} queued`);
    assert.equal(again.read(left[0]!)!.full, true);
    assert.ok(readdirSync(join(dir, "queue")).every((f) => !f.endsWith(".tmp")));
    assert.ok(existsSync(join(dir, "snapshot.json")));
  });

  test("jobs become berth commands; interrupted ones are judged by what the node came back on", () => {
    assert.deepEqual(
      commandFor({ kind: "update-apply", params: { version: "2026.12.1", ignoreWaves: true } }),
      ["update", "apply", "--version", "2026.12.1", "--ignore-waves", "--json"],
    );
    assert.deepEqual(commandFor({ kind: "harden-apply", params: { name: "essential" } }), [
      "harden",
      "apply",
      "--profile",
      "essential",
      "--json",
    ]);
    assert.deepEqual(
      commandFor({ kind: "patch-apply", params: { name: "openssl-fix" } }, "http://10.0.2.2:8080"),
      ["patch", "lib", "apply", "--from-repo", "http://10.0.2.2:8080", "openssl-fix", "--all", "--json"],
    );
    assert.throws(() => commandFor({ kind: "patch-apply", params: { name: "x" } }), /repository/);
    assert.equal(commandFor({ kind: "rescan", params: {} }), undefined);
    const rec = {
      id: "j",
      kind: "update-apply" as const,
      params: { version: "2026.12.1", reboot: true },
      phase: "rebooting" as const,
      startedAt: "",
      reported: false,
    };
    assert.equal(
      resolveInterrupted(rec, { release: "2026.12.1", updateState: "rebooting" })?.state,
      "succeeded",
    );
    assert.equal(
      resolveInterrupted(rec, { release: "2026.11.1", updateState: "rolled-back" })?.state,
      "failed",
    );
    assert.equal(
      resolveInterrupted({ ...rec, phase: "started" }, { release: "2026.12.1", updateState: "good" })?.state,
      "failed",
    );
  });

  test("berth update status becomes the fleet's update state", () => {
    // Slots as src/update/status.ts's slotStatuses gives them for these boot entries.
    const slots = [
      { slot: "a", release: "2026.11.1", state: "good", booted: false, next: false, entry: "berth-a.conf" },
      {
        slot: "b",
        release: "2026.12.1",
        state: "trying",
        booted: true,
        next: true,
        entry: "berth-b+2-1.conf",
        triesLeft: 2,
        triesDone: 1,
      },
    ];
    const trying = updateStatusFrom({
      booted: { slot: "b", release: "2026.12.1" },
      slots,
      lastAttempt: { version: "2026.12.1", slot: "b", started: "2026-12-01T10:00:00Z" },
    });
    assert.equal(trying.state, "rebooting");
    assert.equal(trying.booted, "b");
    assert.deepEqual(
      trying.slots.map((s) => [s.name, s.release, s.state]),
      [
        ["a", "2026.11.1", "good"],
        ["b", "2026.12.1", "trying"],
      ],
    );
    const good = updateStatusFrom({
      booted: { slot: "b", release: "2026.12.1" },
      slots,
      lastAttempt: { version: "2026.12.1", slot: "b", result: "good", resolved: "2026-12-01T10:05:00Z" },
    });
    assert.equal(good.state, "good");
    assert.equal(good.lastAttempt?.at, "2026-12-01T10:05:00Z");
    const back = updateStatusFrom({
      booted: { slot: "a", release: "2026.11.1" },
      slots: [slots[0], { ...slots[1], state: "bad", booted: false }],
      lastAttempt: { version: "2026.12.1", slot: "b", result: "bad", booted: "2026.11.1" },
    });
    assert.equal(back.state, "rolled-back");
    assert.match(back.reason ?? "", /2026\.12\.1/);
    assert.equal(back.slots.find((s) => s.name === "b")?.state, "bad");
    const written = updateStatusFrom({
      booted: { slot: "a", release: "2026.11.1" },
      slots,
      lastAttempt: { version: "2026.12.1", slot: "b" },
    });
    assert.equal(written.state, "applied");
    assert.equal(updateStatusFrom({ booted: {}, slots: [] }).state, "idle");
    assert.equal(updateStatusFrom(undefined, "downloading").state, "downloading");
  });
});
