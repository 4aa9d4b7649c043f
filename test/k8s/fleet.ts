// A real fleet server (`berth server`, a child process on a SQLite database in a temp directory) and
// simulated node agents that enrol with it and report to it over HTTP exactly as docs/fleet.md says
// (Ed25519 node keys, signed requests, full then delta reports, jobs fetched and answered). An agent
// carries out an update-apply the way a Berth node does, on the Kubernetes side too: it reports
// downloading, applied, rebooting; its Node goes NotReady for the reboot and comes back Ready; then it
// reports the new release and "good", or, when told to, comes back on the old release "rolled-back".

import { type ChildProcess, spawn } from "node:child_process";
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { join } from "node:path";
import { BERTH, run, tempDir } from "../helpers.ts";

export interface Fleet {
  url: string;
  /** Admin API token. */
  token: string;
  enrollToken: string;
  process: ChildProcess;
  api: (method: string, path: string, body?: unknown) => Promise<unknown>;
  stop: () => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFleet(): Promise<Fleet> {
  const dir = tempDir("berth-k8s-fleet-");
  const db = `sqlite:${join(dir, "fleet.sqlite")}`;
  const init = await run(BERTH, ["server", "init", "--db", db]);
  const token = /berth-api-[A-Za-z0-9_-]+/.exec(init.stdout)?.[0];
  if (init.code !== 0 || !token) throw new Error(`berth server init: ${init.stderr}${init.stdout}`);
  const { createServer } = await import("node:net");
  const port = await new Promise<number>((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
  const child = spawn(
    BERTH,
    [
      "server",
      "--listen",
      `127.0.0.1:${port}`,
      "--db",
      db,
      "--advisory-db",
      join(dir, "no-advisories.db"),
      "--tick",
      "500",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: process.env },
  );
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  process.on("exit", () => child.kill("SIGKILL"));
  const url = `http://127.0.0.1:${port}`;
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`berth server exited: ${log}`);
    try {
      await api("GET", "/api/v1/whoami");
      break;
    } catch {
      if (i > 300) throw new Error(`berth server did not answer: ${log}`);
      await sleep(200);
    }
  }
  const enroll = (await api("POST", "/api/v1/tokens", {
    kind: "enroll",
    uses: 100000,
    ttlSeconds: 6 * 3600,
  })) as {
    token: string;
  };
  return {
    url,
    token,
    enrollToken: enroll.token,
    process: child,
    api,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
    },
  };
}

export interface SimBehaviour {
  /** Come back from the reboot on the old release, "rolled-back", with this reason. */
  rollBack?: string;
  /** Milliseconds the apply (download and slot write) takes. */
  applyMs?: number;
  /** Milliseconds the node is NotReady while it reboots. */
  rebootMs?: number;
}

interface Job {
  id: string;
  kind: string;
  params: { version?: string; reboot?: boolean; name?: string };
}

/** One simulated node agent: its own key, its own report sequence. */
export class SimAgent {
  readonly hostname: string;
  id = "";
  release: string;
  state = "good";
  reason?: string;
  lastAttempt: { version: string; at: string; result: string; reason?: string } | null = null;
  booted = "a";
  slots: { name: string; release: string | null; state: string }[];
  /** Every job the server gave this node, in order. */
  readonly jobs: Job[] = [];
  behaviour: SimBehaviour = {};
  private readonly key: KeyObject;
  private readonly publicKey: string;
  private seq = 0;
  private lastTime = 0;
  private readonly fleet: Fleet;
  private readonly setReady: (ready: boolean) => Promise<void>;
  private busy = false;

  constructor(fleet: Fleet, hostname: string, release: string, setReady: (ready: boolean) => Promise<void>) {
    this.fleet = fleet;
    this.hostname = hostname;
    this.release = release;
    this.slots = [
      { name: "a", release, state: "good" },
      { name: "b", release: null, state: "empty" },
    ];
    this.setReady = setReady;
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    this.key = privateKey;
    this.publicKey = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
  }

  async enroll(): Promise<void> {
    const token = this.fleet.enrollToken;
    const proof = sign(
      null,
      Buffer.from(`berth-enroll-1\n${token}\n${this.publicKey}\n${this.hostname}`),
      this.key,
    ).toString("base64");
    const r = await fetch(`${this.fleet.url}/api/v1/enroll`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        token,
        publicKey: this.publicKey,
        hostname: this.hostname,
        proof,
        agentVersion: "sim",
      }),
    });
    const body = (await r.json()) as { nodeId: string };
    if (r.status !== 201) throw new Error(`enroll ${this.hostname}: ${r.status} ${JSON.stringify(body)}`);
    this.id = body.nodeId;
    await this.report(true);
  }

  private async signed(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    const text = body === undefined ? "" : JSON.stringify(body);
    this.lastTime = Math.max(Date.now(), this.lastTime + 1);
    const time = String(this.lastTime);
    const hash = createHash("sha256").update(text).digest("hex");
    const sig = sign(
      null,
      Buffer.from(`berth-request-1\n${method}\n${path}\n${time}\n${hash}`),
      this.key,
    ).toString("base64");
    const r = await fetch(`${this.fleet.url}${path}`, {
      method,
      headers: {
        "x-berth-node": this.id,
        "x-berth-time": time,
        "x-berth-signature": sig,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : text,
    });
    return { status: r.status, json: await r.json().catch(() => undefined) };
  }

  updateStatus() {
    return {
      state: this.state,
      booted: this.booted,
      slots: this.slots,
      lastAttempt: this.lastAttempt,
      ...(this.reason ? { reason: this.reason } : {}),
    };
  }

  /** A report of release and update status (a full one first, then deltas); jobs on the answer are run. */
  async report(full = false): Promise<void> {
    const seq = ++this.seq;
    const body = {
      seq,
      base: full ? 0 : seq - 1,
      full,
      time: new Date().toISOString(),
      hostname: this.hostname,
      release: this.release,
      os: { id: "berth", versionId: this.release },
      update: this.updateStatus(),
    };
    const r = await this.signed("POST", "/api/v1/agent/reports", body);
    if (r.status !== 200) throw new Error(`report ${this.hostname}: ${r.status} ${JSON.stringify(r.json)}`);
    for (const j of (r.json as { jobs: Job[] }).jobs) void this.carryOut(j);
  }

  /** Fetches queued work, as the agent does between reports. */
  async poll(): Promise<void> {
    const r = await this.signed("GET", "/api/v1/agent/jobs");
    if (r.status !== 200) return;
    for (const j of (r.json as { jobs: Job[] }).jobs) void this.carryOut(j);
  }

  private async jobState(id: string, state: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.signed("POST", `/api/v1/agent/jobs/${id}`, { state, ...extra });
  }

  private async carryOut(job: Job): Promise<void> {
    if (this.jobs.some((j) => j.id === job.id)) return;
    this.jobs.push(job);
    if (this.busy) {
      await this.jobState(job.id, "failed", { error: "another job is running" });
      return;
    }
    this.busy = true;
    try {
      await this.jobState(job.id, "running");
      if (job.kind !== "update-apply") {
        await this.jobState(job.id, "succeeded", { result: { kind: job.kind } });
        return;
      }
      const version = job.params.version!;
      const b = this.behaviour;
      this.state = "downloading";
      delete this.reason;
      await this.report();
      await sleep(b.applyMs ?? 200);
      const other = this.booted === "a" ? "b" : "a";
      this.slots = this.slots.map((s) =>
        s.name === other ? { name: other, release: version, state: "trying" } : s,
      );
      this.state = "applied";
      await this.report();
      this.state = "rebooting";
      await this.report();
      await this.setReady(false);
      await sleep(b.rebootMs ?? 500);
      const at = new Date().toISOString();
      if (b.rollBack) {
        this.slots = this.slots.map((s) => (s.name === other ? { ...s, state: "bad" } : s));
        this.state = "rolled-back";
        this.reason = b.rollBack;
        this.lastAttempt = { version, at, result: "rolled-back", reason: b.rollBack };
      } else {
        this.booted = other;
        this.release = version;
        this.slots = this.slots.map((s) => (s.name === other ? { ...s, state: "good" } : s));
        this.state = "good";
        this.lastAttempt = { version, at, result: "good" };
      }
      await this.setReady(true);
      await this.report();
      if (b.rollBack) await this.jobState(job.id, "failed", { error: `rolled back: ${b.rollBack}` });
      else await this.jobState(job.id, "succeeded", { result: { release: version } });
    } finally {
      this.busy = false;
    }
  }
}

/** Agents for many Nodes, polling for work while the test runs. */
export class SimAgents {
  readonly agents = new Map<string, SimAgent>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly fleet: Fleet;

  constructor(fleet: Fleet) {
    this.fleet = fleet;
  }

  async add(
    hostname: string,
    release: string,
    setReady: (ready: boolean) => Promise<void>,
  ): Promise<SimAgent> {
    const a = new SimAgent(this.fleet, hostname, release, setReady);
    await a.enroll();
    this.agents.set(hostname, a);
    return a;
  }

  /** Every agent asks for work every `ms` (the real agent does on each report; the simulation is quicker). */
  start(ms = 500): void {
    const tick = async () => {
      await Promise.allSettled([...this.agents.values()].map((a) => a.poll()));
      if (!this.stopped) this.timer = setTimeout(tick, ms);
    };
    this.timer = setTimeout(tick, ms);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  get(hostname: string): SimAgent {
    return this.agents.get(hostname)!;
  }
}
