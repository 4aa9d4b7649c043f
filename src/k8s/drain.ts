// Cordon and drain, the way `kubectl drain` does them: DaemonSet pods and mirror (static) pods stay,
// pods no controller manages are refused unless forced, every other pod is evicted through the
// Eviction API so the API server enforces PodDisruptionBudgets, and the drain waits until the evicted
// pods are gone. A PDB that refuses an eviction (429) is retried, reported ("blocked by PDB ns/name
// since T") and given up after the plan's timeout, never waited on silently.

import { type V1Node, type V1Pod, Watch } from "@kubernetes/client-node";
import { BerthError } from "../common/errors.ts";
import { type Kube, kubeError, MERGE_PATCH, statusBody, statusCode } from "./kube.ts";
import { CORDONED_BY_ANNOTATION } from "./names.ts";
import { sleep, wakeableSleep } from "./sleep.ts";

export type PodVerdict = "evict" | "skip-daemonset" | "skip-mirror" | "unmanaged" | "terminating";

/** What a drain does with a pod (pure; kubectl drain's filters). */
export function podVerdict(pod: V1Pod): PodVerdict {
  if (pod.metadata?.annotations?.["kubernetes.io/config.mirror"]) return "skip-mirror";
  const controller = pod.metadata?.ownerReferences?.find((r) => r.controller);
  if (controller?.kind === "DaemonSet") return "skip-daemonset";
  if (pod.metadata?.deletionTimestamp) return "terminating";
  const finished = pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
  if (!controller && !finished) return "unmanaged";
  return "evict";
}

/** "The disruption budget web-pdb needs 2 healthy pods..." -> "web-pdb" (the API server's wording). */
export function blockingBudget(e: unknown): string | undefined {
  const body = statusBody(e);
  for (const c of body.details?.causes ?? []) {
    const m = /disruption budget (\S+)/i.exec(c.message ?? "");
    if (m) return m[1];
  }
  return undefined;
}

export interface Blocked {
  /** namespace/name of the PDB. */
  budget: string;
  pod: string;
  since: Date;
}

export interface DrainOptions {
  force: boolean;
  gracePeriodSeconds?: number;
  /** How long evictions may be refused before the drain gives up (returns blocked). */
  blockedTimeoutMs: number;
  podDeletionTimeoutMs: number;
  retryMs: number;
  signal: AbortSignal;
  /** Called when a PDB first refuses an eviction, and with undefined once evictions go through again. */
  onBlocked?: (b: Blocked | undefined) => void;
}

export type DrainResult = { drained: true; evicted: number } | { drained: false; blocked: Blocked };

const podKey = (p: V1Pod) => `${p.metadata?.namespace}/${p.metadata?.name}`;

/** Marks the node unschedulable for `plan`; a node already cordoned by someone else is left as it is. */
export async function cordon(kube: Kube, node: V1Node, plan: string): Promise<void> {
  if (node.spec?.unschedulable) return;
  await kube.core.patchNode(
    {
      name: node.metadata!.name!,
      body: { spec: { unschedulable: true }, metadata: { annotations: { [CORDONED_BY_ANNOTATION]: plan } } },
    },
    MERGE_PATCH,
  );
}

/** Makes the node schedulable again, but only if `plan` cordoned it. */
export async function uncordon(kube: Kube, node: V1Node, plan: string): Promise<void> {
  if (node.metadata?.annotations?.[CORDONED_BY_ANNOTATION] !== plan) return;
  await kube.core.patchNode(
    {
      name: node.metadata!.name!,
      body: { spec: { unschedulable: null }, metadata: { annotations: { [CORDONED_BY_ANNOTATION]: null } } },
    },
    MERGE_PATCH,
  );
}

/**
 * Evicts what must go from the node and waits for it to be gone. Deletions are followed on a watch of
 * the node's pods (no requests; see DeletionWatch).
 */
export async function drain(kube: Kube, nodeName: string, o: DrainOptions): Promise<DrainResult> {
  // The watch opens first, at "now", and the list follows: a deletion after the list is on the watch,
  // one before it is not in the list. (Watching from the list's resourceVersion instead can be refused
  // as too old by a busy API server's watch cache.)
  const waiting = new Map<string, string>();
  const gone = new Set<string>();
  const watcher = new DeletionWatch(kube, nodeName, undefined, waiting, gone);
  await watcher.open();
  try {
    const list = await kube.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` });
    const pods = list.items.filter((p) => {
      const v = podVerdict(p);
      return v === "evict" || v === "unmanaged" || v === "terminating";
    });
    const unmanaged = pods.filter((p) => podVerdict(p) === "unmanaged");
    if (unmanaged.length && !o.force)
      throw new BerthError(
        `pods not managed by a controller: ${unmanaged.map(podKey).join(", ")} (set spec.drain.force to evict them)`,
      );
    if (!pods.length) return { drained: true, evicted: 0 };
    for (const p of pods) waiting.set(podKey(p), p.metadata?.uid ?? "");
    let blocked: Blocked | undefined;
    const evictOne = async (pod: V1Pod): Promise<Blocked | undefined> => {
      if (podVerdict(pod) === "terminating") return undefined;
      for (;;) {
        if (o.signal.aborted) return undefined;
        try {
          await kube.core.createNamespacedPodEviction({
            name: pod.metadata!.name!,
            namespace: pod.metadata!.namespace!,
            body: {
              apiVersion: `policy/${kube.evictionVersion}`,
              kind: "Eviction",
              metadata: { name: pod.metadata!.name!, namespace: pod.metadata!.namespace! },
              ...(o.gracePeriodSeconds === undefined
                ? {}
                : { deleteOptions: { gracePeriodSeconds: o.gracePeriodSeconds } }),
            },
          });
          if (blocked?.pod === podKey(pod)) {
            blocked = undefined;
            o.onBlocked?.(undefined);
          }
          return undefined;
        } catch (e) {
          const code = statusCode(e);
          if (code === 404) {
            gone.add(podKey(pod));
            return undefined;
          }
          if (code !== 429) throw new BerthError(`evicting ${podKey(pod)}: ${kubeError(e)}`);
          const name = blockingBudget(e);
          if (!name) {
            // 429 without a DisruptionBudget cause: the server's own throttling. Ask again shortly.
            await sleep(Math.min(o.retryMs, 1000), o.signal);
            continue;
          }
          const budget = `${pod.metadata!.namespace}/${name}`;
          if (!blocked) {
            blocked = { budget, pod: podKey(pod), since: new Date() };
            o.onBlocked?.(blocked);
          }
          if (Date.now() - blocked.since.getTime() >= o.blockedTimeoutMs) return blocked;
          await sleep(o.retryMs, o.signal);
        }
      }
    };
    // One pod at a time: a PDB then sees each disruption before the next eviction is asked for, and a
    // blocked pod keeps the pods after it on the node (nothing more is disrupted than must be).
    let evicted = 0;
    for (const pod of pods) {
      const b = await evictOne(pod);
      if (b) return { drained: false, blocked: b };
      if (o.signal.aborted) throw new BerthError("drain interrupted");
      evicted++;
    }
    await waitGone(waiting, watcher, o);
    return { drained: true, evicted };
  } finally {
    watcher.stop();
  }
}

/**
 * Follows deletions of the pods a drain waits for on a watch of the node's pods. A watch that ends (the
 * client's 30 s idle timeout, a dropped connection) is opened again from the last resourceVersion seen;
 * only when that is too old (410) or the watch fails is the node's pod list read again (one request).
 */
class DeletionWatch {
  private rv: string | undefined;
  private ctl?: AbortController;
  private stopped = false;
  private relist = false;
  private notify: () => void = () => {};
  private readonly kube: Kube;
  private readonly nodeName: string;
  private readonly waiting: Map<string, string>;
  readonly gone: Set<string>;

  constructor(
    kube: Kube,
    nodeName: string,
    rv: string | undefined,
    waiting: Map<string, string>,
    gone: Set<string>,
  ) {
    this.kube = kube;
    this.nodeName = nodeName;
    this.rv = rv;
    this.waiting = waiting;
    this.gone = gone;
  }

  async open(): Promise<void> {
    if (this.stopped) return;
    try {
      this.ctl = await new Watch(this.kube.kc).watch(
        "/api/v1/pods",
        {
          fieldSelector: `spec.nodeName=${this.nodeName}`,
          resourceVersion: this.rv,
          allowWatchBookmarks: true,
        },
        (type: string, obj: V1Pod & { code?: number }) => {
          if (type === "ERROR") {
            if (obj.code === 410) this.relist = true;
            return;
          }
          if (obj.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
          if (type !== "DELETED") return;
          const key = podKey(obj);
          if (this.waiting.get(key) === obj.metadata?.uid) {
            this.gone.add(key);
            this.notify();
          }
        },
        (err: { name?: string } | null) => {
          this.ctl = undefined;
          if (err && err.name !== "TimeoutError") this.relist = true;
          this.again();
        },
      );
    } catch {
      this.relist = true;
      this.again();
    }
  }

  private again(): void {
    if (this.stopped) return;
    // Without a resourceVersion seen, a new watch would start at "now" and could miss a deletion.
    if (!this.rv) this.relist = true;
    setTimeout(() => void this.reopen(), this.relist ? 1000 : 50).unref();
  }

  private async reopen(): Promise<void> {
    if (this.stopped) return;
    if (this.relist) {
      try {
        const list = await this.kube.core.listPodForAllNamespaces({
          fieldSelector: `spec.nodeName=${this.nodeName}`,
        });
        const present = new Map(list.items.map((p) => [podKey(p), p.metadata?.uid]));
        for (const [key, uid] of this.waiting) if (present.get(key) !== uid) this.gone.add(key);
        this.rv = list.metadata?.resourceVersion;
        this.relist = false;
        this.notify();
      } catch {
        this.again();
        return;
      }
    }
    await this.open();
  }

  /** Resolves when a pod went, or after `ms`. */
  async change(ms: number, signal: AbortSignal): Promise<void> {
    const nap = wakeableSleep(ms, signal);
    this.notify = nap.wake;
    await nap.done;
  }

  stop(): void {
    this.stopped = true;
    this.ctl?.abort();
  }
}

async function waitGone(
  waiting: Map<string, string>,
  watcher: DeletionWatch,
  o: DrainOptions,
): Promise<void> {
  const deadline = Date.now() + o.podDeletionTimeoutMs;
  while (watcher.gone.size < waiting.size) {
    if (o.signal.aborted) throw new BerthError("drain interrupted");
    if (Date.now() > deadline) {
      const left = [...waiting.keys()].filter((k) => !watcher.gone.has(k));
      throw new BerthError(`evicted pods did not go within the pod deletion timeout: ${left.join(", ")}`);
    }
    await watcher.change(1000, o.signal);
  }
}
