// `berth operator`: rolls UpdatePlans over a cluster's Nodes, node by node. For each node of a plan it
// takes the node's slot (a Lease; at most maxUnavailable held per plan), cordons, drains through the
// Eviction API, asks the node's agent to apply (and reboot) through NodeAgents, waits for the node to be
// Ready with its agent reporting "good", uncordons, and gives the slot back once the plan's status says
// so. Everything it needs to carry on after a crash is in the cluster: the plan's status (per-node
// results) and the Leases (nodes in flight, with their fleet job), so a restarted or standby operator
// resumes without updating a node twice or leaving one cordoned.
//
// Only the leader (a Lease, leader.ts) works; watches (informers) keep Nodes, plans and Leases in memory,
// so the requests per node are the writes plus one list of the node's pods.

import type { KubernetesListObject, V1Lease, V1Node } from "@kubernetes/client-node";
import { BerthError } from "../common/errors.ts";
import { alreadyDone, type NodeAgents, outcome, updateInFlight, workFor } from "./agents.ts";
import { cordon, type DrainResult, drain, uncordon } from "./drain.ts";
import { formatDuration } from "./duration.ts";
import { type Cache, type Kube, kubeError, MERGE_PATCH, statusCode } from "./kube.ts";
import { LeaderElector } from "./leader.ts";
import { type Lock, Locks, lockExpired } from "./locks.ts";
import {
  CORDONED_BY_ANNOTATION,
  FIELD_MANAGER,
  FLEET_NODE_ANNOTATION,
  GROUP,
  HOSTNAME_LABEL,
  LEADER_LEASE,
  LOCK_LABEL,
  PLAN_PLURAL,
  VERSION,
} from "./names.ts";
import {
  type Condition,
  concurrencyOf,
  FINAL_PHASES,
  type NodePhase,
  type NodeStatus,
  type PlanSettings,
  planSettings,
  type UpdatePlan,
} from "./plan.ts";
import { selectorMatches } from "./selector.ts";
import { sleep, wakeableSleep } from "./sleep.ts";
import { buildStatus, failureList, failuresOverBudget, type PauseReason } from "./status.ts";
import { nextWindowOpen, windowOpen } from "./windows.ts";

export interface OperatorOptions {
  /** Where the Leases live (the operator's own namespace). */
  namespace: string;
  /** This replica's name in the leader Lease (the pod name in a cluster). */
  identity: string;
  agents: NodeAgents;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
  /** How long a node's slot stays held without renewal (renewed every third of it). */
  lockDurationMs?: number;
  /** Reconcile at least this often, events or not. */
  resyncMs?: number;
  /** How often an updating node's agent is asked how it is doing. */
  pollMs?: number;
  /** Pause between evictions a PDB refused. */
  evictRetryMs?: number;
  /** Status changes within this time go out as one write. */
  statusFlushMs?: number;
  log?: (line: string) => void;
}

type Stop = "shutdown" | "node-deleted" | "plan-gone" | "target-changed";

/** A node failed: the reason goes into the plan's status. */
class NodeFailure extends BerthError {}

export function nodeReady(n: V1Node | undefined): boolean {
  return !!n?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
}

/** What the fleet knows a Node as: the id annotation when set, else the kubelet's hostname label. */
export function nodeIdentity(n: V1Node): { name: string; hostname: string; fleetId?: string } {
  const name = n.metadata?.name ?? "";
  const hostname =
    n.metadata?.labels?.[HOSTNAME_LABEL] ??
    n.status?.addresses?.find((a) => a.type === "Hostname")?.address ??
    name;
  const fleetId = n.metadata?.annotations?.[FLEET_NODE_ANNOTATION];
  return fleetId ? { name, hostname, fleetId } : { name, hostname };
}

/** One plan as the leader runs it. */
class PlanRun {
  readonly name: string;
  uid: string;
  generation = 0;
  settings?: PlanSettings;
  invalid?: string;
  target = "";
  nodes = new Map<string, NodeStatus>();
  workers = new Map<string, AbortController>();
  acknowledgedFailures = 0;
  lastNodeTransitionAt?: Date;
  previousConditions: Condition[] = [];
  wasPaused = false;
  /** In effect: spec.paused, or a pause this operator wrote that the watch has not shown yet. */
  paused = false;
  /**
   * The plan generation our spec.paused write made (Infinity while it is in flight). A cached plan
   * older than it still shows paused: false, which is not a person resuming the plan.
   */
  pauseGeneration?: number;
  pause?: { reason: PauseReason; message: string };
  /** Status bookkeeping: `version` counts changes, `written` the last change on the server. */
  version = 0;
  written = -1;
  lastWritten = "";
  flushTimer?: NodeJS.Timeout;
  delayTimer?: NodeJS.Timeout;
  flushing?: Promise<void>;
  waiters: { version: number; resolve: () => void }[] = [];

  constructor(plan: UpdatePlan) {
    this.name = plan.metadata.name;
    this.uid = plan.metadata.uid ?? "";
  }

  get ref() {
    return { name: this.name, uid: this.uid };
  }

  node(name: string): NodeStatus {
    let n = this.nodes.get(name);
    if (!n) {
      n = { name, phase: "Pending" };
      this.nodes.set(name, n);
    }
    return n;
  }
}

export class Operator {
  readonly kube: Kube;
  private readonly o: Required<Omit<OperatorOptions, "log">> & { log: (line: string) => void };
  private readonly locks: Locks;
  private readonly runs = new Map<string, PlanRun>();
  private nodes?: Cache<V1Node>;
  private leases?: Cache<V1Lease>;
  private plans?: Cache<UpdatePlan>;
  private kicked?: () => void;
  private windowMemo = { key: "", next: undefined as Date | undefined };
  /** Set once leading ends: no status timers are started any more. */
  private stopping = false;

  constructor(kube: Kube, o: OperatorOptions) {
    this.kube = kube;
    this.o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryMs: 2_000,
      lockDurationMs: 300_000,
      resyncMs: 2_000,
      pollMs: 2_000,
      evictRetryMs: 5_000,
      statusFlushMs: 1_000,
      log: () => {},
      ...o,
    };
    this.locks = new Locks(kube, o.namespace, this.o.lockDurationMs);
  }

  /** Runs until `stop` aborts (resolves) or leadership is lost (rejects). */
  async run(stop: AbortSignal): Promise<void> {
    await this.kube.discover();
    this.o.log(
      `operator: ${this.kube.server}, Eviction policy/${this.kube.evictionVersion}, namespace ${this.o.namespace}`,
    );
    const elector = new LeaderElector(this.kube, {
      namespace: this.o.namespace,
      name: LEADER_LEASE,
      identity: this.o.identity,
      leaseDurationMs: this.o.leaseDurationMs,
      renewDeadlineMs: this.o.renewDeadlineMs,
      retryMs: this.o.retryMs,
      log: this.o.log,
    });
    await elector.run((signal) => this.lead(signal), stop);
  }

  private kick(): void {
    this.kicked?.();
  }

  private async lead(signal: AbortSignal): Promise<void> {
    const k = this.kube;
    this.nodes = k.informer<V1Node>("/api/v1/nodes", () => k.core.listNode());
    this.leases = k.informer<V1Lease>(
      `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`,
      () =>
        k.coordination.listNamespacedLease({
          namespace: this.o.namespace,
          labelSelector: `${LOCK_LABEL}=true`,
        }),
      `${LOCK_LABEL}=true`,
    );
    this.plans = k.informer<UpdatePlan>(
      `/apis/${GROUP}/${VERSION}/${PLAN_PLURAL}`,
      () =>
        k.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLAN_PLURAL }) as Promise<
          KubernetesListObject<UpdatePlan>
        >,
    );
    for (const inf of [this.nodes, this.leases, this.plans] as { on: (e: string, cb: () => void) => void }[])
      for (const e of ["add", "update", "delete"]) inf.on(e, () => this.kick());
    this.leases.on("delete", (l: V1Lease) => this.locks.released.delete(l.metadata?.uid ?? ""));
    this.nodes.on("delete", (n: V1Node) => {
      for (const run of this.runs.values())
        run.workers.get(n.metadata?.name ?? "")?.abort("node-deleted" satisfies Stop);
    });
    try {
      await Promise.all([this.nodes.start(), this.leases.start(), this.plans.start()]);
      this.o.log("operator: watching Nodes, UpdatePlans and slot Leases");
      while (!signal.aborted) {
        try {
          await this.reconcile();
        } catch (e) {
          this.o.log(`operator: reconcile: ${kubeError(e)}`);
        }
        const nap = wakeableSleep(this.o.resyncMs, signal);
        this.kicked = nap.wake;
        await nap.done;
        this.kicked = undefined;
      }
    } finally {
      // Leave every node as it is: the next leader carries on from the Leases and the status.
      const all = [...this.runs.values()];
      for (const run of all) for (const w of run.workers.values()) w.abort("shutdown" satisfies Stop);
      while (all.some((r) => r.workers.size)) await sleep(50);
      // One last status write each, then no more timers: nothing keeps a stopped operator alive.
      this.stopping = true;
      for (const run of all) {
        if (run.flushTimer) clearTimeout(run.flushTimer);
        if (run.delayTimer) clearTimeout(run.delayTimer);
      }
      await Promise.allSettled(all.map((r) => this.flush(r)));
      for (const run of all) for (const w of run.waiters) w.resolve();
      await Promise.allSettled([this.nodes.stop(), this.leases.stop(), this.plans.stop()]);
    }
  }

  /** Request counts of this operator: Kubernetes API (watches excluded). */
  stats(): { kubernetes: Record<string, number>; total: number } {
    return { kubernetes: Object.fromEntries(this.kube.counts), total: this.kube.requests() };
  }

  // ---- reconcile ---------------------------------------------------------------------------------

  private async reconcile(): Promise<void> {
    const plans = this.plans!.list();
    const seen = new Set<string>();
    for (const plan of plans) {
      const name = plan.metadata.name;
      seen.add(name);
      let run = this.runs.get(name);
      if (run && run.uid !== plan.metadata.uid) {
        this.stopRun(run, "plan-gone");
        run = undefined;
      }
      if (!run) {
        run = this.restore(plan);
        this.runs.set(name, run);
      }
      this.sync(run, plan);
    }
    for (const run of this.runs.values())
      if (!seen.has(run.name)) {
        this.stopRun(run, "plan-gone");
        if (!run.workers.size) this.runs.delete(run.name);
      }
    await this.housekeepLocks();
    for (const run of this.runs.values()) if (seen.has(run.name)) await this.schedule(run);
  }

  /** A run picked up from a plan's status: what a previous leader recorded is kept. */
  private restore(plan: UpdatePlan): PlanRun {
    const run = new PlanRun(plan);
    const st = plan.status;
    const settings = planSettings(plan.spec);
    const target = "error" in settings ? "" : settings.description;
    if (st && st.target === target) {
      for (const n of st.nodes ?? []) run.nodes.set(n.name, { ...n });
      run.acknowledgedFailures = st.acknowledgedFailures ?? 0;
      if (st.lastNodeTransitionAt) run.lastNodeTransitionAt = new Date(st.lastNodeTransitionAt);
    }
    run.previousConditions = st?.conditions ?? [];
    const paused = run.previousConditions.find((c) => c.type === "Paused" && c.status === "True");
    run.wasPaused = !!paused;
    if (paused && paused.reason !== "Spec")
      run.pause = { reason: paused.reason as PauseReason, message: paused.message ?? paused.reason };
    this.o.log(`plan ${run.name}: taking over (${run.nodes.size} nodes in its status)`);
    return run;
  }

  private sync(run: PlanRun, plan: UpdatePlan): void {
    run.generation = plan.metadata.generation ?? 0;
    const settings = planSettings(plan.spec);
    if ("error" in settings) {
      run.invalid = settings.error;
      run.settings = undefined;
      this.markDirty(run);
      return;
    }
    run.invalid = undefined;
    if (run.target && run.target !== settings.description) {
      // A new target: the old results are about something else. Nodes in flight stop and are restored.
      this.o.log(`plan ${run.name}: target now ${settings.description}, starting over`);
      for (const w of run.workers.values()) w.abort("target-changed" satisfies Stop);
      if (run.workers.size) return; // once they have stopped
      run.nodes.clear();
      run.acknowledgedFailures = 0;
      run.lastNodeTransitionAt = undefined;
    }
    run.target = settings.description;
    run.settings = settings;

    // Resumed by a person (spec.paused back to false): failures so far are acknowledged, blocked
    // nodes get another try.
    const stale = run.pauseGeneration !== undefined && run.generation < run.pauseGeneration;
    run.paused = !!settings.paused || stale;
    if (run.paused) run.wasPaused = true;
    else if (run.wasPaused) {
      run.wasPaused = false;
      run.pause = undefined;
      run.pauseGeneration = undefined;
      run.acknowledgedFailures = [...run.nodes.values()].filter((n) => n.phase === "Failed").length;
      for (const n of run.nodes.values())
        if (n.phase === "Blocked") {
          n.phase = "Pending";
          n.message = "retried after resume";
          delete n.blockedBy;
          delete n.blockedSince;
        }
      this.o.log(`plan ${run.name}: resumed`);
    }

    const nodes = this.nodes!.list();
    const exists = new Set(nodes.map((n) => n.metadata?.name ?? ""));
    const selected = new Set(
      nodes
        .filter((n) => selectorMatches(settings.nodeSelector, n.metadata?.labels))
        .map((n) => n.metadata!.name!),
    );
    for (const name of selected) run.node(name);
    for (const [name, n] of run.nodes) {
      if (run.workers.has(name)) continue;
      if (!exists.has(name) && !FINAL_PHASES.has(n.phase)) {
        this.setPhase(run, n, "Skipped", "the Node was deleted");
        continue;
      }
      if (!selected.has(name) && (n.phase === "Pending" || n.phase === "Blocked")) run.nodes.delete(name);
    }
    this.markDirty(run);
  }

  /** Slots: adopt this leader's plans' locks, release the ones whose node or plan is gone. */
  private async housekeepLocks(): Promise<void> {
    const now = new Date();
    for (const lease of this.leases!.list()) {
      const l = this.locks.live(lease);
      if (!l) continue;
      const run = this.runs.get(l.plan);
      if (run?.workers.has(l.node)) continue;
      const node = this.nodes!.get(l.node);
      try {
        if (!node) {
          this.o.log(`slot ${l.name}: node ${l.node} is gone, releasing`);
          await this.locks.release(l);
          if (run?.nodes.has(l.node) && !FINAL_PHASES.has(run.node(l.node).phase))
            this.setPhase(run, run.node(l.node), "Skipped", "the Node was deleted while it held the slot");
          continue;
        }
        const plan = this.plans!.get(l.plan);
        if (!run || !plan || run.uid !== l.planUid) {
          // Held for a plan that no longer exists (or was made anew): nobody will renew it.
          if (plan && !lockExpired(l, now)) continue;
          this.o.log(`slot ${l.name}: held for ${l.plan}, which is gone; restoring ${l.node} and releasing`);
          await uncordon(this.kube, node, l.plan);
          await this.locks.release(l);
          continue;
        }
        const status = run.node(l.node);
        if (FINAL_PHASES.has(status.phase)) {
          // Finished and recorded; the previous leader stopped before giving the slot back.
          await uncordon(this.kube, node, l.plan);
          await this.locks.release(l);
          continue;
        }
        if (!run.settings) continue;
        this.o.log(
          `plan ${run.name}: node ${l.node}: resuming from its slot${l.job ? ` (job ${l.job})` : ""}`,
        );
        this.startNode(run, l.node, l);
      } catch (e) {
        this.o.log(`slot ${l.name}: ${kubeError(e)}`);
      }
    }
  }

  private heldBy(run: PlanRun): Set<string> {
    const held = new Set(run.workers.keys());
    for (const lease of this.leases!.list()) {
      const l = this.locks.live(lease);
      if (l && l.plan === run.name && l.planUid === run.uid) held.add(l.node);
    }
    return held;
  }

  private async schedule(run: PlanRun): Promise<void> {
    const s = run.settings;
    if (!s) return;
    const now = new Date();
    const nodes = [...run.nodes.values()];
    if (failuresOverBudget(nodes, s.failureBudget, run.acknowledgedFailures) && !run.paused) {
      await this.requestPause(
        run,
        "FailureBudgetExceeded",
        `failure budget ${s.failureBudget} exceeded: ${failureList(nodes)}`,
      );
      return;
    }
    if (run.paused) return;
    if (!windowOpen(s.windows, now)) return;
    if (s.delayMs && run.lastNodeTransitionAt) {
      const next = run.lastNodeTransitionAt.getTime() + s.delayMs;
      if (now.getTime() < next) {
        if (!run.delayTimer)
          run.delayTimer = setTimeout(
            () => {
              run.delayTimer = undefined;
              this.kick();
            },
            next - now.getTime() + 10,
          ).unref();
        return;
      }
    }
    const selectedCount = nodes.filter((n) => this.nodes!.get(n.name)).length;
    const limit = concurrencyOf(s.maxUnavailable, selectedCount);
    const held = this.heldBy(run);
    if (held.size >= limit) return;
    const lockedByOthers = new Set(
      this.leases!.list()
        .map((lease) => this.locks.live(lease))
        .filter((l): l is Lock => !!l && (l.plan !== run.name || l.planUid !== run.uid))
        .map((l) => l.node),
    );
    const candidates = nodes
      .filter(
        (n) =>
          n.phase === "Pending" &&
          !held.has(n.name) &&
          !lockedByOthers.has(n.name) &&
          this.nodes!.get(n.name),
      )
      .map((n) => n.name)
      .sort();
    for (const name of candidates) {
      if (held.size >= limit) break;
      held.add(name);
      run.lastNodeTransitionAt = new Date();
      this.startNode(run, name);
      if (s.delayMs) break; // with a delay, nodes start one at a time
    }
  }

  private async requestPause(run: PlanRun, reason: PauseReason, message: string): Promise<void> {
    if (run.paused) return;
    run.paused = true;
    run.pauseGeneration = Number.POSITIVE_INFINITY;
    run.pause = { reason, message };
    run.wasPaused = true;
    this.o.log(`plan ${run.name}: pausing: ${message}`);
    try {
      const updated = await this.kube.custom.patchClusterCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: PLAN_PLURAL,
          name: run.name,
          body: { spec: { paused: true } },
          fieldManager: FIELD_MANAGER,
        },
        MERGE_PATCH,
      );
      run.pauseGeneration = (updated as UpdatePlan).metadata.generation ?? 0;
    } catch (e) {
      this.o.log(`plan ${run.name}: could not pause: ${kubeError(e)}`);
      run.paused = false;
      run.pauseGeneration = undefined;
    } finally {
      this.markDirty(run);
    }
  }

  private stopRun(run: PlanRun, why: Stop): void {
    for (const w of run.workers.values()) w.abort(why);
    if (run.flushTimer) clearTimeout(run.flushTimer);
  }

  // ---- status ------------------------------------------------------------------------------------

  private setPhase(run: PlanRun, n: NodeStatus, phase: NodePhase, message?: string): void {
    if (n.phase !== phase) n.since = new Date().toISOString();
    n.phase = phase;
    if (message === undefined) delete n.message;
    else n.message = message;
    this.markDirty(run);
  }

  private markDirty(run: PlanRun): void {
    run.version++;
    if (!run.flushTimer && !this.stopping)
      run.flushTimer = setTimeout(() => {
        run.flushTimer = undefined;
        void this.flush(run);
      }, this.o.statusFlushMs);
  }

  /** Resolves once the status on the server includes every change made before the call. */
  private persisted(run: PlanRun): Promise<void> {
    if (run.written >= run.version) return Promise.resolve();
    return new Promise((resolve) => run.waiters.push({ version: run.version, resolve }));
  }

  private statusOf(run: PlanRun) {
    const s = run.settings;
    const now = new Date();
    const open = windowOpen(s?.windows, now);
    let nextWindow: Date | undefined;
    if (s && !open) {
      const key = `${JSON.stringify(s.windows)}@${Math.floor(now.getTime() / 60_000)}`;
      if (this.windowMemo.key !== key) this.windowMemo = { key, next: nextWindowOpen(s.windows, now) };
      nextWindow = this.windowMemo.next;
    }
    const nextStartAt =
      s?.delayMs && run.lastNodeTransitionAt
        ? new Date(run.lastNodeTransitionAt.getTime() + s.delayMs)
        : undefined;
    return buildStatus({
      generation: run.generation,
      target: run.target,
      invalid: run.invalid,
      nodes: [...run.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
      paused: run.paused,
      pause: run.pause,
      windowOpen: open,
      nextWindow,
      nextStartAt,
      failureBudget: s?.failureBudget ?? 0,
      acknowledgedFailures: run.acknowledgedFailures,
      lastNodeTransitionAt: run.lastNodeTransitionAt,
      previous: run.previousConditions,
      now,
    });
  }

  private async flush(run: PlanRun): Promise<void> {
    while (run.flushing) await run.flushing;
    const version = run.version;
    const status = this.statusOf(run);
    const text = JSON.stringify(status);
    const write = async () => {
      if (text !== run.lastWritten) {
        await this.kube.custom.patchClusterCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            plural: PLAN_PLURAL,
            name: run.name,
            body: { status },
            fieldManager: FIELD_MANAGER,
          },
          MERGE_PATCH,
        );
        run.lastWritten = text;
        run.previousConditions = status.conditions ?? [];
      }
      run.written = version;
      const ready = run.waiters.filter((w) => w.version <= version);
      run.waiters = run.waiters.filter((w) => w.version > version);
      for (const w of ready) w.resolve();
    };
    run.flushing = write()
      .catch((e) => {
        if (statusCode(e) === 404) {
          // The plan is gone: nobody waits for its status any more.
          for (const w of run.waiters) w.resolve();
          run.waiters = [];
          return;
        }
        this.o.log(`plan ${run.name}: writing status: ${kubeError(e)}`);
        if (!run.flushTimer && !this.stopping)
          run.flushTimer = setTimeout(() => {
            run.flushTimer = undefined;
            void this.flush(run);
          }, 1000);
      })
      .finally(() => {
        run.flushing = undefined;
      });
    await run.flushing;
    if (run.version > run.written && run.waiters.length && !run.flushTimer) this.markDirty(run);
  }

  // ---- one node --------------------------------------------------------------------------------

  private startNode(run: PlanRun, name: string, adopted?: Lock): void {
    const ctl = new AbortController();
    run.workers.set(name, ctl);
    void this.runNode(run, name, ctl, adopted).finally(() => {
      run.workers.delete(name);
      if (!this.plans?.get(run.name) && !run.workers.size) this.runs.delete(run.name);
      this.kick();
    });
  }

  private async runNode(run: PlanRun, name: string, ctl: AbortController, adopted?: Lock): Promise<void> {
    const s = run.settings!;
    const st = run.node(name);
    const signal = ctl.signal;
    const log = (line: string) => this.o.log(`plan ${run.name}: node ${name}: ${line}`);
    const current = () => this.nodes!.get(name);
    let lock = adopted;
    let renewTimer: NodeJS.Timeout | undefined;
    let cordoned = false;
    try {
      if (!lock) {
        const node = current();
        if (!node) return;
        const wasUnschedulable =
          !!node.spec?.unschedulable && node.metadata?.annotations?.[CORDONED_BY_ANNOTATION] !== run.name;
        lock = await this.locks.take(name, run.ref, wasUnschedulable);
        if (!lock) return; // someone else holds the node: another round
        log("took the slot");
      }
      const held = lock;
      renewTimer = setInterval(
        () => {
          this.locks.renew(held).catch((e) => log(`renewing the slot: ${kubeError(e)}`));
        },
        Math.max(1000, this.o.lockDurationMs / 3),
      );
      st.startedAt ??= new Date().toISOString();
      delete st.finishedAt;
      this.setPhase(run, st, "Draining", "finding the node's agent");

      const node = current();
      if (!node) throw new NodeFailure("the Node is gone");
      const identity = nodeIdentity(node);
      let agent = await this.o.agents.find(identity);
      if (!agent)
        throw new NodeFailure(
          `no agent on the fleet server reports for ${identity.fleetId ? `fleet node ${identity.fleetId}` : `host ${identity.hostname}`}`,
        );
      st.fleetNode = agent.id;
      let jobId = lock.job;
      const inFlight = s.kind === "os-release" && updateInFlight(agent);
      if (!jobId && !inFlight && alreadyDone(s, agent)) {
        // Nothing to do: no cordon, no drain (also what a resumed node whose update finished sees).
        log(`already on ${s.name}`);
      } else {
        if (!jobId && !inFlight) {
          await cordon(this.kube, current() ?? node, run.name);
          cordoned = true;
          this.setPhase(run, st, "Draining", "evicting pods");
          const result = await this.drainNode(run, st, name, s, signal);
          if (!result.drained) {
            await this.blocked(run, st, name, s, result);
            return;
          }
          this.setPhase(run, st, "Updating", `drained (${result.evicted} pods evicted); asking the agent`);
          jobId = await this.o.agents.start(agent.id, workFor(s));
          st.job = jobId;
          await this.locks.renew(lock, jobId);
          log(`job ${jobId} for ${s.description}`);
        } else {
          cordoned = true;
          if (jobId) st.job = jobId;
          this.setPhase(
            run,
            st,
            "Updating",
            jobId ? `resumed: waiting for job ${jobId}` : "resumed: an update is under way",
          );
        }
        agent = await this.waitDone(run, st, name, s, agent.id, jobId, signal);
      }
      const after = current();
      if (after) await uncordon(this.kube, after, run.name);
      st.release = agent.release ?? undefined;
      delete st.blockedBy;
      delete st.blockedSince;
      this.finish(run, st, "Succeeded", `running ${agent.release ?? s.name}`);
      log(`done: ${st.message}`);
    } catch (e) {
      const why = signal.reason as Stop | undefined;
      if (signal.aborted && why === "shutdown") return;
      if (signal.aborted && why === "node-deleted") {
        this.finish(run, st, "Skipped", "the Node was deleted while it held the slot");
        log("the Node was deleted; slot released");
        return;
      }
      if (signal.aborted) {
        await this.uncordonAfter(run, name, cordoned);
        if (run.nodes.has(name)) this.setPhase(run, st, "Pending", `stopped: ${why}`);
        return;
      }
      const reason = e instanceof NodeFailure || e instanceof BerthError ? e.message : `${kubeError(e)}`;
      log(`failed: ${reason}`);
      await this.uncordonAfter(run, name, cordoned);
      this.finish(run, st, "Failed", reason);
    } finally {
      if (renewTimer) clearInterval(renewTimer);
      const why = signal.reason as Stop | undefined;
      if (lock && !(signal.aborted && why === "shutdown")) {
        // The result first, then the slot: a leader that dies in between finds the slot and the
        // result, and only gives the slot back.
        await this.persisted(run);
        await this.locks.release(lock).catch((e) => log(`releasing the slot: ${kubeError(e)}`));
      }
    }
  }

  /** Uncordons a node this plan cordoned, after a failure or an interruption (best effort). */
  private async uncordonAfter(run: PlanRun, name: string, cordoned: boolean): Promise<void> {
    const node = this.nodes!.get(name);
    if (!node || !cordoned) return;
    try {
      await uncordon(this.kube, node, run.name);
    } catch (e) {
      this.o.log(`plan ${run.name}: node ${name}: uncordon: ${kubeError(e)}`);
    }
  }

  private finish(run: PlanRun, st: NodeStatus, phase: NodePhase, message: string): void {
    st.finishedAt = new Date().toISOString();
    run.lastNodeTransitionAt = new Date();
    this.setPhase(run, st, phase, message);
  }

  private async drainNode(
    run: PlanRun,
    st: NodeStatus,
    name: string,
    s: PlanSettings,
    signal: AbortSignal,
  ): Promise<DrainResult> {
    return drain(this.kube, name, {
      force: s.force,
      gracePeriodSeconds: s.gracePeriodSeconds,
      blockedTimeoutMs: s.drainTimeoutMs,
      podDeletionTimeoutMs: s.podDeletionTimeoutMs,
      retryMs: this.o.evictRetryMs,
      signal,
      onBlocked: (b) => {
        if (b) {
          st.blockedBy = b.budget;
          st.blockedSince = b.since.toISOString();
          this.setPhase(
            run,
            st,
            "Draining",
            `blocked by PDB ${b.budget} since ${st.blockedSince} (evicting ${b.pod})`,
          );
          this.o.log(`plan ${run.name}: node ${name}: ${st.message}`);
        } else {
          delete st.blockedBy;
          delete st.blockedSince;
          this.setPhase(run, st, "Draining", "evicting pods");
        }
      },
    });
  }

  /** A drain a PDB kept blocked past the plan's timeout: pause the plan or skip the node. */
  private async blocked(
    run: PlanRun,
    st: NodeStatus,
    name: string,
    s: PlanSettings,
    r: DrainResult & { drained: false },
  ): Promise<void> {
    const since = r.blocked.since.toISOString();
    const what = `drain blocked by PDB ${r.blocked.budget} since ${since} for ${formatDuration(s.drainTimeoutMs)}`;
    await this.uncordonAfter(run, name, true);
    if (s.onDrainTimeout === "Skip") {
      this.finish(run, st, "Skipped", `${what}: skipped`);
      return;
    }
    this.setPhase(run, st, "Blocked", `${what}: plan paused`);
    await this.requestPause(run, "DrainBlocked", `node ${name}: ${what}`);
  }

  /** Polls the agent (and watches the Node) until the node runs the target and is Ready. */
  private async waitDone(
    run: PlanRun,
    st: NodeStatus,
    name: string,
    s: PlanSettings,
    agentId: string,
    jobId: string | undefined,
    signal: AbortSignal,
  ) {
    const deadline = Date.now() + s.nodeTimeoutMs;
    for (;;) {
      if (signal.aborted) throw new BerthError("interrupted");
      const agent = await this.o.agents.get(agentId);
      const job = jobId ? await this.o.agents.job(jobId) : undefined;
      const out = outcome(s, agent, job);
      if (!out.done && out.failed) throw new NodeFailure(out.failed);
      const ready = nodeReady(this.nodes!.get(name));
      if (out.done && ready) return agent;
      const waiting = out.done ? "agent reports good; waiting for the Node to be Ready" : out.waiting;
      const phase: NodePhase = out.done ? "Verifying" : "Updating";
      if (st.phase !== phase || st.message !== waiting) this.setPhase(run, st, phase, waiting);
      if (Date.now() > deadline)
        throw new NodeFailure(`not done within nodeTimeout ${formatDuration(s.nodeTimeoutMs)}: ${waiting}`);
      await sleep(this.o.pollMs, signal);
    }
  }
}
