// The fleet server's API contract: every request and response body as a TypeBox schema (so also a JSON
// Schema, listed in the generated OpenAPI document). The agent, the console, `berth fleet` and the
// Kubernetes operator (src/k8s) all speak through these types. docs/fleet.md describes the contract in
// words; names here are extended, never renamed.

import Type, { type Static, type TLiteral, type TProperties, type TSchema, type TUnion } from "typebox";

// ---- shared pieces -------------------------------------------------------------------------------

/** A bounded string, with a description only where one is given (so the schema has no empty key). */
const Name = (max = 256, description?: string) =>
  Type.String(description === undefined ? { maxLength: max } : { maxLength: max, description });
const Id = Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_-]+$" });
const Timestamp = Name(40, "ISO 8601 time");
const Hostname = Type.String({ minLength: 1, maxLength: 253 });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** What a client sends: an object that rejects properties the contract does not name. */
const Closed = <T extends TProperties>(properties: T) =>
  Type.Object(properties, { additionalProperties: false });
/** One of these strings: a union of literals, so each stays a `const` in the JSON Schema. */
type TLiterals<T extends readonly string[]> = T extends readonly [
  infer H extends string,
  ...infer R extends string[],
]
  ? [TLiteral<H>, ...TLiterals<R>]
  : [];
const Literals = <const T extends readonly string[]>(...values: T): TUnion<TLiterals<T>> =>
  Type.Union(values.map((v) => Type.Literal(v))) as TUnion<TLiterals<T>>;
/** Findings by severity; FindingCounts and the history points both count them this way. */
const severityCounts = {
  critical: Type.Integer(),
  high: Type.Integer(),
  medium: Type.Integer(),
  low: Type.Integer(),
  negligible: Type.Integer(),
  unknown: Type.Integer(),
};

export const ErrorBody = Type.Object({
  error: Type.String({ description: "one line saying what was wrong" }),
  statusCode: Type.Optional(Type.Integer()),
});
export type ErrorBody = Static<typeof ErrorBody>;

// ---- enrolment (agent side, no node key yet) ------------------------------------------------------

export const EnrollRequest = Closed({
  token: Type.String({
    minLength: 1,
    maxLength: 256,
    description: "enrolment token (berth server token create)",
  }),
  publicKey: Type.String({
    minLength: 1,
    maxLength: 128,
    description: "the node's Ed25519 public key: 32 raw bytes, base64",
  }),
  hostname: Hostname,
  proof: Type.String({
    minLength: 1,
    maxLength: 128,
    description:
      'Ed25519 signature (base64) over "berth-enroll-1\\n" + token + "\\n" + publicKey + "\\n" + hostname: proves the key is held',
  }),
  machineId: Type.Optional(Name(64)),
  agentVersion: Type.Optional(Name(64)),
});
export type EnrollRequest = Static<typeof EnrollRequest>;

export const EnrollResponse = Type.Object({
  nodeId: Id,
  /** Seconds between reports the server asks for. */
  interval: Type.Integer(),
});
export type EnrollResponse = Static<typeof EnrollResponse>;

// ---- what a node reports --------------------------------------------------------------------------

export const Package = Closed({
  name: Name(128),
  version: Name(128),
  architecture: Name(32),
  status: Name(32),
  source: Name(128),
  sourceVersion: Name(128),
});
export type Package = Static<typeof Package>;

export const Kernel = Closed({
  release: Name(128),
  upstream: Type.Optional(Name(64)),
  package: Type.Optional(Name(128)),
  packageVersion: Type.Optional(Name(128)),
  running: Type.Boolean(),
});
export type Kernel = Static<typeof Kernel>;

export const Container = Closed({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  name: Name(256),
  image: Name(512),
  imageId: Name(128),
  state: Name(32),
});
export type Container = Static<typeof Container>;

export const OsInfo = Closed({
  id: Name(64),
  versionId: Type.Optional(Name(64)),
  codename: Type.Optional(Name(64)),
  prettyName: Type.Optional(Name(256)),
});
export type OsInfo = Static<typeof OsInfo>;

export const HardenState = Closed({
  profile: Name(64),
  score: Type.Integer({ minimum: 0, maximum: 100 }),
  rules: Type.Integer({ minimum: 0, maximum: 100000 }),
  failing: Type.Array(Name(128), { maxItems: 2000, description: "ids of the rules that failed" }),
  checkedAt: Timestamp,
});
export type HardenState = Static<typeof HardenState>;

/** A live patch of a library in running processes, or of the kernel. */
const PatchKind = Literals("lib", "kernel");

export const LivePatch = Closed({
  kind: PatchKind,
  name: Name(256),
  /** Processes patched (lib) or the livepatch state (kernel: enabled, transition, disabled). */
  detail: Type.Optional(Name(512)),
});
export type LivePatch = Static<typeof LivePatch>;

export const UpdateStateName = Literals(
  "idle",
  "downloading",
  "applied",
  "rebooting",
  "good",
  "rolled-back",
  "failed",
);
export type UpdateStateName = Static<typeof UpdateStateName>;

export const Slot = Closed({
  name: Name(16),
  release: Nullable(Name(64)),
  /** good, trying, bad or empty, as `berth update status` says. */
  state: Name(32),
  triesLeft: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
});
export type Slot = Static<typeof Slot>;

export const UpdateStatus = Closed({
  state: UpdateStateName,
  /** The booted slot's name ("a" or "b"); null on a host without A/B slots. */
  booted: Nullable(Name(16)),
  slots: Type.Array(Slot, { maxItems: 8 }),
  lastAttempt: Nullable(
    Closed({
      version: Name(64),
      at: Timestamp,
      result: Name(32),
      reason: Type.Optional(Name(1024)),
    }),
  ),
  reason: Type.Optional(Name(1024)),
});
export type UpdateStatus = Static<typeof UpdateStatus>;

/** A section given as a whole list (set) or as changes against the previous report (add/remove). */
const ListDelta = <T extends TSchema>(item: T, max: number) =>
  Closed({
    set: Type.Optional(Type.Array(item, { maxItems: max })),
    add: Type.Optional(Type.Array(item, { maxItems: max, description: "added or changed entries" })),
    remove: Type.Optional(
      Type.Array(Name(256), { maxItems: max, description: "keys: name:architecture, or container id" }),
    ),
  });

export const MAX_PACKAGES = 20000;
export const MAX_CONTAINERS = 5000;

export const Report = Closed({
  seq: Type.Integer({
    minimum: 1,
    maximum: Number.MAX_SAFE_INTEGER,
    description: "the agent's sequence number; each report is one more",
  }),
  /** The seq this report is a delta against (the previous report); 0 with full: true. */
  base: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  /** A full report replaces everything; a delta changes only the sections it carries. */
  full: Type.Boolean(),
  time: Timestamp,
  hostname: Type.Optional(Hostname),
  release: Type.Optional(Nullable(Name(64))),
  os: Type.Optional(OsInfo),
  kernels: Type.Optional(Type.Array(Kernel, { maxItems: 64 })),
  packages: Type.Optional(ListDelta(Package, MAX_PACKAGES)),
  containers: Type.Optional(ListDelta(Container, MAX_CONTAINERS)),
  harden: Type.Optional(Nullable(HardenState)),
  patches: Type.Optional(Type.Array(LivePatch, { maxItems: 1000 })),
  update: Type.Optional(UpdateStatus),
});
export type Report = Static<typeof Report>;

// ---- jobs -----------------------------------------------------------------------------------------

const jobKinds = [
  "update-apply",
  "update-rollback",
  "patch-apply",
  "patch-rollback",
  "harden-apply",
  "harden-rollback",
  "rescan",
] as const;
export const JobKind = Literals(...jobKinds);
export type JobKind = Static<typeof JobKind>;
export const JOB_KINDS: JobKind[] = [...jobKinds];

export const JobParams = Closed({
  version: Type.Optional(Type.String({ maxLength: 64, pattern: "^[A-Za-z0-9.+~_-]+$" })),
  reboot: Type.Optional(Type.Boolean()),
  ignoreWaves: Type.Optional(Type.Boolean()),
  /** A live patch (patch-*) or hardening profile (harden-*) name. */
  name: Type.Optional(Type.String({ maxLength: 128, pattern: "^[A-Za-z0-9.+_-]+$" })),
  /** patch-*: lib or kernel (default lib). */
  patchKind: Type.Optional(PatchKind),
  /** Where the repository lives when it is not the one the node is configured with. */
  repository: Type.Optional(Type.String({ maxLength: 1024, pattern: "^https?://" })),
});
export type JobParams = Static<typeof JobParams>;

export const JobState = Literals("queued", "sent", "running", "succeeded", "failed");
export type JobState = Static<typeof JobState>;

export const CreateJobRequest = Closed({ kind: JobKind, params: Type.Optional(JobParams) });
export type CreateJobRequest = Static<typeof CreateJobRequest>;

export const CreateJobResponse = Type.Object({ id: Id });
export type CreateJobResponse = Static<typeof CreateJobResponse>;

export const Job = Type.Object({
  id: Id,
  nodeId: Id,
  kind: JobKind,
  params: JobParams,
  state: JobState,
  result: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.String()),
  rolloutId: Type.Optional(Id),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Job = Static<typeof Job>;

export const JobList = Type.Object({ jobs: Type.Array(Job) });
export type JobList = Static<typeof JobList>;

/** The agent's word on a job it was given. */
export const JobUpdate = Closed({
  state: Literals("running", "succeeded", "failed"),
  result: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.String({ maxLength: 4096 })),
});
export type JobUpdate = Static<typeof JobUpdate>;

export const ReportAck = Type.Object({
  /** The highest seq committed for this node; the agent drops queued reports up to it. */
  ack: Type.Integer(),
  /** Work for the agent, now in state "sent". */
  jobs: Type.Array(Job),
  interval: Type.Integer(),
});
export type ReportAck = Static<typeof ReportAck>;

/** 409 to a report: the server needs seq `expected` next, and a full report when `full` is true. */
export const ReportConflict = Type.Object({
  error: Type.String(),
  expected: Type.Integer(),
  full: Type.Boolean(),
});
export type ReportConflict = Static<typeof ReportConflict>;

// ---- nodes as the operator and console see them -----------------------------------------------------

export const FindingCounts = Type.Object({ ...severityCounts, total: Type.Integer() });
export type FindingCounts = Static<typeof FindingCounts>;

export const Node = Type.Object({
  id: Id,
  hostname: Type.String(),
  online: Type.Boolean(),
  lastSeen: Nullable(Timestamp),
  enrolledAt: Timestamp,
  /** The running Berth release (or the distribution's version on another Debian host). */
  release: Nullable(Type.String()),
  kernel: Nullable(Type.String()),
  os: Nullable(OsInfo),
  update: UpdateStatus,
  harden: Nullable(Type.Object({ profile: Type.String(), score: Type.Integer(), failing: Type.Integer() })),
  findings: FindingCounts,
  packages: Type.Integer(),
  containers: Type.Integer(),
  patches: Type.Array(LivePatch),
  /** The last report committed for the node. */
  seq: Type.Integer(),
});
export type Node = Static<typeof Node>;

export const NodeQuery = Closed({
  hostname: Type.Optional(Name(253)),
  search: Type.Optional(Name(253, "hostnames containing this")),
  online: Type.Optional(Type.Boolean()),
  release: Type.Optional(Name(64)),
  kernel: Type.Optional(Name(128)),
  cve: Type.Optional(Name(64, "only nodes a vulnerability affects")),
  scoreBelow: Type.Optional(Type.Integer({ minimum: 0, maximum: 101 })),
  patch: Type.Optional(Name(256, "only nodes with this live patch")),
  package: Type.Optional(Name(128, "only nodes with this package")),
  versionBelow: Type.Optional(Name(128, "with package: only installed versions older than this")),
  updateState: Type.Optional(UpdateStateName),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  cursor: Type.Optional(Name(512, "next from the previous page")),
});
export type NodeQuery = Static<typeof NodeQuery>;

export const NodePage = Type.Object({
  nodes: Type.Array(Node),
  total: Type.Integer({ description: "nodes matching the filters, over all pages" }),
  next: Type.Optional(Type.String({ description: "cursor of the next page; absent on the last" })),
});
export type NodePage = Static<typeof NodePage>;

export const IdParams = Closed({ id: Id });

export const NodeFinding = Type.Object({
  vulnId: Type.String(),
  package: Type.String(),
  source: Type.String(),
  installed: Type.String(),
  fixedVersion: Type.Optional(Type.String()),
  status: Type.String(),
  severity: Type.String(),
  title: Type.Optional(Type.String()),
  dataSource: Type.String(),
  kernel: Type.Optional(Type.Boolean()),
});
export type NodeFinding = Static<typeof NodeFinding>;

export const NodeDetail = Type.Object({
  node: Node,
  packages: Type.Array(Package),
  kernels: Type.Array(Kernel),
  containers: Type.Array(Container),
  findings: Type.Array(NodeFinding),
  hardenFailing: Type.Array(Type.String()),
  jobs: Type.Array(Job),
});
export type NodeDetail = Static<typeof NodeDetail>;

// ---- rollouts -------------------------------------------------------------------------------------

export const Wave = Closed({
  percent: Type.Number({
    minimum: 0,
    maximum: 100,
    description: "share of the fleet reached by this wave",
  }),
  startAt: Type.Optional(Timestamp),
});
export type Wave = Static<typeof Wave>;

export const RolloutState = Literals("running", "paused", "stopped", "completed");
export type RolloutState = Static<typeof RolloutState>;

export const CreateRolloutRequest = Closed({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  kind: JobKind,
  params: Type.Optional(JobParams),
  waves: Type.Array(Wave, { minItems: 1, maxItems: 32 }),
  maxConcurrent: Type.Integer({ minimum: 1, maximum: 100000 }),
  /** Pause when failed / finished reaches this share (0..1), once minFinished jobs have finished. */
  failureThreshold: Type.Number({ minimum: 0, maximum: 1 }),
  minFinished: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
  /** Only nodes matching these filters (NodeQuery's filters). */
  selector: Type.Optional(Type.Omit(NodeQuery, ["limit", "cursor"])),
});
export type CreateRolloutRequest = Static<typeof CreateRolloutRequest>;

export const Rollout = Type.Object({
  id: Id,
  name: Type.String(),
  kind: JobKind,
  params: JobParams,
  waves: Type.Array(Wave),
  maxConcurrent: Type.Integer(),
  failureThreshold: Type.Number(),
  minFinished: Type.Integer(),
  selector: Type.Unknown(),
  state: RolloutState,
  reason: Type.Optional(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  progress: Type.Object({
    targets: Type.Integer({ description: "nodes the rollout covers" }),
    reached: Type.Integer({ description: "nodes the waves open so far" }),
    queued: Type.Integer(),
    running: Type.Integer(),
    succeeded: Type.Integer(),
    failed: Type.Integer(),
  }),
});
export type Rollout = Static<typeof Rollout>;

export const RolloutList = Type.Object({ rollouts: Type.Array(Rollout) });

export const FleetSettings = Type.Object({
  /** The global stop switch: no rollout sends new work while it is on. */
  stopped: Type.Boolean(),
});
export type FleetSettings = Static<typeof FleetSettings>;

// ---- administration -------------------------------------------------------------------------------

export const Role = Literals("admin", "read-only");
export type Role = Static<typeof Role>;

export const LoginRequest = Closed({
  name: Type.String({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
});
export const Whoami = Type.Object({ name: Type.String(), role: Role, via: Type.String() });
export type Whoami = Static<typeof Whoami>;

export const CreateUserRequest = Closed({
  name: Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9._-]+$" }),
  password: Type.String({ minLength: 8, maxLength: 1024 }),
  role: Role,
});

export const CreateTokenRequest = Closed({
  kind: Literals("enroll", "api"),
  role: Type.Optional(Role),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 365 * 86400 })),
  uses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000 })),
  name: Type.Optional(Type.String({ maxLength: 128 })),
});
export const CreateTokenResponse = Type.Object({ token: Type.String(), expiresAt: Nullable(Timestamp) });

export const AuditEntry = Type.Object({
  id: Type.Integer(),
  at: Timestamp,
  actor: Type.String(),
  action: Type.String(),
  target: Nullable(Type.String()),
  detail: Type.Unknown(),
});
export const AuditList = Type.Object({ entries: Type.Array(AuditEntry) });

// ---- fleet-wide views for the console -------------------------------------------------------------

export const VulnHistory = Type.Object({
  points: Type.Array(Type.Object({ at: Timestamp, ...severityCounts })),
});
export const TopVulns = Type.Object({
  vulns: Type.Array(
    Type.Object({
      vulnId: Type.String(),
      severity: Type.String(),
      title: Type.Optional(Type.String()),
      hosts: Type.Integer(),
      fixable: Type.Boolean(),
    }),
  ),
});
export const RulePassRates = Type.Object({
  hosts: Type.Integer({ description: "hosts with a hardening check" }),
  rules: Type.Array(Type.Object({ id: Type.String(), failing: Type.Integer(), passRate: Type.Number() })),
  history: Type.Array(Type.Object({ at: Timestamp, averageScore: Type.Number(), hosts: Type.Integer() })),
});
export const SoftwareQuery = Closed({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  versionBelow: Type.Optional(Type.String({ maxLength: 128 })),
});
export const SoftwareResult = Type.Object({
  versions: Type.Array(Type.Object({ name: Type.String(), version: Type.String(), hosts: Type.Integer() })),
});
export const AdvisoryList = Type.Object({
  advisories: Type.Array(
    Type.Object({
      id: Type.String(),
      vulns: Type.Array(Type.String()),
      hosts: Type.Integer(),
      severity: Type.String(),
    }),
  ),
});
export const FleetStatus = Type.Object({
  nodes: Type.Integer(),
  online: Type.Integer(),
  containers: Type.Integer(),
  advisoryDb: Type.Object({
    generation: Type.String(),
    evaluatedAt: Nullable(Timestamp),
    /** The generation the fleet's findings were last evaluated against, and how long that took. */
    evaluatedGeneration: Nullable(Type.String()),
    seconds: Nullable(Type.Number()),
    packages: Nullable(Type.Integer({ description: "distinct packages matched in the last evaluation" })),
    error: Type.Optional(Type.String({ description: "why the advisory database cannot be used" })),
  }),
  stopped: Type.Boolean(),
});
