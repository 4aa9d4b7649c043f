// The per-node slot: one coordination.k8s.io Lease per node being updated, in the operator's namespace.
// Creating it is the atomic "take" (a second create is refused with 409), so two plans, or two operator
// replicas for a moment, never work on one node. The Lease records what the holder must know to carry on
// after a restart (which plan, whether the node was cordoned before, the fleet job) and is renewed while
// held; a Lease whose node is gone, or whose holder stopped renewing, is released by the operator.

import type { V1Lease } from "@kubernetes/client-node";
import { type Kube, MERGE_PATCH, microTime, statusCode, timeOf } from "./kube.ts";
import {
  LOCK_JOB_ANNOTATION,
  LOCK_LABEL,
  LOCK_NODE_ANNOTATION,
  LOCK_PLAN_LABEL,
  LOCK_PLAN_UID_ANNOTATION,
  LOCK_WAS_UNSCHEDULABLE_ANNOTATION,
  lockName,
} from "./names.ts";

export interface Lock {
  name: string;
  /** The Lease object's uid: a Lease made again under the same name is another lock. */
  uid: string;
  node: string;
  plan: string;
  planUid: string;
  holder: string;
  wasUnschedulable: boolean;
  job?: string;
  renewed?: Date;
  durationMs: number;
}

export const HOLDER_PREFIX = "updateplan/";

/** What a lock Lease says, or undefined when it is not one of ours. */
export function lockOf(lease: V1Lease): Lock | undefined {
  const md = lease.metadata;
  const a = md?.annotations ?? {};
  const node = a[LOCK_NODE_ANNOTATION];
  if (!md?.name || !node || md.labels?.[LOCK_LABEL] !== "true") return undefined;
  return {
    name: md.name,
    uid: md.uid ?? "",
    node,
    plan: md.labels?.[LOCK_PLAN_LABEL] ?? "",
    planUid: a[LOCK_PLAN_UID_ANNOTATION] ?? "",
    holder: lease.spec?.holderIdentity ?? "",
    wasUnschedulable: a[LOCK_WAS_UNSCHEDULABLE_ANNOTATION] === "true",
    job: a[LOCK_JOB_ANNOTATION] || undefined,
    renewed: timeOf(lease.spec?.renewTime) ?? timeOf(lease.spec?.acquireTime),
    durationMs: (lease.spec?.leaseDurationSeconds ?? 0) * 1000,
  };
}

/** A lock nobody renewed within its duration (or that never said when it was renewed). */
export function lockExpired(l: Lock, now: Date): boolean {
  return !l.renewed || l.renewed.getTime() + l.durationMs < now.getTime();
}

export class Locks {
  private readonly kube: Kube;
  private readonly namespace: string;
  readonly durationMs: number;

  constructor(kube: Kube, namespace: string, durationMs: number) {
    this.kube = kube;
    this.namespace = namespace;
    this.durationMs = durationMs;
  }

  /** Takes the node's slot for a plan; undefined when someone already holds it. */
  async take(
    node: string,
    plan: { name: string; uid: string },
    wasUnschedulable: boolean,
  ): Promise<Lock | undefined> {
    const now = microTime(new Date());
    const body = {
      metadata: {
        name: lockName(node),
        namespace: this.namespace,
        labels: { [LOCK_LABEL]: "true", [LOCK_PLAN_LABEL]: plan.name },
        annotations: {
          [LOCK_NODE_ANNOTATION]: node,
          [LOCK_PLAN_UID_ANNOTATION]: plan.uid,
          [LOCK_WAS_UNSCHEDULABLE_ANNOTATION]: String(wasUnschedulable),
        },
      },
      spec: {
        holderIdentity: `${HOLDER_PREFIX}${plan.name}`,
        leaseDurationSeconds: Math.max(1, Math.round(this.durationMs / 1000)),
        acquireTime: now,
        renewTime: now,
      },
    };
    try {
      const made = await this.kube.coordination.createNamespacedLease({
        namespace: this.namespace,
        body: body as never,
      });
      return lockOf(made);
    } catch (e) {
      if (statusCode(e) === 409) return undefined;
      throw e;
    }
  }

  /** Renews a held lock, recording the fleet job when given (one request either way). */
  async renew(l: Lock, job?: string): Promise<void> {
    const patch = {
      metadata: job ? { annotations: { [LOCK_JOB_ANNOTATION]: job } } : {},
      spec: { renewTime: microTime(new Date()), holderIdentity: l.holder || `${HOLDER_PREFIX}${l.plan}` },
    };
    await this.kube.coordination.patchNamespacedLease(
      { namespace: this.namespace, name: l.name, body: patch },
      MERGE_PATCH,
    );
    if (job) l.job = job;
    l.renewed = new Date();
  }

  /**
   * Lease uids given back whose deletion the watch may not have shown yet: they are no one's. The
   * operator forgets each when the watch reports its deletion.
   */
  readonly released = new Set<string>();

  /** Gives the slot back; a lock already gone is fine. */
  async release(l: Pick<Lock, "name" | "uid">): Promise<void> {
    try {
      await this.kube.coordination.deleteNamespacedLease({
        namespace: this.namespace,
        name: l.name,
        body: l.uid ? { preconditions: { uid: l.uid } } : {},
      });
    } catch (e) {
      const code = statusCode(e);
      // 404: gone already; 409: the precondition failed, the name now belongs to a newer lock.
      if (code !== 404 && code !== 409) throw e;
    }
    if (l.uid) this.released.add(l.uid);
  }

  /** The lock a cached Lease is, unless it was given back already. */
  live(lease: V1Lease): Lock | undefined {
    const l = lockOf(lease);
    return l && !this.released.has(l.uid) ? l : undefined;
  }
}
