// The operator's pure rules, without a cluster: plan specs and their defaults, durations, maintenance
// windows (time zones with daylight saving from the runtime's own tz database), label selectors, how an
// agent's report is judged, what a drain does with a pod, and the status conditions.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { type AgentView, alreadyDone, outcome, workFor } from "../../src/k8s/agents.ts";
import { structural } from "../../src/k8s/crd.ts";
import { blockingBudget, podVerdict } from "../../src/k8s/drain.ts";
import { formatDuration, parseDuration } from "../../src/k8s/duration.ts";
import { requestKind } from "../../src/k8s/kube.ts";
import { lockName } from "../../src/k8s/names.ts";
import { concurrencyOf, type PlanSettings, planSettings } from "../../src/k8s/plan.ts";
import { selectorMatches, selectorProblem } from "../../src/k8s/selector.ts";
import { buildStatus, type PlanFacts } from "../../src/k8s/status.ts";
import { inWindow, nextWindowOpen, windowOpen } from "../../src/k8s/windows.ts";

const settings = (spec: unknown): PlanSettings => {
  const s = planSettings(spec);
  if ("error" in s) throw new Error(s.error);
  return s;
};

describe("plan specs", () => {
  test("defaults", () => {
    const s = settings({ target: { osRelease: "2026.12.2" } });
    assert.equal(s.kind, "os-release");
    assert.equal(s.description, "os-release 2026.12.2");
    assert.equal(s.reboot, true);
    assert.equal(s.maxUnavailable, 1);
    assert.equal(s.failureBudget, 0);
    assert.equal(s.drainTimeoutMs, 600_000);
    assert.equal(s.onDrainTimeout, "Pause");
    assert.equal(s.nodeTimeoutMs, 1_800_000);
    assert.equal(settings({ target: { livePatch: "openssl-3.5.1" } }).reboot, false);
  });

  test("errors name the field", () => {
    for (const [spec, want] of [
      [{}, /target/],
      [{ target: {} }, /exactly one/],
      [{ target: { osRelease: "1", hardeningProfile: "x" } }, /exactly one/],
      [{ target: { osRelease: "1" }, maxUnavailable: "0%" }, /maxUnavailable/],
      [{ target: { osRelease: "1" }, drain: { timeout: "ten minutes" } }, /drain\.timeout/],
      [
        {
          target: { osRelease: "1" },
          maintenanceWindows: [{ start: "01:00", end: "02:00", timeZone: "Mars/Olympus" }],
        },
        /time zone/,
      ],
      [
        { target: { osRelease: "1" }, nodeSelector: { matchExpressions: [{ key: "a", operator: "In" }] } },
        /needs at least one value/,
      ],
      [{ target: { osRelease: "1" }, surprise: true }, /spec/],
    ] as const) {
      const s = planSettings(spec);
      assert.ok("error" in s, JSON.stringify(spec));
      assert.match(s.error, want);
    }
  });

  test("how many at once: a number, or a percentage rounded down but at least one", () => {
    assert.equal(concurrencyOf(3, 100), 3);
    assert.equal(concurrencyOf("25%", 10), 2);
    assert.equal(concurrencyOf("10%", 5), 1);
    assert.equal(concurrencyOf("100%", 7), 7);
  });

  test("the job each kind of target gives", () => {
    assert.deepEqual(workFor(settings({ target: { osRelease: "2026.12.2" } })), {
      kind: "update-apply",
      params: { version: "2026.12.2", reboot: true, ignoreWaves: true },
    });
    assert.deepEqual(workFor(settings({ target: { livePatch: "libssl-fix", livePatchKind: "lib" } })), {
      kind: "patch-apply",
      params: { name: "libssl-fix", patchKind: "lib" },
    });
    assert.deepEqual(workFor(settings({ target: { hardeningProfile: "security-mode" } })), {
      kind: "harden-apply",
      params: { name: "security-mode" },
    });
  });

  test("lock names stay valid object names", () => {
    assert.equal(lockName("node-1"), "berth-node-node-1");
    const long = lockName("n".repeat(250));
    assert.ok(long.length <= 253 && /^berth-node-[0-9a-f]{40}$/.test(long));
  });
});

describe("durations", () => {
  test("Go's form, and refusals", () => {
    assert.equal(parseDuration("90s"), 90_000);
    assert.equal(parseDuration("1m30s"), 90_000);
    assert.equal(parseDuration("1.5h"), 5_400_000);
    assert.equal(parseDuration("250ms"), 250);
    for (const bad of ["", "5", "5 m", "m", "-1s", "1d"]) assert.equal(parseDuration(bad), undefined, bad);
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(3_600_000), "1h");
    assert.equal(formatDuration(8000), "8s");
  });
});

describe("maintenance windows", () => {
  const at = (iso: string) => new Date(iso);
  test("a window on given days, and one past midnight", () => {
    const w = { days: ["Sat" as const], start: "22:00", end: "02:00" };
    assert.ok(inWindow(w, at("2026-12-05T23:30:00Z"))); // Saturday evening
    assert.ok(inWindow(w, at("2026-12-06T01:59:00Z"))); // its Sunday morning part
    assert.ok(!inWindow(w, at("2026-12-06T02:00:00Z")));
    assert.ok(!inWindow(w, at("2026-12-06T23:30:00Z"))); // Sunday evening: not a window day
    assert.ok(!inWindow(w, at("2026-12-05T01:00:00Z"))); // Saturday morning belongs to Friday
    assert.ok(windowOpen([], at("2026-12-05T12:00:00Z")));
    assert.ok(inWindow({ start: "00:00", end: "00:00" }, at("2026-12-01T13:37:00Z")), "start = end: all day");
  });

  test("time zones follow daylight saving", () => {
    const w = { start: "02:00", end: "03:00", timeZone: "America/New_York" };
    // 02:30 New York is 07:30 UTC in winter (EST) and 06:30 UTC in summer (EDT).
    assert.ok(inWindow(w, at("2026-12-01T07:30:00Z")));
    assert.ok(!inWindow(w, at("2026-12-01T06:30:00Z")));
    assert.ok(inWindow(w, at("2026-07-01T06:30:00Z")));
    assert.ok(!inWindow(w, at("2026-07-01T07:30:00Z")));
  });

  test("the next opening", () => {
    const w = [{ days: ["Mon" as const], start: "03:00", end: "04:00" }];
    assert.equal(nextWindowOpen(w, at("2026-12-01T10:00:00Z"))?.toISOString(), "2026-12-07T03:00:00.000Z");
  });
});

describe("label selectors", () => {
  test("match labels and expressions, as the API server does", () => {
    const labels = { pool: "a", zone: "z1", gpu: "" };
    assert.ok(selectorMatches(undefined, labels));
    assert.ok(selectorMatches({}, labels));
    assert.ok(selectorMatches({ matchLabels: { pool: "a" } }, labels));
    assert.ok(!selectorMatches({ matchLabels: { pool: "b" } }, labels));
    assert.ok(
      selectorMatches({ matchExpressions: [{ key: "zone", operator: "In", values: ["z1", "z2"] }] }, labels),
    );
    assert.ok(
      !selectorMatches({ matchExpressions: [{ key: "zone", operator: "NotIn", values: ["z1"] }] }, labels),
    );
    assert.ok(
      selectorMatches({ matchExpressions: [{ key: "rack", operator: "NotIn", values: ["r1"] }] }, labels),
    );
    assert.ok(selectorMatches({ matchExpressions: [{ key: "gpu", operator: "Exists" }] }, labels));
    assert.ok(!selectorMatches({ matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }] }, labels));
    assert.equal(
      selectorProblem({ matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] }),
      "nodeSelector: a Exists takes no values",
    );
  });
});

describe("judging a node by its agent", () => {
  const s = settings({ target: { osRelease: "2026.12.2" } });
  const agent = (o: Partial<AgentView>): AgentView => ({
    id: "n1",
    hostname: "h",
    online: true,
    release: "2026.12.1",
    updateState: "idle",
    patches: [],
    ...o,
  });
  const job = { id: "j", state: "sent" as const, createdAt: "2026-12-01T10:00:00.000Z" };
  test("done only on the new release and good", () => {
    assert.deepEqual(outcome(s, agent({ release: "2026.12.2", updateState: "good" }), job), {
      done: true,
      release: "2026.12.2",
    });
    assert.equal(outcome(s, agent({ release: "2026.12.2", updateState: "rebooting" }), job).done, false);
    assert.ok(alreadyDone(s, agent({ release: "2026.12.2", updateState: "good" })));
    assert.ok(!alreadyDone(s, agent({ release: "2026.12.2", updateState: "failed" })));
  });
  test("a rollback counts once the agent acted on this job, not from an older attempt", () => {
    const rolled = agent({
      updateState: "rolled-back",
      reason: "health check failed",
      lastAttempt: { version: "2026.12.2", at: "2026-12-01T09:00:00.000Z", result: "rolled-back" },
    });
    assert.equal(outcome(s, rolled, job).done, false);
    assert.equal(
      (outcome(s, rolled, job) as { failed?: string }).failed,
      undefined,
      "an old rollback, job not picked up yet",
    );
    const now = { ...rolled, lastAttempt: { ...rolled.lastAttempt!, at: "2026-12-01T10:05:00.000Z" } };
    assert.match(
      (outcome(s, now, job) as { failed: string }).failed,
      /rolled back to 2026\.12\.1: health check failed/,
    );
    assert.match(
      (outcome(s, rolled, { ...job, state: "running" }) as { failed: string }).failed,
      /rolled back/,
    );
  });
  test("live patches and hardening are judged by the job", () => {
    const p = settings({ target: { livePatch: "fix" } });
    assert.equal(outcome(p, agent({}), { ...job, state: "succeeded" }).done, true);
    assert.match(
      (outcome(p, agent({}), { ...job, state: "failed", error: "ptrace refused" }) as { failed: string })
        .failed,
      /ptrace refused/,
    );
    assert.ok(alreadyDone(p, agent({ patches: ["fix"] })));
  });
});

describe("drain rules", () => {
  const pod = (o: { owner?: string; mirror?: boolean; phase?: string; deleting?: boolean }): V1Pod => ({
    metadata: {
      name: "p",
      namespace: "ns",
      ...(o.owner
        ? {
            ownerReferences: [
              { apiVersion: "apps/v1", kind: o.owner, name: "o", uid: "u", controller: true },
            ],
          }
        : {}),
      ...(o.mirror ? { annotations: { "kubernetes.io/config.mirror": "x" } } : {}),
      ...(o.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    status: o.phase ? { phase: o.phase } : {},
  });
  test("kubectl drain's filters", () => {
    assert.equal(podVerdict(pod({ owner: "ReplicaSet" })), "evict");
    assert.equal(podVerdict(pod({ owner: "StatefulSet" })), "evict");
    assert.equal(podVerdict(pod({ owner: "DaemonSet" })), "skip-daemonset");
    assert.equal(podVerdict(pod({ mirror: true })), "skip-mirror");
    assert.equal(podVerdict(pod({})), "unmanaged");
    assert.equal(podVerdict(pod({ phase: "Succeeded" })), "evict");
    assert.equal(podVerdict(pod({ owner: "ReplicaSet", deleting: true })), "terminating");
  });
  test("the PDB a 429 names (the API server's words)", () => {
    const e = {
      code: 429,
      body: JSON.stringify({
        kind: "Status",
        message: "Cannot evict pod as it would violate the pod's disruption budget.",
        details: {
          causes: [
            {
              reason: "DisruptionBudget",
              message: "The disruption budget web needs 5 healthy pods and has 5 currently",
            },
          ],
        },
      }),
    };
    assert.equal(blockingBudget(e), "web");
    assert.equal(blockingBudget({ code: 429, body: "{}" }), undefined);
  });
  test("requests are counted by verb and resource", () => {
    assert.equal(requestKind("PATCH", "https://h:6443/api/v1/nodes/n1"), "PATCH nodes");
    assert.equal(requestKind("GET", "https://h:6443/api/v1/pods?fieldSelector=x"), "LIST pods");
    assert.equal(
      requestKind("POST", "https://h:6443/api/v1/namespaces/ns/pods/p/eviction"),
      "POST pods/eviction",
    );
    assert.equal(
      requestKind("DELETE", "https://h:6443/apis/coordination.k8s.io/v1/namespaces/b/leases/l"),
      "DELETE leases",
    );
    assert.equal(
      requestKind("PATCH", "https://h:6443/apis/berth.dev/v1alpha1/updateplans/p/status"),
      "PATCH updateplans/status",
    );
    assert.equal(requestKind("GET", "https://h:6443/api/v1"), "GET discovery");
  });
});

describe("status", () => {
  const base: PlanFacts = {
    generation: 3,
    target: "os-release 2026.12.2",
    nodes: [],
    paused: false,
    windowOpen: true,
    failureBudget: 0,
    acknowledgedFailures: 0,
    previous: [],
    now: new Date("2026-12-01T10:00:00Z"),
  };
  test("counts, phase and conditions", () => {
    const s = buildStatus({
      ...base,
      nodes: [
        { name: "a", phase: "Succeeded" },
        { name: "b", phase: "Draining", blockedBy: "shop/web", blockedSince: "2026-12-01T09:59:00.000Z" },
        { name: "c", phase: "Pending" },
      ],
    });
    assert.equal(s.phase, "Progressing");
    assert.deepEqual([s.total, s.succeeded, s.inProgress, s.pending], [3, 1, 1, 1]);
    assert.equal(s.message, "b: blocked by PDB shop/web since 2026-12-01T09:59:00.000Z");
    const blocked = s.conditions!.find((c) => c.type === "DrainBlocked")!;
    assert.equal(blocked.status, "True");
    assert.equal(blocked.lastTransitionTime, "2026-12-01T10:00:00.000Z");
    // A later status keeps the transition time of a condition that did not change.
    const later = buildStatus({
      ...base,
      nodes: [{ name: "a", phase: "Pending", blockedBy: "x/y", blockedSince: "t" }],
      previous: s.conditions!,
      now: new Date("2026-12-01T11:00:00Z"),
    });
    assert.equal(
      later.conditions!.find((c) => c.type === "DrainBlocked")!.lastTransitionTime,
      "2026-12-01T10:00:00.000Z",
    );
    assert.equal(
      later.conditions!.find((c) => c.type === "Progressing")!.lastTransitionTime,
      "2026-12-01T10:00:00.000Z",
    );
  });
  test("failures over the budget, acknowledged failures, completion", () => {
    const failed = [
      { name: "a", phase: "Failed" as const, message: "rolled back to 1: bad" },
      { name: "b", phase: "Succeeded" as const },
    ];
    const over = buildStatus({
      ...base,
      nodes: failed,
      paused: true,
      pause: { reason: "FailureBudgetExceeded", message: "budget" },
    });
    assert.equal(over.phase, "Completed");
    assert.equal(over.conditions!.find((c) => c.type === "FailureBudgetExceeded")!.status, "True");
    assert.match(
      over.conditions!.find((c) => c.type === "FailureBudgetExceeded")!.message!,
      /a \(rolled back to 1: bad\)/,
    );
    const acked = buildStatus({
      ...base,
      nodes: [...failed, { name: "c", phase: "Pending" }],
      acknowledgedFailures: 1,
    });
    assert.equal(acked.conditions!.find((c) => c.type === "FailureBudgetExceeded")!.status, "False");
    assert.equal(
      buildStatus({ ...base, windowOpen: false, nodes: [{ name: "a", phase: "Pending" }] }).phase,
      "Waiting",
    );
    assert.equal(buildStatus(base).message, "no Node matches the selector");
    // No empty strings: the API server would read them as null.
    assert.ok(!JSON.stringify(buildStatus(base)).includes('""'));
  });
});

describe("the CRD schema", () => {
  test("structural: enums, int-or-string, maps, no additionalProperties: false", () => {
    const s = structural({
      type: "object",
      additionalProperties: false,
      properties: {
        e: {
          anyOf: [
            { const: "A", type: "string" },
            { const: "B", type: "string" },
          ],
        },
        n: {
          anyOf: [
            { type: "integer", minimum: 1 },
            { type: "string", pattern: "^x$" },
          ],
        },
        m: { type: "object", patternProperties: { "^.*$": { type: "string" } } },
      },
      required: ["e"],
    });
    assert.deepEqual(s, {
      type: "object",
      properties: {
        e: { type: "string", enum: ["A", "B"] },
        n: { "x-kubernetes-int-or-string": true, minimum: 1, pattern: "^x$" },
        m: { type: "object", additionalProperties: { type: "string" } },
      },
      required: ["e"],
    });
  });
});
