// berth k8s manifests against a real API server (v1.20.2): they apply cleanly with server-side apply,
// kustomize takes them, the CRD validates plans and prints useful columns, the pod templates pass the
// server's admission (priority classes, security contexts), and the operator's RBAC allows what it
// needs and nothing more (the API server's authorizer is the judge, through kubectl auth can-i).

import assert from "node:assert/strict";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AuthorizationV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { berth, isOneLineError, tempDir } from "../helpers.ts";
import { type Cluster, installBerth, serviceAccountKubeconfig, startCluster } from "./cluster.ts";

const NS = "berth-test";
let c: Cluster;
let saConfig: string;
/** What `berth k8s manifests` printed for the install. */
let printed: string;

before(async () => {
  c = await startCluster();
  printed = await installBerth(c, NS, [
    "--server",
    "http://fleet.example:8443",
    "--image",
    "berth/berth:test",
  ]);
  saConfig = await serviceAccountKubeconfig(c, NS, "berth-operator");
});
after(async () => c?.stop());

const plan = (name: string, spec: unknown) =>
  JSON.stringify({ apiVersion: "berth.dev/v1alpha1", kind: "UpdatePlan", metadata: { name }, spec });

describe("berth k8s manifests", () => {
  test("apply cleanly with kubectl apply --server-side, and again without change", async () => {
    const kinds = parseAllDocuments(printed).map((d) => (d.toJS() as { kind: string }).kind);
    assert.deepEqual(kinds.sort(), [
      "ClusterRole",
      "ClusterRoleBinding",
      "CustomResourceDefinition",
      "DaemonSet",
      "Deployment",
      "Namespace",
      "Role",
      "RoleBinding",
      "ServiceAccount",
      "ServiceAccount",
    ]);
    // The same manifests again: server-side apply finds nothing to change (the objects' generations stay).
    const generations = () =>
      c.kubectl([
        "get",
        "-n",
        NS,
        "daemonset/berth-agent",
        "deployment/berth-operator",
        "-o",
        "jsonpath={.items[*].metadata.generation}",
      ]);
    const before = await generations();
    const again = await c.kubectl(["apply", "--server-side", "-f", "-"], printed);
    assert.equal(again.code, 0, again.stderr);
    const after = await generations();
    assert.equal(after.stdout, before.stdout);
    const ds = JSON.parse((await c.kubectl(["get", "-n", NS, "daemonset/berth-agent", "-o", "json"])).stdout);
    assert.equal(ds.spec.template.spec.containers[0].image, "berth/berth:test");
  });

  test("every RBAC rule, host mount and privilege says why in a comment", async () => {
    const lines = printed.split("\n");
    const commentAbove = (i: number) => /^\s*# \S/.test(lines[i - 1] ?? "");
    const rules = lines.flatMap((l, i) => (/^\s*- apiGroups:/.test(l) ? [i] : []));
    assert.ok(rules.length >= 6, "RBAC rules found");
    for (const i of rules) assert.ok(commentAbove(i), `no reason above rule at line ${i + 1}: ${lines[i]}`);
    const mounts = lines.flatMap((l, i) => (/^\s*hostPath:/.test(l) ? [i - 1] : []));
    assert.ok(mounts.length >= 5, "host mounts found");
    for (const i of mounts)
      assert.ok(commentAbove(i), `no reason above volume at line ${i + 1}: ${lines[i]}`);
    for (const key of ["hostPID: true", "hostNetwork: true", "privileged: true"]) {
      const i = lines.findIndex((l) => l.trim() === key);
      assert.ok(i > 0 && commentAbove(i), `no reason above ${key}`);
    }
  });

  test("the pod templates pass the server's admission: priority classes, privileges, tolerations", async () => {
    for (const [kind, name] of [
      ["daemonset", "berth-agent"],
      ["deployment", "berth-operator"],
    ] as const) {
      const obj = JSON.parse((await c.kubectl(["get", "-n", NS, `${kind}/${name}`, "-o", "json"])).stdout);
      const pod = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `${name}-probe`, namespace: NS, labels: obj.spec.template.metadata.labels },
        spec: { ...obj.spec.template.spec, nodeName: "n1" },
      };
      // A server-side dry run goes through admission (Priority resolves the class) and validation.
      const r = await c.kubectl(["create", "--dry-run=server", "-o", "json", "-f", "-"], JSON.stringify(pod));
      assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
      const admitted = JSON.parse(r.stdout);
      assert.ok(admitted.spec.priority >= 2_000_000_000, `${kind} priority ${admitted.spec.priority}`);
      if (kind === "daemonset") {
        assert.equal(admitted.spec.priorityClassName, "system-node-critical");
        assert.equal(admitted.spec.hostPID, true);
        assert.deepEqual(
          admitted.spec.tolerations.filter(
            (t: { operator?: string; key?: string }) => t.operator === "Exists" && !t.key,
          ).length,
          1,
        );
        const privileged = [...admitted.spec.initContainers, ...admitted.spec.containers].filter(
          (k: { securityContext?: { privileged?: boolean } }) => k.securityContext?.privileged,
        );
        assert.deepEqual(
          privileged.map((k: { name: string }) => k.name),
          ["agent"],
        );
        assert.equal(admitted.spec.automountServiceAccountToken, false);
        for (const k of admitted.spec.containers) assert.ok(k.resources.requests && k.resources.limits);
      } else {
        assert.equal(obj.spec.replicas, 2);
        assert.equal(admitted.spec.containers[0].securityContext.privileged ?? false, false);
        assert.deepEqual(admitted.spec.containers[0].securityContext.capabilities.drop, ["ALL"]);
      }
    }
  });

  test("kustomize takes the base, and an overlay moves it to another namespace", async () => {
    const dir = tempDir("berth-kustomize-");
    const base = join(dir, "base");
    const w = await berth(["k8s", "manifests", "--out", base, "--namespace", NS]);
    assert.equal(w.code, 0, w.stderr);
    assert.deepEqual(readdirSync(base).sort(), [
      "agent.yaml",
      "crd.yaml",
      "kustomization.yaml",
      "namespace.yaml",
      "operator.yaml",
      "rbac.yaml",
    ]);
    const built = await c.kubectl(["kustomize", base]);
    assert.equal(built.code, 0, built.stderr);
    assert.equal(parseAllDocuments(built.stdout).length, 10);
    const overlay = join(dir, "overlay");
    mkdirSync(overlay);
    writeFileSync(join(overlay, "kustomization.yaml"), "resources: [../base]\nnamespace: fleet-ops\n");
    const o = await c.kubectl(["kustomize", overlay]);
    assert.equal(o.code, 0, o.stderr);
    const docs = parseAllDocuments(o.stdout).map((d) => d.toJS());
    const crb = docs.find((d) => d.kind === "ClusterRoleBinding");
    assert.equal(crb.subjects[0].namespace, "fleet-ops");
    assert.equal(docs.find((d) => d.kind === "Deployment").metadata.namespace, "fleet-ops");
    // Writing again replaces the base whole.
    const again = await berth(["k8s", "manifests", "--out", base, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).written.length, 6);
  });

  test("bad options are one-line usage errors", async () => {
    for (const args of [
      ["--namespace", "Bad_NS"],
      ["--server", "ftp://fleet"],
    ]) {
      const r = await berth(["k8s", "manifests", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(isOneLineError(r.stderr), r.stderr);
      assert.equal(r.stdout, "");
    }
  });
});

describe("the UpdatePlan CRD", () => {
  test("the API server takes good plans and refuses bad ones", async () => {
    const good = plan("good", {
      target: { osRelease: "2026.12.2" },
      nodeSelector: {
        matchLabels: { "berth.dev/pool": "a" },
        matchExpressions: [{ key: "zone", operator: "In", values: ["z1"] }],
      },
      maxUnavailable: "25%",
      delayBetweenNodes: "1m30s",
      maintenanceWindows: [{ days: ["Sat", "Sun"], start: "22:00", end: "04:00", timeZone: "Europe/Paris" }],
      failureBudget: 1,
      drain: { timeout: "10m", onTimeout: "Skip" },
    });
    const ok = await c.kubectl(["apply", "-f", "-"], good);
    assert.equal(ok.code, 0, ok.stderr);
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    for (const [spec, why] of [
      [{}, /target/],
      [{ target: {} }, /oneOf|one and only one/],
      [{ target: { osRelease: "1", livePatch: "x" } }, /oneOf|one and only one/],
      [{ target: { osRelease: "1" }, maxUnavailable: 0 }, /maxUnavailable/],
      [{ target: { osRelease: "1" }, maxUnavailable: "ten" }, /maxUnavailable/],
      [{ target: { osRelease: "1" }, maxUnavailable: "150%" }, /maxUnavailable/],
      [{ target: { osRelease: "1" }, delayBetweenNodes: "5 minutes" }, /delayBetweenNodes/],
      [{ target: { osRelease: "1" }, drain: { onTimeout: "Hang" } }, /onTimeout/],
      [{ target: { osRelease: "1" }, maintenanceWindows: [{ start: "25:00", end: "01:00" }] }, /start/],
      [{ target: { osRelease: "bad version!" } }, /osRelease/],
    ] as const) {
      const refused = await custom
        .createClusterCustomObject({
          group: "berth.dev",
          version: "v1alpha1",
          plural: "updateplans",
          body: JSON.parse(plan("bad", spec)),
        })
        .then(
          () => undefined,
          (e: { code?: number; body?: string }) => e,
        );
      assert.ok(refused, `accepted ${JSON.stringify(spec)}`);
      assert.equal(refused.code, 422, JSON.stringify(spec));
      assert.match(String(refused.body), why);
    }
  });

  test("kubectl get updateplans prints the plan's columns", async () => {
    const r = await c.kubectl(["get", "updateplans"]);
    assert.equal(r.code, 0, r.stderr);
    const header = r.stdout.split("\n")[0]!.trim().split(/\s+/);
    assert.deepEqual(header, [
      "NAME",
      "TARGET",
      "PHASE",
      "NODES",
      "UPDATED",
      "RUNNING",
      "FAILED",
      "PAUSED",
      "AGE",
    ]);
    const wide = await c.kubectl(["get", "uplan", "-o", "wide"]);
    assert.match(wide.stdout.split("\n")[0]!, /MESSAGE/);
  });
});

describe("the operator's RBAC", () => {
  // The API server's authorizer answers for the operator's own token (a SelfSubjectAccessReview).
  const can = async (verb: string, resource: string, ns?: string) => {
    const [res, subresource] = resource.split("/") as [string, string | undefined];
    const [plural, ...group] = res.split(".");
    const kc = new KubeConfig();
    kc.loadFromFile(saConfig);
    const r = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
      body: {
        spec: {
          resourceAttributes: { verb, resource: plural, group: group.join("."), subresource, namespace: ns },
        },
      },
    });
    return r.status?.allowed === true;
  };

  test("allows what the operator does", async () => {
    for (const [verb, res, ns] of [
      ["list", "nodes"],
      ["watch", "nodes"],
      ["patch", "nodes"],
      ["list", "pods", "default"],
      ["watch", "pods", "kube-system"],
      ["get", "pods", "kube-system"],
      ["create", "pods/eviction", "default"],
      ["watch", "updateplans.berth.dev"],
      ["patch", "updateplans.berth.dev"],
      ["patch", "updateplans.berth.dev/status"],
      ["create", "leases.coordination.k8s.io", NS],
      ["delete", "leases.coordination.k8s.io", NS],
      ["update", "leases.coordination.k8s.io", NS],
    ] as const)
      assert.ok(await can(verb, res, ns), `cannot ${verb} ${res}`);
  });

  test("and nothing more", async () => {
    for (const [verb, res, ns] of [
      ["delete", "nodes"],
      ["update", "nodes"],
      ["patch", "nodes/status"],
      ["create", "pods", "default"],
      ["delete", "pods", "default"],
      ["patch", "pods", "default"],
      ["get", "secrets", NS],
      ["list", "secrets", "default"],
      ["create", "leases.coordination.k8s.io", "default"],
      ["create", "updateplans.berth.dev"],
      ["delete", "updateplans.berth.dev"],
      ["update", "updateplans.berth.dev/status"],
      ["patch", "daemonsets.apps", NS],
      ["create", "poddisruptionbudgets.policy", "default"],
      ["list", "configmaps", NS],
      ["create", "serviceaccounts/token", NS],
    ] as const)
      assert.ok(!(await can(verb, res, ns)), `can ${verb} ${res}${ns ? ` in ${ns}` : ""}`);
  });

  test("the agent's ServiceAccount has no access at all", async () => {
    const agent = await serviceAccountKubeconfig(c, NS, "berth-agent");
    const r = await c.kubectl(["--kubeconfig", agent, "auth", "can-i", "--list"]);
    // Only what every authenticated user gets (discovery, self-review).
    const resources = r.stdout
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((x) => x && !x.startsWith("["));
    assert.deepEqual(resources.sort(), [
      "selfsubjectaccessreviews.authorization.k8s.io",
      "selfsubjectrulesreviews.authorization.k8s.io",
    ]);
  });
});
