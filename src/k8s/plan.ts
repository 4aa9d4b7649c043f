// The UpdatePlan custom resource: what to roll out (an OS release, a live patch or a hardening profile
// from the signed repository), to which Nodes, how fast, and how it went. The spec schema is TypeBox, so
// the same definition validates in the operator and (through crd.ts) in the API server.

import type { V1ObjectMeta } from "@kubernetes/client-node";
import Type, { type Static } from "typebox";
import Value from "typebox/value";
import { DURATION_PATTERN, parseDuration } from "./duration.ts";
import { type LabelSelector, selectorProblem } from "./selector.ts";
import { CLOCK_PATTERN, DAYS, type Day, type MaintenanceWindow, validTimeZone } from "./windows.ts";

const Duration = (description: string) => Type.String({ pattern: DURATION_PATTERN, description });
const Version = (description: string) =>
  Type.String({ maxLength: 64, pattern: "^[A-Za-z0-9.+~_-]+$", description });
const RepoName = (description: string) =>
  Type.String({ maxLength: 128, pattern: "^[A-Za-z0-9.+_-]+$", description });

const Target = Type.Object(
  {
    osRelease: Type.Optional(Version("an os-release in the signed repository, e.g. 2026.12.2")),
    livePatch: Type.Optional(RepoName("a live patch target in the signed repository")),
    livePatchKind: Type.Optional(
      Type.Union([Type.Literal("lib"), Type.Literal("kernel")], { description: "default lib" }),
    ),
    hardeningProfile: Type.Optional(RepoName("a berth harden profile, e.g. security-mode")),
    reboot: Type.Optional(
      Type.Boolean({ description: "reboot into the new release (osRelease; default true)" }),
    ),
    repository: Type.Optional(
      Type.String({
        maxLength: 1024,
        pattern: "^https?://",
        description: "another repository than the node's",
      }),
    ),
  },
  { additionalProperties: false, description: "exactly one of osRelease, livePatch, hardeningProfile" },
);

const SelectorRequirement = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 317 }),
    operator: Type.Union([
      Type.Literal("In"),
      Type.Literal("NotIn"),
      Type.Literal("Exists"),
      Type.Literal("DoesNotExist"),
    ]),
    values: Type.Optional(Type.Array(Type.String({ maxLength: 63 }))),
  },
  { additionalProperties: false },
);

const Selector = Type.Object(
  {
    matchLabels: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 63 }))),
    matchExpressions: Type.Optional(Type.Array(SelectorRequirement)),
  },
  { additionalProperties: false, description: "which Nodes (every Node when empty)" },
);

const Window = Type.Object(
  {
    days: Type.Optional(
      Type.Array(Type.Unsafe<Day>(Type.Union(DAYS.map((d) => Type.Literal(d)))), {
        description: "every day when absent",
      }),
    ),
    start: Type.String({ pattern: CLOCK_PATTERN, description: "HH:MM" }),
    end: Type.String({ pattern: CLOCK_PATTERN, description: "HH:MM; at or before start: past midnight" }),
    timeZone: Type.Optional(Type.String({ maxLength: 64, description: "IANA name, default UTC" })),
  },
  { additionalProperties: false },
);

const Drain = Type.Object(
  {
    timeout: Type.Optional(
      Duration("how long evictions may be refused by a PodDisruptionBudget before onTimeout (default 10m)"),
    ),
    onTimeout: Type.Optional(
      Type.Union([Type.Literal("Pause"), Type.Literal("Skip")], {
        description: "Pause the plan (default), or Skip the node and move on",
      }),
    ),
    force: Type.Optional(
      Type.Boolean({ description: "also evict pods no controller manages, as kubectl drain --force" }),
    ),
    gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, description: "override each pod's own" })),
    podDeletionTimeout: Type.Optional(Duration("how long an evicted pod may take to go (default 5m)")),
  },
  { additionalProperties: false },
);

export const UpdatePlanSpecSchema = Type.Object(
  {
    target: Target,
    nodeSelector: Type.Optional(Selector),
    maxUnavailable: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: "^(100|[1-9][0-9]?)%$" })], {
        description: "nodes updating at once: a number, or a percentage of the selected nodes (default 1)",
      }),
    ),
    delayBetweenNodes: Type.Optional(
      Duration("least time between a node starting or finishing and the next node starting (default 0)"),
    ),
    maintenanceWindows: Type.Optional(
      Type.Array(Window, { description: "new nodes start only inside one; always when absent" }),
    ),
    failureBudget: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: "failed nodes tolerated; one more pauses the plan (default 0)",
      }),
    ),
    paused: Type.Optional(
      Type.Boolean({ default: false, description: "start no new node (the operator sets it on a pause)" }),
    ),
    drain: Type.Optional(Drain),
    nodeTimeout: Type.Optional(Duration("apply, reboot and health check of one node (default 30m)")),
  },
  { additionalProperties: false },
);
export type UpdatePlanSpec = Static<typeof UpdatePlanSpecSchema>;

export const NODE_PHASES = [
  "Pending",
  "Draining",
  "Updating",
  "Verifying",
  "Succeeded",
  "Failed",
  "Skipped",
  "Blocked",
] as const;
export type NodePhase = (typeof NODE_PHASES)[number];
/** Phases a node leaves only when the plan's target changes. Blocked is retried on resume. */
export const FINAL_PHASES: ReadonlySet<NodePhase> = new Set(["Succeeded", "Failed", "Skipped"]);

export const PLAN_PHASES = ["Pending", "Progressing", "Waiting", "Paused", "Completed"] as const;
export type PlanPhase = (typeof PLAN_PHASES)[number];

const Time = Type.String({ description: "RFC 3339" });

export const NodeStatusSchema = Type.Object({
  name: Type.String(),
  phase: Type.Unsafe<NodePhase>(Type.Union(NODE_PHASES.map((p) => Type.Literal(p)))),
  message: Type.Optional(Type.String()),
  since: Type.Optional(Time),
  startedAt: Type.Optional(Time),
  finishedAt: Type.Optional(Time),
  fleetNode: Type.Optional(Type.String({ description: "the fleet server's node id" })),
  job: Type.Optional(Type.String({ description: "the fleet server's job id" })),
  blockedBy: Type.Optional(Type.String({ description: "namespace/name of the PodDisruptionBudget" })),
  blockedSince: Type.Optional(Time),
  release: Type.Optional(Type.String({ description: "what the agent reported running at the end" })),
});
export type NodeStatus = Static<typeof NodeStatusSchema>;

export const ConditionSchema = Type.Object({
  type: Type.String(),
  status: Type.Union([Type.Literal("True"), Type.Literal("False"), Type.Literal("Unknown")]),
  reason: Type.String(),
  /** Absent rather than empty: the API server (1.20) reads an empty string in a merge patch as null. */
  message: Type.Optional(Type.String()),
  lastTransitionTime: Time,
});
export type Condition = Static<typeof ConditionSchema>;

export const UpdatePlanStatusSchema = Type.Object({
  observedGeneration: Type.Optional(Type.Integer()),
  target: Type.Optional(Type.String({ description: "what is rolled out, in words" })),
  phase: Type.Optional(Type.Unsafe<PlanPhase>(Type.Union(PLAN_PHASES.map((p) => Type.Literal(p))))),
  message: Type.Optional(Type.String()),
  total: Type.Optional(Type.Integer()),
  pending: Type.Optional(Type.Integer()),
  inProgress: Type.Optional(Type.Integer()),
  succeeded: Type.Optional(Type.Integer()),
  failed: Type.Optional(Type.Integer()),
  skipped: Type.Optional(Type.Integer()),
  blocked: Type.Optional(Type.Integer()),
  /** Failures already counted when the plan was last resumed: the budget applies to those after. */
  acknowledgedFailures: Type.Optional(Type.Integer()),
  /** When a node last started or finished: delayBetweenNodes counts from here. */
  lastNodeTransitionAt: Type.Optional(Time),
  nodes: Type.Optional(Type.Array(NodeStatusSchema)),
  conditions: Type.Optional(Type.Array(ConditionSchema)),
});
export type UpdatePlanStatus = Static<typeof UpdatePlanStatusSchema>;

export interface UpdatePlan {
  apiVersion?: string;
  kind?: string;
  metadata: V1ObjectMeta & { name: string };
  spec: UpdatePlanSpec;
  status?: UpdatePlanStatus;
}

export type TargetKind = "os-release" | "live-patch" | "hardening";

/** A plan's spec with defaults filled in and durations in milliseconds. */
export interface PlanSettings {
  kind: TargetKind;
  /** The release version, live patch name or hardening profile. */
  name: string;
  /** "os-release 2026.12.2", for status and the TARGET column. */
  description: string;
  reboot: boolean;
  livePatchKind: "lib" | "kernel";
  repository?: string;
  nodeSelector?: LabelSelector;
  maxUnavailable: number | `${number}%`;
  delayMs: number;
  windows: MaintenanceWindow[];
  failureBudget: number;
  paused: boolean;
  drainTimeoutMs: number;
  onDrainTimeout: "Pause" | "Skip";
  force: boolean;
  gracePeriodSeconds?: number;
  podDeletionTimeoutMs: number;
  nodeTimeoutMs: number;
}

/** Checks a spec (as the API server would, plus what a schema cannot say) and fills in the defaults. */
export function planSettings(spec: unknown): PlanSettings | { error: string } {
  const first = [...Value.Errors(UpdatePlanSpecSchema, spec)][0];
  if (first) return { error: `spec${first.instancePath.replaceAll("/", ".")}: ${first.message}` };
  const s = spec as UpdatePlanSpec;
  const t = s.target;
  const named = [
    ["os-release", t.osRelease],
    ["live-patch", t.livePatch],
    ["hardening", t.hardeningProfile],
  ].filter((e): e is [TargetKind, string] => e[1] !== undefined);
  if (named.length !== 1)
    return { error: "spec.target: name exactly one of osRelease, livePatch, hardeningProfile" };
  const [kind, name] = named[0]!;
  const selectorError = selectorProblem(s.nodeSelector);
  if (selectorError) return { error: `spec.${selectorError}` };
  for (const w of s.maintenanceWindows ?? [])
    if (w.timeZone && !validTimeZone(w.timeZone))
      return { error: `spec.maintenanceWindows: unknown time zone "${w.timeZone}"` };
  const ms = (d: string | undefined, dflt: number) => (d === undefined ? dflt : parseDuration(d)!);
  return {
    kind,
    name,
    description: `${kind} ${name}`,
    reboot: kind === "os-release" ? (t.reboot ?? true) : (t.reboot ?? false),
    livePatchKind: t.livePatchKind ?? "lib",
    repository: t.repository,
    nodeSelector: s.nodeSelector,
    maxUnavailable: (s.maxUnavailable ?? 1) as number | `${number}%`,
    delayMs: ms(s.delayBetweenNodes, 0),
    windows: s.maintenanceWindows ?? [],
    failureBudget: s.failureBudget ?? 0,
    paused: s.paused ?? false,
    drainTimeoutMs: ms(s.drain?.timeout, 10 * 60_000),
    onDrainTimeout: s.drain?.onTimeout ?? "Pause",
    force: s.drain?.force ?? false,
    gracePeriodSeconds: s.drain?.gracePeriodSeconds,
    podDeletionTimeoutMs: ms(s.drain?.podDeletionTimeout, 5 * 60_000),
    nodeTimeoutMs: ms(s.nodeTimeout, 30 * 60_000),
  };
}

/** How many nodes may update at once out of `selected`: a percentage rounds down, but is at least 1. */
export function concurrencyOf(maxUnavailable: number | string, selected: number): number {
  if (typeof maxUnavailable === "number") return maxUnavailable;
  const pct = Number(maxUnavailable.slice(0, -1));
  return Math.max(1, Math.floor((selected * pct) / 100));
}
