// berth operator rolling one UpdatePlan over 1,000 simulated nodes, against a real kube-apiserver
// (v1.20.2, ../shared/tools/kube-apiserver) and a real fleet server (`berth server`, SQLite): time to
// plan (plan created -> first node cordoned) and to finish, Kubernetes API requests per node (watches
// excluded; goal <= 10), and the operator's peak memory. Peer, same run, same API server: `kubectl drain`
// then `kubectl uncordon` on nodes of the same shape (the manual way a platform team rolls a node),
// its requests per node counted from kubectl's own request log (-v=6), and its peak memory.
//
// Each node carries one pod (a ReplicaSet's, evicted by the drain). Simulated agents enrol with the
// fleet server and answer update-apply jobs: "downloading", "applied", "rebooting" (the Node goes
// NotReady, then Ready), then the new release and "good". To keep 1,000 simulated agents from flooding
// this 2-core machine, an agent asks for work only while its Node is cordoned (a real agent asks on each
// report); the operator does not know this.
//
//   node bench/operator.ts [NODES] [MAX_UNAVAILABLE]     default 1000 and "10%"

import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { mapLimit, run } from "../test/helpers.ts";
import { installBerth, serviceAccountKubeconfig, startCluster } from "../test/k8s/cluster.ts";
import { SimAgents, startFleet } from "../test/k8s/fleet.ts";
import { ClusterSim } from "../test/k8s/kubelet-sim.ts";
import { createPlan, getPlan, NEW, NS, OLD } from "../test/k8s/operator-harness.ts";
import { printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const NODES = Number(process.argv[2] ?? 1000);
const MAX_UNAVAILABLE = process.argv[3] ?? "10%";
const PEER_NODES = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => console.error(`[bench/operator] ${s}`);

/** The API server's own request counters (apiserver_request_total), watches left out. */
async function serverRequests(
  cluster: Awaited<ReturnType<typeof startCluster>>,
): Promise<Map<string, number>> {
  const r = await cluster.kubectl(["get", "--raw", "/metrics"]);
  const out = new Map<string, number>();
  for (const line of r.stdout.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels.verb === "WATCH") continue;
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ""}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.split(" ").at(-1)));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

function peakRssKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

const cluster = await startCluster();
const fleet = await startFleet();
const sim = new ClusterSim(cluster.kc, { readyDelayMs: 100 });
try {
  await installBerth(cluster, NS);
  const saConfig = await serviceAccountKubeconfig(cluster, NS, "berth-operator");
  await sim.start();
  const core = cluster.kc.makeApiClient(CoreV1Api);
  const custom = cluster.kc.makeApiClient(CustomObjectsApi);
  const names = Array.from({ length: NODES }, (_, i) => `node-${String(i).padStart(4, "0")}`);
  const peers = Array.from({ length: PEER_NODES }, (_, i) => `peer-${i}`);
  log(`making ${NODES + PEER_NODES} Nodes, one pod each`);
  await core.createNamespace({ body: { metadata: { name: "load" } } });
  const owner = {
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    name: "load",
    uid: "00000000-0000-0000-0000-000000000001",
    controller: true,
  };
  await mapLimit([...names, ...peers], 16, async (n) => {
    await sim.addNodes([n], { "berth.dev/pool": n.startsWith("peer") ? "peer" : "bench" });
    await core.createNamespacedPod({
      namespace: "load",
      body: {
        metadata: { name: `app-${n}`, labels: { app: "load" }, ownerReferences: [owner] },
        spec: { nodeName: n, containers: [{ name: "app", image: "registry.invalid/app" }] },
      },
    });
  });
  log(`enrolling ${NODES} simulated agents`);
  const agents = new SimAgents(fleet);
  await mapLimit(names, 16, (n) => agents.add(n, OLD, (ready) => sim.setReady(n, ready)));
  let polling = true;
  const pollLoop = (async () => {
    while (polling) {
      const busy = sim.cordoned().filter((n) => agents.agents.has(n));
      await mapLimit(busy, 32, (n) =>
        agents
          .get(n)
          .poll()
          .catch(() => {}),
      );
      await sleep(300);
    }
  })();
  const token = (await fleet.api("POST", "/api/v1/tokens", { kind: "api", role: "admin" })) as {
    token: string;
  };
  const tokenFile = join(cluster.dir, "fleet-token");
  writeFileSync(tokenFile, token.token);

  // ---- peer: kubectl drain + uncordon, node by node ----------------------------------------------
  let peerRequests = 0;
  let peerDiscovery = 0;
  let peerPeak = 0;
  const tp = performance.now();
  for (const n of peers) {
    for (const args of [
      ["drain", n, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s", "-v=6"],
      ["uncordon", n, "-v=6"],
    ]) {
      // Not spawnSync: the simulated kubelet in this process must go on finishing evicted pods.
      const r = await run("/usr/bin/time", [
        "-f",
        "%M",
        "kubectl",
        "--kubeconfig",
        cluster.kubeconfig,
        ...args,
      ]);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr.slice(-400)}`);
      // -v=6 logs one line per HTTP request ("GET https://... 200 OK in 3 milliseconds"). Discovery
      // (/api, /apis, /api/v1, /apis/GROUP/VERSION; cached by kubectl between runs) is counted apart.
      for (const l of r.stderr.split("\n")) {
        const m = / (GET|POST|PUT|PATCH|DELETE) https?:\/\/[^/]+(\/[^? ]*)/.exec(l);
        if (!m) continue;
        if (/^\/(api|apis)(\/v1|\/[^/]+\/[^/]+)?\/?$/.test(m[2]!)) peerDiscovery++;
        else peerRequests++;
      }
      peerPeak = Math.max(peerPeak, Number(r.stderr.trim().split("\n").at(-1)));
    }
  }
  const peerSecondsPerNode = (performance.now() - tp) / 1000 / PEER_NODES;

  // ---- berth operator -------------------------------------------------------------------------
  const stats = join(cluster.dir, "operator-stats.json");
  const operator = spawn(
    BERTH,
    [
      "operator",
      "--kubeconfig",
      saConfig,
      "--namespace",
      NS,
      "--identity",
      "bench",
      "--server",
      fleet.url,
      "--token-file",
      tokenFile,
      "--poll",
      "1s",
      "--stats",
      stats,
      "-q",
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  // Time to plan starts once the operator leads and watches (its start-up is not the plan's).
  const coordination = cluster.kc.makeApiClient(CoordinationV1Api);
  for (;;) {
    const lease = await coordination
      .readNamespacedLease({ namespace: NS, name: "berth-operator-leader" })
      .catch(() => undefined);
    if (lease?.spec?.holderIdentity === "bench") break;
    await sleep(200);
  }
  await sleep(1000);
  const before = await serverRequests(cluster);
  const t0 = performance.now();
  await createPlan({ custom }, "bench", {
    target: { osRelease: NEW },
    nodeSelector: { matchLabels: { "berth.dev/pool": "bench" } },
    maxUnavailable: /%$/.test(MAX_UNAVAILABLE) ? MAX_UNAVAILABLE : Number(MAX_UNAVAILABLE),
  });
  let firstCordon = 0;
  let peakRss = 0;
  for (;;) {
    if (!firstCordon && sim.cordoned().length) firstCordon = performance.now() - t0;
    peakRss = Math.max(peakRss, peakRssKiB(operator.pid!));
    const p = await getPlan({ custom }, "bench").catch(() => undefined);
    if (p?.status?.phase === "Completed" || p?.status?.phase === "Paused") {
      if (p.status.succeeded !== NODES) throw new Error(`plan ended ${p.status.phase}: ${p.status.message}`);
      break;
    }
    await sleep(500);
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = await serverRequests(cluster);
  peakRss = Math.max(peakRss, peakRssKiB(operator.pid!));
  operator.kill("SIGTERM");
  await new Promise((r) => operator.once("exit", r));
  const own = JSON.parse(readFileSync(stats, "utf8")) as {
    kubernetes: Record<string, number>;
    total: number;
  };
  // The operator's own count, checked against the API server's for what only the operator does.
  for (const [ours, theirs] of [
    ["POST pods/eviction", "POST pods/eviction"],
    ["PATCH nodes", "PATCH nodes"],
    ["DELETE leases", "DELETE leases"],
    ["PATCH updateplans/status", "PATCH updateplans/status"],
  ] as const) {
    const server = delta(after, before, theirs);
    if ((own.kubernetes[ours] ?? 0) > server)
      throw new Error(`${ours}: the operator counted ${own.kubernetes[ours]}, the API server ${server}`);
  }
  const leader = (own.kubernetes["GET leases"] ?? 0) + (own.kubernetes["PUT leases"] ?? 0);
  const perNode = (own.total - leader) / NODES;
  log(`operator requests: ${JSON.stringify(own.kubernetes)}`);

  console.log(
    `berth operator: ${NODES} nodes, maxUnavailable ${MAX_UNAVAILABLE}, one pod per node; ${own.total} Kubernetes requests (${leader} of them leader election, left out per node); peak RSS ${(peakRss / 1024).toFixed(0)} MiB`,
  );
  console.log(
    `kubectl drain + uncordon, ${PEER_NODES} nodes one after the other: ${peerRequests} requests, and ${peerDiscovery} discovery requests (left out)`,
  );
  printTable("operator: one plan over simulated nodes (kubectl drain + uncordon per node as the peer)", [
    {
      metric: "API requests per node (watches excluded)",
      berth: perNode,
      peer: peerRequests / PEER_NODES,
      peerName: "kubectl drain+uncordon",
      unit: "",
      higherIsBetter: false,
    },
    {
      metric: "wall time per node",
      berth: seconds / NODES,
      peer: peerSecondsPerNode,
      peerName: "kubectl drain+uncordon",
      unit: "s",
      higherIsBetter: false,
    },
    {
      metric: "peak memory",
      berth: peakRss / 1024,
      peer: peerPeak / 1024,
      peerName: "kubectl drain (one node)",
      unit: "MiB",
      higherIsBetter: false,
    },
  ]);
  console.log(
    `\ntime to plan (plan created -> first node cordoned): ${(firstCordon / 1000).toFixed(2)} s; whole plan: ${seconds.toFixed(1)} s`,
  );
  console.log(
    `goal: <= 10 API requests per node: ${perNode <= 10 ? "met" : "not met"} (${perNode.toFixed(2)})`,
  );
  polling = false;
  await pollLoop;
  agents.stop();
} finally {
  await sim.stop();
  await fleet.stop();
  await cluster.stop();
}
process.exit(0);
