// Simulated nodes, in the spirit of osquery-perf: many agents in one process, each with its own key,
// queue and inventory drawn from real Debian packages, talking to a real server through the same
// client, queue and sender as `berth agent`. Used by the durability and scale tests and bench/fleet.ts.

import { BerthError } from "../common/errors.ts";
import type { Container, Job, Package } from "../server/api-schemas.ts";
import { newNodeKey, privateKeyFromPem } from "../server/signature.ts";
import { enroll, FleetClient } from "./client.ts";
import type { Snapshot } from "./delta.ts";
import { ReportQueue } from "./queue.ts";
import { sendQueue } from "./reporter.ts";
import { AgentState, MemoryStore, type Store } from "./state.ts";

/** A small, fast, seeded random generator (mulberry32), so runs are repeatable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const hex = (r: () => number, n: number) =>
  Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join("");

export const SIM_IMAGES = [
  "nginx:1.27",
  "redis:7.4",
  "postgres:17",
  "mariadb:11.4",
  "rabbitmq:4.0",
  "memcached:1.6",
  "httpd:2.4",
  "mongo:8.0",
  "registry.example/app/api:2026.11.3",
  "registry.example/app/worker:2026.11.3",
  "registry.example/app/web:2026.11.2",
];

export interface SimulatedInventory {
  /** Real packages to draw from (a dpkg status or a Packages index). */
  pool: Package[];
  minPackages: number;
  maxPackages: number;
  containers: number;
  codename: string;
}

/** One node's starting snapshot: a random subset of the pool and `containers` running containers. */
export function simulatedSnapshot(r: () => number, i: number, o: SimulatedInventory): Snapshot {
  const n = Math.min(o.pool.length, o.minPackages + Math.floor(r() * (o.maxPackages - o.minPackages + 1)));
  // A partial Fisher-Yates shuffle of the pool's indices.
  const idx = o.pool.map((_, k) => k);
  for (let k = 0; k < n; k++) {
    const j = k + Math.floor(r() * (idx.length - k));
    [idx[k], idx[j]] = [idx[j]!, idx[k]!];
  }
  const packages = idx
    .slice(0, n)
    .map((k) => o.pool[k]!)
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const containers: Container[] = Array.from({ length: o.containers }, (_, c) => newContainer(r, c));
  return {
    hostname: `sim-${String(i).padStart(5, "0")}`,
    release: "2026.11.1",
    os: { id: "debian", versionId: "13", codename: o.codename, prettyName: "Berth (Debian 13)" },
    kernels: [
      {
        release: "6.12.57+deb13-amd64",
        upstream: "6.12.57",
        package: "linux-image-6.12.57+deb13-amd64",
        packageVersion: "6.12.57-1",
        running: true,
      },
    ],
    packages,
    containers,
    harden: {
      profile: "security-mode",
      score: 60 + Math.floor(r() * 40),
      rules: 324,
      failing: Array.from(
        { length: 3 + Math.floor(r() * 10) },
        (_, k) => `SIM-${(k * 7 + Math.floor(r() * 5)) % 40}`,
      )
        .filter((v, k, a) => a.indexOf(v) === k)
        .sort(),
      checkedAt: new Date().toISOString(),
    },
    patches: [],
    update: {
      state: "good",
      booted: "a",
      slots: [{ name: "a", release: "2026.11.1", state: "good" }],
      lastAttempt: null,
    },
  };
}

function newContainer(r: () => number, c: number): Container {
  return {
    id: hex(r, 64),
    name: `app-${c}-${hex(r, 4)}`,
    image: pick(r, SIM_IMAGES),
    imageId: `sha256:${hex(r, 64)}`,
    state: "running",
  };
}

/** A small change, as a real node has between two check-ins: a container replaced, now and then a package upgraded. */
export function mutate(r: () => number, s: Snapshot): Snapshot {
  const next: Snapshot = { ...s, containers: [...s.containers], packages: s.packages };
  if (next.containers.length && r() < 0.5) {
    const k = Math.floor(r() * next.containers.length);
    next.containers[k] = { ...newContainer(r, k), image: next.containers[k]!.image };
  }
  if (next.packages.length && r() < 0.2) {
    const k = Math.floor(r() * next.packages.length);
    const p = next.packages[k]!;
    next.packages = [...next.packages];
    next.packages[k] = { ...p, version: `${p.version}+sim1`, sourceVersion: `${p.sourceVersion}+sim1` };
  }
  return next;
}

/** One simulated node: its key, its queue (in memory or on disk), its inventory. */
export class SimulatedNode {
  snapshot: Snapshot;
  readonly store: Store;
  readonly queue: ReportQueue;
  client?: FleetClient;
  /** Highest seq the server has acknowledged. */
  acked = 0;
  jobs: Job[] = [];

  constructor(snapshot: Snapshot, stateDir?: string) {
    this.snapshot = snapshot;
    this.store = stateDir ? new AgentState(stateDir) : new MemoryStore();
    this.queue = new ReportQueue(this.store);
  }

  async enroll(server: string, token: string): Promise<string> {
    const key = newNodeKey();
    const pk = privateKeyFromPem(key.privatePem);
    const r = await enroll(server, {
      token,
      publicKey: key.publicKey,
      hostname: this.snapshot.hostname,
      key: pk,
    });
    this.client = new FleetClient(server, r.nodeId, pk);
    return r.nodeId;
  }

  get nodeId(): string {
    if (!this.client) throw new BerthError("not enrolled");
    return this.client.nodeId;
  }

  /** Queues the current snapshot; the report goes out with the next send(). */
  async queueReport(): Promise<number> {
    return (await this.queue.enqueue(this.snapshot)).seq;
  }

  /** Sends what is queued; resolves with the number of requests made. */
  async send(): Promise<number> {
    if (!this.client) throw new BerthError("not enrolled");
    const sent = await sendQueue(this.client, this.queue);
    this.acked = this.queue.acked();
    if (sent.jobs.length) this.jobs = sent.jobs;
    return sent.reports;
  }

  /** A check-in: queue a report of the current snapshot and send the queue. */
  async checkIn(): Promise<number> {
    await this.queueReport();
    return this.send();
  }

  /** Tells the server how a job went. */
  async finishJob(id: string, state: "running" | "succeeded" | "failed", error?: string): Promise<number> {
    if (!this.client) throw new BerthError("not enrolled");
    const a = await this.client.request("POST", `/api/v1/agent/jobs/${encodeURIComponent(id)}`, {
      state,
      ...(error ? { error } : {}),
    });
    return a.status;
  }
}
