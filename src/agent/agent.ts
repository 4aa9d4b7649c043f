// The node agent: enrol once, then every interval (with jitter) read the node, queue the report as a
// delta against the last one, send the queue, and carry out the work the server hands back.

import { spawn } from "node:child_process";
import { hostname as osHostname } from "node:os";
import { BerthError } from "../common/errors.ts";
import { BERTH_VERSION } from "../common/version.ts";
import type { HardenState, Job, UpdateStatus } from "../server/api-schemas.ts";
import { newNodeKey, privateKeyFromPem } from "../server/signature.ts";
import { enroll, FleetClient, Unreachable } from "./client.ts";
import {
  collectContainers,
  collectHarden,
  collectInventory,
  collectPatches,
  collectUpdate,
} from "./collect.ts";
import type { Snapshot } from "./delta.ts";
import { type JobRecord, jobRecords, readJob, resolveInterrupted, runJob, writeJob } from "./jobs.ts";
import { ReportQueue } from "./queue.ts";
import { sendQueue } from "./reporter.ts";
import { AgentState, type Identity } from "./state.ts";

export interface EnrollOptions {
  server: string;
  token: string;
  stateDir: string;
  hostname?: string;
  force?: boolean;
}

export async function enrollAgent(o: EnrollOptions): Promise<Identity> {
  const state = new AgentState(o.stateDir);
  const have = state.identity();
  if (have && !o.force)
    throw new BerthError(`already enrolled as ${have.nodeId} with ${have.server} (--force enrols again)`);
  const key = newNodeKey();
  const host = o.hostname ?? osHostname();
  const r = await enroll(o.server, {
    token: o.token,
    publicKey: key.publicKey,
    hostname: host,
    key: privateKeyFromPem(key.privatePem),
    agentVersion: BERTH_VERSION,
  });
  const id: Identity = {
    server: o.server.replace(/\/+$/, ""),
    nodeId: r.nodeId,
    publicKey: key.publicKey,
    enrolledAt: new Date().toISOString(),
    interval: r.interval,
    ...(o.hostname ? { hostname: o.hostname } : {}),
  };
  // A fresh enrolment starts a fresh queue: the new node id has no reports yet.
  for (const f of state.list("queue")) state.remove(`queue/${f}`);
  state.remove("snapshot.json");
  state.remove("acked.json");
  await state.saveIdentity(id, key.privatePem);
  return id;
}

export interface AgentOptions {
  stateDir: string;
  /** berth harden profile for the node's score; undefined: no hardening check. */
  hardenProfile?: string;
  /** Seconds between hardening checks (they also run after every job). */
  hardenInterval?: number;
  /** Advisory database for the hardening kernel rule. */
  advisoryDb?: string;
  log?: (line: string) => void;
  /** Command that reboots the node for an update job. */
  rebootCommand?: string[];
}

export interface CycleResult {
  seq: number;
  acked: number;
  queued: number;
  jobs: JobRecord[];
}

export class Agent {
  readonly state: AgentState;
  readonly identity: Identity;
  private readonly client: FleetClient;
  private readonly queue: ReportQueue;
  private readonly o: AgentOptions;
  private inFlight: UpdateStatus["state"] | undefined;
  private repository: string | undefined;

  constructor(o: AgentOptions) {
    this.o = o;
    this.state = new AgentState(o.stateDir);
    this.identity = this.state.requireIdentity();
    this.client = new FleetClient(
      this.identity.server,
      this.identity.nodeId,
      privateKeyFromPem(this.state.privateKeyPem()),
    );
    this.queue = new ReportQueue(this.state);
  }

  private log(line: string) {
    this.o.log?.(line);
  }

  private hardenDue(): boolean {
    if (!this.o.hardenProfile) return false;
    const last = this.state.readJson<HardenState & { profileWanted?: string }>("harden.json");
    if (!last || last.profile !== this.o.hardenProfile) return true;
    const age = (Date.now() - Date.parse(last.checkedAt)) / 1000;
    return !(age < (this.o.hardenInterval ?? 6 * 3600));
  }

  async checkHarden(): Promise<void> {
    if (!this.o.hardenProfile) return;
    const h = await collectHarden(this.o.hardenProfile, this.o.advisoryDb);
    await this.state.writeJson("harden.json", h);
  }

  /** The node now; the hardening result is the last one checked (cycle() runs checks when due). */
  async snapshot(): Promise<Snapshot> {
    const inv = await collectInventory();
    const update = await collectUpdate();
    if (this.inFlight) update.state = this.inFlight;
    return {
      hostname: this.identity.hostname ?? inv.hostname,
      release: inv.release,
      ...(inv.os ? { os: inv.os } : {}),
      kernels: inv.kernels,
      packages: inv.packages,
      containers: await collectContainers(),
      harden: this.o.hardenProfile ? (this.state.readJson<HardenState>("harden.json") ?? null) : null,
      patches: collectPatches(),
      update,
    };
  }

  /** Sends the queue in order until it is empty; returns the jobs the last acknowledgement carried. */
  async flush(): Promise<Job[]> {
    const sent = await sendQueue(this.client, this.queue, (l) => this.log(l));
    if (sent.interval) this.identity.interval = sent.interval;
    return sent.jobs;
  }

  /** Job outcomes the server has not yet taken. */
  private async reportJobs(): Promise<void> {
    for (const r of jobRecords(this.state)) {
      if (r.phase !== "done" || r.reported || !r.outcome) continue;
      const a = await this.client.request<unknown>(
        "POST",
        `/api/v1/agent/jobs/${encodeURIComponent(r.id)}`,
        r.outcome,
      );
      if (a.status === 200 || a.status === 404 || a.status === 409) {
        r.reported = true;
        await writeJob(this.state, r);
      }
    }
  }

  /** Jobs that a kill or a reboot cut short, judged now. */
  private async resolveInterrupted(snapshot: Snapshot): Promise<void> {
    for (const r of jobRecords(this.state)) {
      if (r.phase === "done") continue;
      r.outcome = resolveInterrupted(r, { release: snapshot.release, updateState: snapshot.update.state });
      r.phase = "done";
      await writeJob(this.state, r);
      this.log(`job ${r.id} (${r.kind}) was interrupted: ${r.outcome?.state}`);
    }
  }

  private async queueNow(): Promise<void> {
    await this.queue.enqueue(await this.snapshot());
  }

  private async doJobs(jobs: Job[]): Promise<JobRecord[]> {
    const done: JobRecord[] = [];
    for (const job of jobs) {
      if (readJob(this.state, job.id)) continue; // already run (or running) here: never twice
      this.log(`job ${job.id}: ${job.kind} ${JSON.stringify(job.params)}`);
      if (job.kind === "update-apply") {
        this.inFlight = "downloading";
        await this.queueNow()
          .then(() => this.flush())
          .catch(() => {});
      }
      const record = await runJob(this.state, job, {
        repository: this.repository,
        started: async (j) => {
          await this.client.request("POST", `/api/v1/agent/jobs/${encodeURIComponent(j.id)}`, {
            state: "running",
          });
        },
        rescan: async () => {
          this.inFlight = undefined;
          if (this.o.hardenProfile) await this.checkHarden();
        },
        reboot: async () => {
          this.inFlight = "rebooting";
          await this.queueNow();
          await this.flush().catch(() => {});
          const cmd = this.o.rebootCommand ?? ["systemctl", "reboot"];
          spawn(cmd[0]!, cmd.slice(1), { stdio: "ignore", detached: true }).unref();
        },
      });
      this.inFlight = record.phase === "rebooting" ? "rebooting" : undefined;
      done.push(record);
      if (record.phase === "rebooting") break; // the node is going down
    }
    return done;
  }

  /** One round: read, queue, send, work, report. */
  async cycle(): Promise<CycleResult> {
    if (!this.repository) {
      const c = await this.client
        .request<{ repository?: string }>("GET", "/api/v1/agent/config")
        .catch(() => undefined);
      if (c?.status === 200 && c.body.repository)
        this.repository = new URL(c.body.repository, `${this.identity.server}/`).toString();
    }
    const snap = await this.snapshot();
    await this.resolveInterrupted(snap);
    const report = await this.queue.enqueue(snap);
    let jobs = await this.flush();
    await this.reportJobs();
    const done: JobRecord[] = [];
    // Work, then report the node as the work left it, until the server has nothing more.
    for (let round = 0; round < 10 && jobs.length; round++) {
      const ran = await this.doJobs(jobs);
      done.push(...ran);
      if (ran.some((r) => r.phase === "rebooting")) break;
      await this.reportJobs();
      if (!ran.length) break;
      await this.queueNow();
      jobs = await this.flush();
      await this.reportJobs();
    }
    // The hardening check is slow (a file-system walk): it runs after the first report is out, and its
    // result goes in a report of its own.
    if (this.hardenDue()) {
      await this.checkHarden();
      await this.queueNow();
      await this.flush();
    }
    return {
      seq: this.queue.last()?.seq ?? report.seq,
      acked: this.queue.acked(),
      queued: this.queue.seqs().length,
      jobs: done,
    };
  }

  /** Cycles until `signal` aborts; an unreachable server only delays the next attempt. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        const r = await this.cycle();
        failures = 0;
        this.log(`report ${r.seq} queued, ${r.acked} acknowledged, ${r.queued} waiting`);
      } catch (e) {
        if (!(e instanceof Unreachable)) throw e;
        failures++;
        this.log(`${(e as Error).message}; ${this.queue.seqs().length} reports wait in the queue`);
      }
      const base = failures
        ? Math.min(this.identity.interval, 5 * 2 ** Math.min(failures, 6))
        : this.identity.interval;
      const wait = base * 1000 * (0.9 + Math.random() * 0.2);
      await new Promise<void>((res) => {
        const t = setTimeout(res, wait);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}
