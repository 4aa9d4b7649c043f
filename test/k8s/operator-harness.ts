// What the operator tests share: one API server with Berth installed, one fleet server, the cluster
// simulation (kubelet, scheduler, disruption controller), simulated agents, and `berth operator` itself
// as a child process under its own ServiceAccount's token.

import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CoordinationV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type { UpdatePlan, UpdatePlanSpec } from "../../src/k8s/plan.ts";
import { BERTH } from "../helpers.ts";
import { type Cluster, installBerth, serviceAccountKubeconfig, startCluster } from "./cluster.ts";
import { type Fleet, SimAgents, startFleet } from "./fleet.ts";
import { ClusterSim } from "./kubelet-sim.ts";

export const NS = "berth-system";
export const OLD = "2026.12.1";
export const NEW = "2026.12.2";

export interface Harness {
  cluster: Cluster;
  fleet: Fleet;
  sim: ClusterSim;
  agents: SimAgents;
  saConfig: string;
  operatorToken: string;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
}

export async function startHarness(): Promise<Harness> {
  const [c, f] = await Promise.allSettled([startCluster(), startFleet()]);
  if (c.status === "rejected" || f.status === "rejected") {
    // Whichever did start goes again, so the test file can end.
    if (c.status === "fulfilled") await c.value.stop();
    if (f.status === "fulfilled") await f.value.stop();
    throw c.status === "rejected" ? c.reason : (f as PromiseRejectedResult).reason;
  }
  const cluster = c.value;
  const fleet = f.value;
  await installBerth(cluster, NS);
  const saConfig = await serviceAccountKubeconfig(cluster, NS, "berth-operator");
  const sim = new ClusterSim(cluster.kc);
  await sim.start();
  const agents = new SimAgents(fleet);
  agents.start(300);
  const t = (await fleet.api("POST", "/api/v1/tokens", {
    kind: "api",
    role: "admin",
    name: "k8s-operator",
  })) as {
    token: string;
  };
  const operatorToken = join(cluster.dir, "fleet-token");
  writeFileSync(operatorToken, t.token);
  return {
    cluster,
    fleet,
    sim,
    agents,
    saConfig,
    operatorToken,
    custom: cluster.kc.makeApiClient(CustomObjectsApi),
    coordination: cluster.kc.makeApiClient(CoordinationV1Api),
  };
}

export async function stopHarness(h: Harness | undefined): Promise<void> {
  if (!h) return;
  h.agents.stop();
  await h.sim.stop();
  await h.fleet.stop();
  await h.cluster.stop();
}

export interface OperatorProcess {
  child: ChildProcess;
  log: () => string;
  stats: string;
  exited: Promise<number | null>;
}

/** `berth operator` against the cluster as the operator's ServiceAccount, quick timings for tests. */
export function startOperator(h: Harness, identity: string): OperatorProcess {
  const stats = join(h.cluster.dir, `${identity}.stats.json`);
  const child = spawn(
    BERTH,
    [
      "operator",
      "--kubeconfig",
      h.saConfig,
      "--namespace",
      NS,
      "--identity",
      identity,
      "--server",
      h.fleet.url,
      "--token-file",
      h.operatorToken,
      "--lease-duration",
      "4s",
      "--poll",
      "300ms",
      "--resync",
      "1s",
      "--evict-retry",
      "500ms",
      "--stats",
      stats,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: process.env },
  );
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  process.on("exit", () => child.kill("SIGKILL"));
  return { child, log: () => log, stats, exited };
}

export async function stopOperator(p: OperatorProcess | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode) return;
  p.child.kill("SIGTERM");
  await p.exited;
}

const PLAN = { group: "berth.dev", version: "v1alpha1", plural: "updateplans" };

export async function createPlan(
  h: Pick<Harness, "custom">,
  name: string,
  spec: UpdatePlanSpec,
): Promise<void> {
  await h.custom.createClusterCustomObject({
    ...PLAN,
    body: { apiVersion: "berth.dev/v1alpha1", kind: "UpdatePlan", metadata: { name }, spec },
  });
}

export async function getPlan(h: Pick<Harness, "custom">, name: string): Promise<UpdatePlan> {
  return (await h.custom.getClusterCustomObject({ ...PLAN, name })) as UpdatePlan;
}

export async function patchPlanSpec(
  h: Pick<Harness, "custom">,
  name: string,
  spec: Partial<UpdatePlanSpec>,
): Promise<void> {
  const { MERGE_PATCH } = await import("../../src/k8s/kube.ts");
  await h.custom.patchClusterCustomObject({ ...PLAN, name, body: { spec } }, MERGE_PATCH);
}

/** Polls `check` until it returns a value (not undefined/false), or fails with `what` and the last state. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  describe?: () => Promise<string> | string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${describe ? `: ${await describe()}` : ""}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Nodes for a test: Node objects (Ready) with a pool label, each with an agent on the old release. */
export async function addNodes(h: Harness, names: string[], pool: string): Promise<void> {
  await h.sim.addNodes(names, { "berth.dev/pool": pool });
  await Promise.all(names.map((n) => h.agents.add(n, OLD, (ready) => h.sim.setReady(n, ready))));
}

/** The fleet server's word on a node (the oracle for releases and jobs). */
export async function fleetNode(
  h: Harness,
  hostname: string,
): Promise<{ id: string; release: string | null; update: { state: string } }> {
  const page = (await h.fleet.api("GET", `/api/v1/nodes?hostname=${hostname}`)) as {
    nodes: { id: string; release: string | null; update: { state: string } }[];
  };
  return page.nodes[0]!;
}

export async function fleetJobs(h: Harness, hostname: string): Promise<{ kind: string; state: string }[]> {
  const n = await fleetNode(h, hostname);
  const r = (await h.fleet.api("GET", `/api/v1/jobs?nodeId=${n.id}`)) as {
    jobs: { kind: string; state: string }[];
  };
  return r.jobs;
}

export async function lockLeases(h: Harness): Promise<string[]> {
  const l = await h.coordination.listNamespacedLease({
    namespace: NS,
    labelSelector: "berth.dev/node-lock=true",
  });
  return l.items.map((x) => x.metadata!.name!);
}

export function summary(p: UpdatePlan): string {
  const s = p.status;
  return `${s?.phase} ${s?.message} [${(s?.nodes ?? []).map((n) => `${n.name}:${n.phase}${n.message ? `(${n.message})` : ""}`).join(" ")}]`;
}
