// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: take the Lease
// when it is free or its holder has not renewed for a lease duration (measured on our own clock from
// when we last saw it change, so clock skew between machines does not matter), renew it every retry
// period, give up leading when renewals fail for the renew deadline, and hand it back on shutdown.
// Hand-written: @kubernetes/client-node has no leader election.

import type { V1Lease } from "@kubernetes/client-node";
import { BerthError } from "../common/errors.ts";
import { type Kube, kubeError, microTime, statusCode } from "./kube.ts";
import { sleep } from "./sleep.ts";

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
  log?: (line: string) => void;
}

export class LeaderElector {
  private readonly o: Required<Omit<LeaderOptions, "log">> & { log: (line: string) => void };
  /** The Lease record as last seen, and when (our clock) it last changed. */
  private observed: { version: string; at: number } = { version: "", at: 0 };

  private readonly kube: Kube;

  constructor(kube: Kube, o: LeaderOptions) {
    this.kube = kube;
    this.o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryMs: 2_000,
      log: () => {},
      ...o,
    };
  }

  /** One attempt to take or keep the Lease; true when we hold it afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity, leaseDurationMs } = this.o;
    const now = new Date();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.max(1, Math.round(leaseDurationMs / 1000)),
      renewTime: microTime(now),
    };
    let lease: V1Lease;
    try {
      lease = await this.kube.coordination.readNamespacedLease({ namespace, name });
    } catch (e) {
      if (statusCode(e) !== 404) throw e;
      try {
        const made = await this.kube.coordination.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 } as never,
          },
        });
        this.observed = { version: made.metadata?.resourceVersion ?? "", at: Date.now() };
        return true;
      } catch (e2) {
        if (statusCode(e2) === 409) return false;
        throw e2;
      }
    }
    const version = lease.metadata?.resourceVersion ?? "";
    if (version !== this.observed.version) this.observed = { version, at: Date.now() };
    const holder = lease.spec?.holderIdentity ?? "";
    const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (holder && holder !== identity && this.observed.at + duration > Date.now()) return false;
    const taking = holder !== identity;
    const acquireTime = taking ? microTime(now) : microTime(new Date(lease.spec?.acquireTime ?? now));
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (taking ? 1 : 0);
    try {
      const updated = await this.kube.coordination.replaceNamespacedLease({
        namespace,
        name,
        body: {
          metadata: { name, namespace, resourceVersion: version },
          spec: { ...spec, acquireTime, leaseTransitions: transitions } as never,
        },
      });
      this.observed = { version: updated.metadata?.resourceVersion ?? "", at: Date.now() };
      if (taking) this.o.log(`leader: took the lease ${namespace}/${name}${holder ? ` from ${holder}` : ""}`);
      return true;
    } catch (e) {
      if (statusCode(e) === 409) return false;
      throw e;
    }
  }

  /** Gives the Lease back (holder cleared, duration 1 s) so a standby takes over at once. */
  async release(): Promise<void> {
    const { namespace, name, identity } = this.o;
    try {
      const lease = await this.kube.coordination.readNamespacedLease({ namespace, name });
      if (lease.spec?.holderIdentity !== identity) return;
      await this.kube.coordination.replaceNamespacedLease({
        namespace,
        name,
        body: {
          metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
          spec: {
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: microTime(new Date()),
            acquireTime: microTime(new Date(lease.spec?.acquireTime ?? Date.now())),
            leaseTransitions: lease.spec?.leaseTransitions ?? 0,
          } as never,
        },
      });
    } catch (e) {
      this.o.log(`leader: could not release the lease: ${kubeError(e)}`);
    }
  }

  /**
   * Waits to lead, then runs `lead` with a signal that aborts when leadership is lost or `stop`
   * aborts. Resolves when `stop` ended it (the Lease handed back); rejects when leadership was lost,
   * so the process exits and its Deployment restarts it as a standby, as client-go's users do.
   */
  async run(lead: (signal: AbortSignal) => Promise<void>, stop: AbortSignal): Promise<void> {
    const { retryMs, renewDeadlineMs, log } = this.o;
    while (!stop.aborted) {
      try {
        if (await this.tryAcquireOrRenew()) break;
      } catch (e) {
        log(`leader: ${kubeError(e)}`);
      }
      await sleep(retryMs, stop);
    }
    if (stop.aborted) return;
    log(`leader: leading as ${this.o.identity}`);
    const leading = new AbortController();
    stop.addEventListener("abort", () => leading.abort(), { once: true });
    let finished = false;
    const work = lead(leading.signal).finally(() => {
      finished = true;
      leading.abort();
    });
    let lastRenew = Date.now();
    let lost = false;
    while (!leading.signal.aborted) {
      await sleep(retryMs, leading.signal);
      if (leading.signal.aborted) break;
      try {
        if (await this.tryAcquireOrRenew()) lastRenew = Date.now();
      } catch (e) {
        log(`leader: renewing: ${kubeError(e)}`);
      }
      if (Date.now() - lastRenew > renewDeadlineMs) {
        lost = true;
        leading.abort();
      }
    }
    try {
      await work;
    } finally {
      if (!lost) await this.release();
    }
    if (lost) throw new BerthError(`lost the leader lease ${this.o.namespace}/${this.o.name}`);
    if (!finished && !stop.aborted) throw new BerthError("the operator stopped leading unexpectedly");
  }
}
