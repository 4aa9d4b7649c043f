// berth operator against a real API server (v1.20.2, policy/v1beta1 evictions) and a real fleet server
// with simulated agents: a full rollout under a PDB with maxUnavailable 2, a drain a PDB keeps blocked,
// a failure budget spent by a rollback, a node deleted while it holds its slot, maintenance windows and
// the delay between nodes, and a kill -9 of the operator in the middle of a rollout. The operator runs
// as a child process with its own ServiceAccount's token, so its RBAC is proven enough on the way.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  addNodes,
  createPlan,
  fleetJobs,
  fleetNode,
  getPlan,
  type Harness,
  lockLeases,
  NEW,
  OLD,
  type OperatorProcess,
  patchPlanSpec,
  startHarness,
  startOperator,
  stopHarness,
  stopOperator,
  summary,
  waitFor,
} from "./operator-harness.ts";

let h: Harness;
let op: OperatorProcess;

before(async () => {
  h = await startHarness();
  op = startOperator(h, "operator-a");
});
after(async () => {
  await stopOperator(op);
  await stopHarness(h);
});

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const describePlan = (name: string) => async () =>
  `${summary(await getPlan(h, name))}\n--- operator log ---\n${op.log().slice(-3000)}`;
const completed = (name: string, timeoutMs: number) =>
  waitFor(
    `plan ${name} to complete`,
    async () => {
      const p = await getPlan(h, name);
      return p.status?.phase === "Completed" ? p : undefined;
    },
    timeoutMs,
    describePlan(name),
  );

describe("berth operator", () => {
  test("a full rollout over ten nodes: at most two cordoned, never past the PDB, all on the new release", async () => {
    const nodes = names("roll-", 10);
    await addNodes(h, nodes, "roll");
    const ns = "shop";
    await h.sim.core.createNamespace({ body: { metadata: { name: ns } } });
    // Several pods on each node: a DaemonSet's (left in place), two filler pods, and the web
    // Deployment's six pods behind a PDB that keeps five available. One static pod's mirror.
    await h.sim.addDaemonSetPods(ns, "node-exporter", nodes);
    await h.sim.addReplicaSet(ns, "filler", 20, nodes, { app: "filler" });
    await h.sim.addReplicaSet(ns, "web", 6, nodes.slice(0, 6), { app: "web" });
    await h.sim.addMirrorPod(ns, nodes[0]!);
    // The PDB's record of healthy pods starts once every pod runs, as it would on a settled cluster.
    await waitFor("every shop pod Running and Ready", async () => h.sim.allReady(ns), 60_000);
    await h.sim.addPdb(ns, "web", { app: "web" }, 5);
    const keep = new Map(
      (await h.sim.core.listNamespacedPod({ namespace: ns })).items
        .filter(
          (p) => p.metadata!.name!.startsWith("node-exporter") || p.metadata!.name!.startsWith("static-"),
        )
        .map((p) => [p.metadata!.name!, p.metadata!.uid!]),
    );
    assert.equal(keep.size, 11);
    h.sim.maxCordoned = 0;

    await createPlan(h, "roll", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "roll" } },
      maxUnavailable: 2,
      drain: { timeout: "5m" },
    });
    const plan = await completed("roll", 300_000);

    assert.equal(plan.status!.succeeded, 10, summary(plan));
    assert.equal(plan.status!.failed, 0);
    assert.deepEqual(
      plan.status!.nodes!.map((n) => n.phase),
      Array(10).fill("Succeeded"),
    );
    // The oracles: the fleet server's releases and jobs, the API server's Nodes, Leases and pods.
    for (const n of nodes) {
      const f = await fleetNode(h, n);
      assert.equal(f.release, NEW, n);
      assert.equal(f.update.state, "good", n);
      const jobs = await fleetJobs(h, n);
      assert.deepEqual(
        jobs.map((j) => j.kind),
        ["update-apply"],
        `${n} got exactly one update`,
      );
    }
    const cordoned = (
      await h.cluster.kubectl([
        "get",
        "nodes",
        "-l",
        "berth.dev/pool=roll",
        "-o",
        "jsonpath={.items[*].spec.unschedulable}",
      ])
    ).stdout;
    assert.equal(cordoned.trim(), "", "every node uncordoned");
    assert.equal(h.sim.maxCordoned, 2, "two nodes at a time, never more");
    assert.ok(h.sim.minHealthy(ns, "web") >= 5, `web dropped to ${h.sim.minHealthy(ns, "web")} healthy pods`);
    assert.deepEqual(await lockLeases(h), []);
    const left = (await h.sim.core.listNamespacedPod({ namespace: ns })).items;
    for (const [name, uid] of keep)
      assert.equal(left.find((p) => p.metadata!.name === name)?.metadata?.uid, uid, `${name} was evicted`);
    // Every evictable pod was moved off the node it was on when the node was drained.
    const web = left.filter((p) => p.metadata!.labels?.app === "web");
    assert.equal(web.length, 6);
    assert.ok(
      web.every((p) => !/^web-[0-5]$/.test(p.metadata!.name!)),
      "web pods were all replaced",
    );
    const get = await h.cluster.kubectl(["get", "updateplan", "roll"]);
    assert.match(
      get.stdout,
      new RegExp(
        `roll\\s+os-release ${NEW.replaceAll(".", "\\.")}\\s+Completed\\s+10\\s+10\\s+0\\s+0\\s+false`,
      ),
    );
  });

  test("a drain a PDB blocks is reported, then pauses the plan (no hang); resuming finishes it", async () => {
    const nodes = names("stuck-", 3);
    await addNodes(h, nodes, "stuck");
    const ns = "bank";
    await h.sim.core.createNamespace({ body: { metadata: { name: ns } } });
    await h.sim.addReplicaSet(ns, "ledger", 2, [nodes[0]!], { app: "ledger" });
    await h.sim.addPdb(ns, "ledger", { app: "ledger" }, 2); // zero disruptions allowed
    await waitFor(
      "ledger pods ready",
      async () => h.sim.podsOn(nodes[0]!).filter((p) => p.status?.phase === "Running").length === 2,
      30_000,
    );

    await createPlan(h, "stuck", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "stuck" } },
      maxUnavailable: 1,
      drain: { timeout: "8s", onTimeout: "Pause" },
    });
    const blocked = await waitFor(
      "the plan to say the drain is blocked",
      async () => {
        const p = await getPlan(h, "stuck");
        const c = p.status?.conditions?.find((x) => x.type === "DrainBlocked" && x.status === "True");
        return c ? { p, c } : undefined;
      },
      60_000,
      describePlan("stuck"),
    );
    assert.match(
      blocked.c.message ?? "",
      new RegExp(`${nodes[0]}: blocked by PDB bank/ledger since \\d{4}-\\d\\d-\\d\\dT`),
    );
    assert.equal(blocked.p.status!.nodes!.find((n) => n.name === nodes[0])!.blockedBy, "bank/ledger");

    const paused = await waitFor(
      "the plan to pause",
      async () => {
        const p = await getPlan(h, "stuck");
        return p.spec.paused && p.status?.phase === "Paused" ? p : undefined;
      },
      60_000,
      describePlan("stuck"),
    );
    const n0 = paused.status!.nodes!.find((n) => n.name === nodes[0])!;
    assert.equal(n0.phase, "Blocked");
    assert.match(n0.message!, /drain blocked by PDB bank\/ledger since .* for 8s: plan paused/);
    assert.match(paused.status!.conditions!.find((c) => c.type === "Paused")!.reason, /DrainBlocked/);
    // Nothing else was started, the blocked node is schedulable again, the slot is free.
    assert.deepEqual(
      paused.status!.nodes!.filter((n) => n.name !== nodes[0]).map((n) => n.phase),
      ["Pending", "Pending"],
    );
    await waitFor(
      "the node uncordoned and its slot given back",
      async () => {
        const node = await h.sim.core.readNode({ name: nodes[0]! });
        return !node.spec?.unschedulable && !(await lockLeases(h)).length;
      },
      30_000,
    );
    assert.deepEqual(h.sim.podsOn(nodes[0]!).filter((p) => p.metadata?.labels?.app === "ledger").length, 2);

    // The owner relaxes the budget and resumes: the blocked node is tried again and the plan finishes.
    await h.sim.custom.patchNamespacedCustomObject(
      {
        group: "policy",
        version: "v1beta1",
        namespace: ns,
        plural: "poddisruptionbudgets",
        name: "ledger",
        body: { spec: { minAvailable: 1 } },
      },
      (await import("../../src/k8s/kube.ts")).MERGE_PATCH,
    );
    h.sim.refreshPdbs();
    await patchPlanSpec(h, "stuck", { paused: false });
    const done = await completed("stuck", 120_000);
    assert.equal(done.status!.succeeded, 3, summary(done));
    for (const n of nodes) assert.equal((await fleetNode(h, n)).release, NEW);
  });

  test("failure budget 0: a node whose agent rolls back pauses the plan, and the status names it", async () => {
    const nodes = names("fail-", 4);
    await addNodes(h, nodes, "fail");
    h.agents.get("fail-1").behaviour = { rollBack: "health check failed: docker did not answer" };
    await createPlan(h, "budget", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "fail" } },
      maxUnavailable: 1,
      failureBudget: 0,
    });
    const paused = await waitFor(
      "the plan to pause on the failure",
      async () => {
        const p = await getPlan(h, "budget");
        return p.spec.paused && p.status?.phase === "Paused" && !p.status.inProgress ? p : undefined;
      },
      120_000,
      describePlan("budget"),
    );
    const byName = new Map(paused.status!.nodes!.map((n) => [n.name, n]));
    assert.equal(byName.get("fail-0")!.phase, "Succeeded");
    assert.equal(byName.get("fail-1")!.phase, "Failed");
    assert.match(
      byName.get("fail-1")!.message!,
      /rolled back to 2026\.12\.1: health check failed: docker did not answer/,
    );
    assert.equal(byName.get("fail-2")!.phase, "Pending");
    assert.equal(byName.get("fail-3")!.phase, "Pending");
    const exceeded = paused.status!.conditions!.find((c) => c.type === "FailureBudgetExceeded")!;
    assert.equal(exceeded.status, "True");
    assert.match(
      exceeded.message ?? "",
      /fail-1 \(rolled back to 2026\.12\.1: health check failed: docker did not answer\)/,
    );
    assert.equal(
      paused.status!.conditions!.find((c) => c.type === "Paused")!.reason,
      "FailureBudgetExceeded",
    );
    assert.equal((await fleetNode(h, "fail-1")).release, OLD);
    assert.equal((await fleetNode(h, "fail-2")).release, OLD);
    const n1 = await h.sim.core.readNode({ name: "fail-1" });
    assert.ok(!n1.spec?.unschedulable, "the failed node is not left cordoned");
    assert.equal(paused.status!.failed, 1);
  });

  test("a node deleted while it holds the slot frees it", async () => {
    const nodes = names("gone-", 3);
    await addNodes(h, nodes, "gone");
    const ns = "cache";
    await h.sim.core.createNamespace({ body: { metadata: { name: ns } } });
    await h.sim.addReplicaSet(ns, "memo", 1, [nodes[0]!], { app: "memo" });
    await h.sim.addPdb(ns, "memo", { app: "memo" }, 1);
    await waitFor("the memo pod Running and Ready", async () => h.sim.allReady(ns), 60_000);
    await createPlan(h, "gone", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "gone" } },
      maxUnavailable: 1,
      drain: { timeout: "30m" },
    });
    await waitFor(
      "gone-0 to hold the slot, blocked",
      async () => {
        const p = await getPlan(h, "gone");
        return (
          p.status?.nodes?.find((n) => n.name === "gone-0")?.blockedBy &&
          (await lockLeases(h)).includes("berth-node-gone-0")
        );
      },
      60_000,
      describePlan("gone"),
    );
    await h.sim.core.deleteNode({ name: "gone-0" });
    const done = await completed("gone", 120_000);
    const byName = new Map(done.status!.nodes!.map((n) => [n.name, n]));
    assert.equal(byName.get("gone-0")!.phase, "Skipped");
    assert.match(byName.get("gone-0")!.message!, /deleted/);
    assert.equal(byName.get("gone-1")!.phase, "Succeeded");
    assert.equal(byName.get("gone-2")!.phase, "Succeeded");
    assert.ok(!(await lockLeases(h)).includes("berth-node-gone-0"));
  });

  test("maintenance windows hold new nodes back until one opens; a delay spaces the nodes", async () => {
    const nodes = names("win-", 2);
    await addNodes(h, nodes, "win");
    // A one-minute window twelve hours away: closed now.
    const at = new Date(Date.now() + 12 * 3600_000);
    const hhmm = (d: Date) => d.toISOString().slice(11, 16);
    await createPlan(h, "win", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "win" } },
      maxUnavailable: 2,
      delayBetweenNodes: "3s",
      maintenanceWindows: [{ start: hhmm(at), end: hhmm(new Date(at.getTime() + 60_000)) }],
    });
    const waiting = await waitFor(
      "the plan to wait for its window",
      async () => {
        const p = await getPlan(h, "win");
        return p.status?.phase === "Waiting" ? p : undefined;
      },
      60_000,
      describePlan("win"),
    );
    assert.match(
      waiting.status!.message!,
      new RegExp(`outside the maintenance windows; the next opens at ${at.toISOString().slice(0, 16)}`),
    );
    assert.deepEqual(
      waiting.status!.nodes!.map((n) => n.phase),
      ["Pending", "Pending"],
    );
    assert.equal((await fleetJobs(h, "win-0")).length, 0);
    // A window around now: the plan goes, one node, the delay, the other.
    await patchPlanSpec(h, "win", { maintenanceWindows: [{ start: "00:00", end: "00:00" }] });
    const done = await completed("win", 120_000);
    const [a, b] = [...done.status!.nodes!].sort(
      (x, y) => Date.parse(x.startedAt!) - Date.parse(y.startedAt!),
    );
    assert.equal(a!.phase, "Succeeded");
    assert.equal(b!.phase, "Succeeded");
    // The second node started at least the delay after the first started, and after it finished if
    // it had finished by then.
    const first = [Date.parse(a!.startedAt!), Date.parse(a!.finishedAt!)];
    const second = Date.parse(b!.startedAt!);
    const last = Math.max(...first.filter((t) => t <= second));
    assert.ok(
      second - last >= 3000,
      `second node started ${second - last} ms after the first node's last change`,
    );
  });

  test("kill -9 of the operator mid-rollout: a new one resumes without updating a node twice or leaving one cordoned", async () => {
    const nodes = names("kill-", 6);
    await addNodes(h, nodes, "kill");
    for (const n of nodes) h.agents.get(n).behaviour = { applyMs: 500, rebootMs: 4000 };
    await createPlan(h, "kill", {
      target: { osRelease: NEW },
      nodeSelector: { matchLabels: { "berth.dev/pool": "kill" } },
      maxUnavailable: 2,
    });
    // Kill it while two nodes are in the middle of their update (jobs given, nodes rebooting).
    await waitFor(
      "two nodes mid-update",
      async () => {
        const p = await getPlan(h, "kill");
        return (p.status?.nodes ?? []).filter((n) => n.phase === "Updating" && n.job).length === 2;
      },
      120_000,
      describePlan("kill"),
    );
    op.child.kill("SIGKILL");
    await op.exited;
    const cordonedAtKill = h.sim.cordoned().filter((n) => n.startsWith("kill-"));
    assert.equal(cordonedAtKill.length, 2, "two nodes were cordoned when it died");
    op = startOperator(h, "operator-b");
    const done = await completed("kill", 180_000);
    assert.equal(done.status!.succeeded, 6, summary(done));
    for (const n of nodes) {
      const jobs = await fleetJobs(h, n);
      assert.deepEqual(
        jobs.map((j) => j.kind),
        ["update-apply"],
        `${n}: ${JSON.stringify(jobs)}`,
      );
      assert.equal(h.agents.get(n).jobs.length, 1, `${n} was asked once`);
      assert.equal((await fleetNode(h, n)).release, NEW);
    }
    assert.deepEqual(
      h.sim.cordoned().filter((n) => n.startsWith("kill-")),
      [],
    );
    assert.deepEqual(await lockLeases(h), []);
    assert.match(op.log(), /resuming from its slot/);
  });
});
