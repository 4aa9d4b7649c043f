// The parts of a cluster that the envtest-style API server does not run, played by the test through
// the API as the README of ../shared/tools/kube-apiserver says: the kubelet (Nodes and their Ready
// condition, pods becoming Running and Ready, terminating pods finishing), the ReplicaSet controller and
// the scheduler (an evicted pod is replaced on a schedulable, Ready node), and the disruption controller
// (each PDB's status rewritten as pods go and come back, with the API server's own bookkeeping of
// disrupted pods respected, and with optimistic concurrency so an eviction is never double-counted).
// It also keeps the records the tests judge by: how many nodes were cordoned at once, and how few
// healthy pods each PDB ever had.

import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  makeInformer,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";
import { MERGE_PATCH } from "../../src/k8s/kube.ts";
import { selectorMatches } from "../../src/k8s/selector.ts";

type Informer<T> = ReturnType<typeof makeInformer<T & { metadata?: { name?: string } }>>;

interface Pdb {
  namespace: string;
  name: string;
  selector: Record<string, string>;
  minAvailable: number;
  /** The fewest healthy pods seen at any moment. */
  minHealthy: number;
  writing: Promise<void>;
  dirty: boolean;
}

interface Rs {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  replicas: number;
  serial: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const isReady = (p: V1Pod) =>
  !p.metadata?.deletionTimestamp &&
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

export class ClusterSim {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  /** Most nodes unschedulable at once, as seen on the Node watch. */
  maxCordoned = 0;
  private pods?: Informer<V1Pod>;
  private nodes?: Informer<V1Node>;
  private readonly pdbs: Pdb[] = [];
  private readonly rsets = new Map<string, Rs>();
  private stopped = false;
  /** Milliseconds before a new pod is Running and Ready. */
  readyDelayMs: number;
  private readonly kc: KubeConfig;

  constructor(kc: KubeConfig, o: { readyDelayMs?: number } = {}) {
    this.kc = kc;
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.readyDelayMs = o.readyDelayMs ?? 300;
  }

  async start(): Promise<void> {
    this.pods = makeInformer(this.kc, "/api/v1/pods", () => this.core.listPodForAllNamespaces());
    this.nodes = makeInformer(this.kc, "/api/v1/nodes", () => this.core.listNode());
    const restart = (inf: { start: () => Promise<void> }) => () => {
      if (!this.stopped) setTimeout(() => inf.start().catch(() => {}), 500);
    };
    this.pods.on("error", restart(this.pods));
    this.nodes.on("error", restart(this.nodes));
    this.pods.on("update", (p) => this.podChanged(p));
    this.pods.on("add", (p) => this.podChanged(p));
    this.pods.on("delete", (p) => this.podDeleted(p));
    const countCordoned = () => {
      const n = this.nodes!.list().filter((x) => x.spec?.unschedulable).length;
      this.maxCordoned = Math.max(this.maxCordoned, n);
    };
    this.nodes.on("update", countCordoned);
    this.nodes.on("add", countCordoned);
    await this.pods.start();
    await this.nodes.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.pods?.stop();
    await this.nodes?.stop();
  }

  cordoned(): string[] {
    return this.nodes!.list()
      .filter((n) => n.spec?.unschedulable)
      .map((n) => n.metadata!.name!);
  }

  node(name: string): V1Node | undefined {
    return this.nodes?.get(name);
  }

  podsOn(node: string): V1Pod[] {
    return this.pods!.list().filter((p) => p.spec?.nodeName === node);
  }

  /** Whether every pod of the namespace is Running and Ready. Tests wait for it before a drain:
   * the API server evicts a Pending pod without asking its PDB (canIgnorePDB), so a drain that
   * races the kubelet would step past the budget the test means to hold. */
  allReady(namespace: string): boolean {
    const pods = this.pods!.list().filter((p) => p.metadata?.namespace === namespace);
    return pods.length > 0 && pods.every((p) => p.status?.phase === "Running" && isReady(p));
  }

  // ---- the kubelet ---------------------------------------------------------------------------

  async addNodes(names: string[], labels: Record<string, string> = {}): Promise<void> {
    for (const name of names) {
      await this.core.createNode({
        body: { metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } } },
      });
      await this.setReady(name, true);
    }
  }

  /** The Ready condition, written through the status subresource as a kubelet would. */
  async setReady(name: string, ready: boolean): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const condition = {
      type: "Ready",
      status: ready ? "True" : "False",
      reason: ready ? "KubeletReady" : "KubeletNotReady",
      message: ready ? "kubelet is posting ready status" : "rebooting",
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    };
    try {
      await this.core.patchNodeStatus({ name, body: { status: { conditions: [condition] } } }, MERGE_PATCH);
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
  }

  private async markRunning(p: V1Pod): Promise<void> {
    await sleep(this.readyDelayMs);
    if (this.stopped) return;
    try {
      const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      await this.core.patchNamespacedPodStatus({
        name: p.metadata!.name!,
        namespace: p.metadata!.namespace!,
        body: [
          {
            op: "add",
            path: "/status",
            value: {
              phase: "Running",
              conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }],
              startTime: now,
            },
          },
        ],
      });
    } catch {}
  }

  private podChanged(p: V1Pod): void {
    if (this.stopped) return;
    const md = p.metadata!;
    // A terminating pod: its containers stop, the kubelet deletes it for good.
    if (md.deletionTimestamp) {
      this.core
        .deleteNamespacedPod({ name: md.name!, namespace: md.namespace!, gracePeriodSeconds: 0 })
        .catch(() => {});
    } else if (p.spec?.nodeName && !p.status?.phase) void this.markRunning(p);
    else if (p.spec?.nodeName && p.status?.phase === "Pending") void this.markRunning(p);
    this.refreshPdbs();
  }

  private podDeleted(p: V1Pod): void {
    if (this.stopped) return;
    const owner = p.metadata?.ownerReferences?.find((o) => o.controller);
    const rs = owner ? this.rsets.get(`${p.metadata!.namespace}/${owner.name}`) : undefined;
    if (rs) void this.replace(rs);
    this.refreshPdbs();
  }

  // ---- ReplicaSet controller and scheduler -------------------------------------------------------

  /** A ReplicaSet object (inert: no controller runs) and its pods spread over `onNodes`. */
  async addReplicaSet(
    namespace: string,
    name: string,
    replicas: number,
    onNodes: string[],
    labels: Record<string, string>,
  ): Promise<void> {
    const made = await this.apps.createNamespacedReplicaSet({
      namespace,
      body: {
        metadata: { name, labels },
        spec: {
          replicas,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: "app", image: "registry.invalid/app" }] },
          },
        },
      },
    });
    const rs: Rs = { namespace, name, uid: made.metadata!.uid!, labels, replicas, serial: 0 };
    this.rsets.set(`${namespace}/${name}`, rs);
    for (let i = 0; i < replicas; i++) await this.createPod(rs, onNodes[i % onNodes.length]!);
  }

  private async createPod(rs: Rs, node: string): Promise<void> {
    await this.core.createNamespacedPod({
      namespace: rs.namespace,
      body: {
        metadata: {
          name: `${rs.name}-${rs.serial++}`,
          labels: rs.labels,
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: rs.name,
              uid: rs.uid,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: { nodeName: node, containers: [{ name: "app", image: "registry.invalid/app" }] },
      },
    });
  }

  /** The scheduler's choice: a Ready, schedulable node with the fewest of this set's pods. */
  private async replace(rs: Rs): Promise<void> {
    const pods = this.pods!.list().filter(
      (p) =>
        p.metadata?.namespace === rs.namespace &&
        selectorMatches({ matchLabels: rs.labels }, p.metadata?.labels) &&
        !p.metadata?.deletionTimestamp,
    );
    if (pods.length >= rs.replicas) return;
    const nodes = this.nodes!.list().filter(
      (n) =>
        !n.spec?.unschedulable &&
        n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
    if (!nodes.length) return;
    const load = (n: string) => pods.filter((p) => p.spec?.nodeName === n).length;
    nodes.sort(
      (a, b) =>
        load(a.metadata!.name!) - load(b.metadata!.name!) ||
        a.metadata!.name!.localeCompare(b.metadata!.name!),
    );
    await this.createPod(rs, nodes[0]!.metadata!.name!).catch(() => {});
  }

  /** Pods a DaemonSet (inert) owns, one per node: drains leave them. */
  async addDaemonSetPods(namespace: string, name: string, nodes: string[]): Promise<void> {
    const labels = { app: name };
    const ds = await this.apps.createNamespacedDaemonSet({
      namespace,
      body: {
        metadata: { name },
        spec: {
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: "d", image: "registry.invalid/d" }] },
          },
        },
      },
    });
    for (const node of nodes)
      await this.core.createNamespacedPod({
        namespace,
        body: {
          metadata: {
            name: `${name}-${node}`,
            labels,
            ownerReferences: [
              { apiVersion: "apps/v1", kind: "DaemonSet", name, uid: ds.metadata!.uid!, controller: true },
            ],
          },
          spec: { nodeName: node, containers: [{ name: "d", image: "registry.invalid/d" }] },
        },
      });
  }

  /** A static pod's mirror, as a kubelet posts it: drains leave it. */
  async addMirrorPod(namespace: string, node: string): Promise<void> {
    await this.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: `static-${node}`, annotations: { "kubernetes.io/config.mirror": "checksum" } },
        spec: { nodeName: node, containers: [{ name: "s", image: "registry.invalid/s" }] },
      },
    });
  }

  // ---- disruption controller -------------------------------------------------------------------

  async addPdb(
    namespace: string,
    name: string,
    selector: Record<string, string>,
    minAvailable: number,
  ): Promise<void> {
    await this.custom.createNamespacedCustomObject({
      group: "policy",
      version: "v1beta1",
      namespace,
      plural: "poddisruptionbudgets",
      body: {
        apiVersion: "policy/v1beta1",
        kind: "PodDisruptionBudget",
        metadata: { name },
        spec: { minAvailable, selector: { matchLabels: selector } },
      },
    });
    const pdb: Pdb = {
      namespace,
      name,
      selector,
      minAvailable,
      minHealthy: Number.POSITIVE_INFINITY,
      writing: Promise.resolve(),
      dirty: false,
    };
    this.pdbs.push(pdb);
    await this.writePdb(pdb);
  }

  minHealthy(namespace: string, name: string): number {
    return this.pdbs.find((p) => p.namespace === namespace && p.name === name)!.minHealthy;
  }

  /** The disruption controller reacts (pods changed, or a PDB spec did). */
  refreshPdbs(): void {
    for (const pdb of this.pdbs) {
      const healthy = this.healthyPods(pdb, {}).length;
      pdb.minHealthy = Math.min(pdb.minHealthy, healthy);
      if (pdb.dirty) continue;
      pdb.dirty = true;
      pdb.writing = pdb.writing.then(async () => {
        pdb.dirty = false;
        await this.writePdb(pdb);
      });
    }
  }

  private healthyPods(pdb: Pdb, disrupted: Record<string, unknown>): V1Pod[] {
    return this.pods!.list().filter(
      (p) =>
        p.metadata?.namespace === pdb.namespace &&
        selectorMatches({ matchLabels: pdb.selector }, p.metadata?.labels) &&
        isReady(p) &&
        !(p.metadata!.name! in disrupted),
    );
  }

  /** The disruption controller's status, written with the PDB's resourceVersion (409: read again). */
  private async writePdb(pdb: Pdb): Promise<void> {
    const api = {
      group: "policy",
      version: "v1beta1",
      namespace: pdb.namespace,
      plural: "poddisruptionbudgets",
      name: pdb.name,
    };
    for (let i = 0; i < 20 && !this.stopped; i++) {
      const cur = (await this.custom.getNamespacedCustomObject(api)) as {
        metadata: { generation: number; resourceVersion: string };
        spec: { minAvailable: number };
        status?: { disruptedPods?: Record<string, string> };
      };
      pdb.minAvailable = cur.spec.minAvailable;
      // The API server records each eviction it allowed; such a pod is not healthy, even before its
      // deletion shows, and stays recorded until it is gone or terminating.
      const disrupted: Record<string, string> = {};
      for (const [pod, at] of Object.entries(cur.status?.disruptedPods ?? {})) {
        const p = this.pods!.get(pod, pdb.namespace);
        if (p && !p.metadata?.deletionTimestamp) disrupted[pod] = at;
      }
      const healthy = this.healthyPods(pdb, disrupted).length;
      const expected = this.pods!.list().filter(
        (p) =>
          p.metadata?.namespace === pdb.namespace &&
          selectorMatches({ matchLabels: pdb.selector }, p.metadata?.labels),
      ).length;
      const body = {
        ...cur,
        status: {
          observedGeneration: cur.metadata.generation,
          disruptionsAllowed: Math.max(0, healthy - pdb.minAvailable),
          currentHealthy: healthy,
          desiredHealthy: pdb.minAvailable,
          expectedPods: expected,
          ...(Object.keys(disrupted).length ? { disruptedPods: disrupted } : {}),
        },
      };
      try {
        await this.custom.replaceNamespacedCustomObjectStatus({ ...api, body });
        return;
      } catch (e) {
        if ((e as { code?: number }).code !== 409) throw e;
      }
    }
  }
}
