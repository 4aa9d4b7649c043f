// The names Berth puts into a cluster: the API group of its custom resources, and the labels and
// annotations the operator writes on Nodes and Leases. One place, so manifests, operator and tests agree.

import { createHash } from "node:crypto";
import { BERTH_VERSION } from "../common/version.ts";

export const GROUP = "berth.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const PLAN_KIND = "UpdatePlan";
export const PLAN_PLURAL = "updateplans";

export const DEFAULT_NAMESPACE = "berth-system";
/** The image `berth images build berth` makes (images/berth.yaml): Node 24 and Berth. */
export const DEFAULT_IMAGE = `berth/berth:${BERTH_VERSION}`;

export const OPERATOR_NAME = "berth-operator";
export const AGENT_NAME = "berth-agent";
/** The Secret that holds the fleet server's tokens: `api-token` (operator), `enroll-token` (agent). */
export const FLEET_SECRET = "berth-fleet";
/** The operator's leader-election Lease, in the operator's namespace. */
export const LEADER_LEASE = "berth-operator-leader";
/** Field manager for every write the operator makes, so `kubectl get -o yaml --show-managed-fields` names it. */
export const FIELD_MANAGER = "berth-operator";

/** Per-node lock Leases are named `berth-node-<node name>`. */
export const LOCK_PREFIX = "berth-node-";
/** Labels on a lock Lease: which plan holds it, which node it locks (for the informer's selector). */
export const LOCK_LABEL = `${GROUP}/node-lock`;
export const LOCK_PLAN_LABEL = `${GROUP}/plan`;
/** Annotations on a lock Lease: what the holder had done when it last wrote. */
export const LOCK_NODE_ANNOTATION = `${GROUP}/node`;
export const LOCK_PLAN_UID_ANNOTATION = `${GROUP}/plan-uid`;
export const LOCK_JOB_ANNOTATION = `${GROUP}/job`;
export const LOCK_WAS_UNSCHEDULABLE_ANNOTATION = `${GROUP}/was-unschedulable`;

/** On a Node the operator cordoned: the plan that did, so only it uncordons (an admin's cordon stays). */
export const CORDONED_BY_ANNOTATION = `${GROUP}/cordoned-by`;
/** On a Node: the fleet server's node id, when hostname matching is not wanted (see docs/k8s.md). */
export const FLEET_NODE_ANNOTATION = `${GROUP}/fleet-node-id`;
export const HOSTNAME_LABEL = "kubernetes.io/hostname";

/** The lock Lease of a node; a name too long for an object name is shortened by its digest. */
export function lockName(node: string): string {
  const name = `${LOCK_PREFIX}${node}`;
  if (name.length <= 253) return name;
  return `${LOCK_PREFIX}${createHash("sha256").update(node).digest("hex").slice(0, 40)}`;
}
