// The fleet at scale, in the spirit of osquery-perf: N simulated nodes in this one process (real Ed25519
// keys, the agent's own queue and sender, inventories of 100-800 real bookworm packages, 25 containers
// each, small deltas), against one `berth server` process on this machine, with SQLite and with
// PostgreSQL. Measured: enrolment of every node (a full first report each), check-ins at the 60 s
// interval with p50/p99 latency, the server's CPU and memory, the fleet-wide re-evaluation after an
// advisory database update, and the largest fleet held with p99 under 100 ms (the same nodes checking
// in faster: a rate of r check-ins/s stands for a fleet of 60*r nodes). Printed beside Fleet's reference
// architecture (one 512-CPU-unit / 4 GB task per 1,000 hosts, so ten for 10,000) as a ratio.
//
//   node bench/fleet.ts                     both backends, 10,000 nodes
//   BERTH_BENCH_NODES=2000 node bench/fleet.ts sqlite
//
// Nothing here asserts a timing; the client shares the machine's two cores with the server, and its CPU
// is printed too.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { mutate, rng, SimulatedNode, simulatedSnapshot } from "../src/agent/simulate.ts";
import { mapLimit } from "../src/common/map-limit.ts";
import { freePort } from "../src/os/qemu.ts";
import { Archive } from "../src/pkg/archive.ts";
import { streamDeb822 } from "../src/pkg/deb822.ts";
import { repositoriesOf, resolveSources } from "../src/pkg/sources.ts";
import { parseSourceField } from "../src/pkg/status.ts";
import { initFleet, issueToken } from "../src/server/admin.ts";
import type { Package } from "../src/server/api-schemas.ts";
import { openFleet } from "../src/server/server.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const DATA = join(ROOT, "../shared/data");
const N = Number(process.env.BERTH_BENCH_NODES ?? 10_000);
const CONTAINERS = 25;
const INTERVAL = 60;
const PG_ADMIN = process.env.BERTH_BENCH_PG ?? "postgres://berth:berth@127.0.0.1:5432/postgres";
const backends = process.argv.slice(2).filter((a) => a === "sqlite" || a === "postgres");
const dir = mkdtempSync(join(tmpdir(), "berth-bench-fleet-"));

// ---- measuring ----------------------------------------------------------------------------------

const TICK = 100; // clock ticks per second (USER_HZ)
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
}
function rssMiB(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}
/**
 * CPU seconds of the PostgreSQL server: the postmaster's own and its reaped children's (cutime/cstime;
 * a backend's time moves there when its connection closes), plus the live backends'. Summing live
 * processes alone goes down when connections close.
 */
function postgresCpu(): number {
  let total = 0;
  for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${p}/comm`, "utf8").trim() !== "postgres") continue;
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
      const parent = readFileSync(`/proc/${f[1]}/comm`, "utf8").trim();
      // f[11..14]: utime, stime, cutime, cstime (proc(5), counted from the state field)
      total +=
        (Number(f[11]) + Number(f[12]) + (parent === "postgres" ? 0 : Number(f[13]) + Number(f[14]))) / TICK;
    } catch {}
  }
  return total;
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

// ---- inputs -------------------------------------------------------------------------------------

/** A pool of real bookworm packages (name, version, architecture, source) from Berth's archive cache. */
async function bookwormPool(size: number): Promise<Package[]> {
  const archive = new Archive();
  const [repo] = repositoriesOf(resolveSources({ suites: ["bookworm"] }));
  const path = await archive.packagesIndex(await archive.release(repo!), "main");
  const all: Package[] = [];
  for await (const s of streamDeb822(createReadStream(path), {
    fields: new Set(["Package", "Version", "Architecture", "Source"]),
  })) {
    if (!s.Package || !s.Version) continue;
    const src = parseSourceField(s.Source);
    all.push({
      name: s.Package,
      version: s.Version,
      architecture: s.Architecture ?? "amd64",
      status: "installed",
      source: src.name ?? s.Package,
      sourceVersion: src.version ?? s.Version,
    });
  }
  const r = rng(2026);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, size);
}

function dbUpdate(db: string, sources: string[]): void {
  const r = spawnSync(BERTH, ["db", "update", "--db", db, ...sources.flatMap((s) => ["--source", s]), "-q"], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`berth db update: ${r.stderr}`);
}

// ---- the server ---------------------------------------------------------------------------------

async function startServer(db: string, advisoryDb: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    BERTH,
    [
      "server",
      "--listen",
      `127.0.0.1:${port}`,
      "--db",
      db,
      "--advisory-db",
      advisoryDb,
      "--interval",
      String(INTERVAL),
      "--tick",
      "1000",
      "-q",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/api/v1/openapi.json`)).ok) return child;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill("SIGKILL");
  throw new Error("the server did not start");
}

interface Result {
  backend: string;
  enrolSeconds: number;
  enrolCpu: number;
  checkins: number;
  p50: number;
  p99: number;
  serverCores: number;
  dbCores: number;
  clientCores: number;
  rss: number;
  peak: number;
  reevalSeconds: number;
  reevalPackages: number;
  largest: number;
  largestP99: number;
}

/** Check-ins of every node spread over `seconds` at `rate` per second; latency of each in ms. */
async function checkIns(
  nodes: SimulatedNode[],
  rate: number,
  seconds: number,
  r: () => number,
): Promise<number[]> {
  const total = Math.round(rate * seconds);
  const lat: number[] = [];
  const t0 = performance.now();
  const inflight = new Set<Promise<void>>();
  for (let k = 0; k < total; k++) {
    const due = t0 + (k / rate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((res) => setTimeout(res, wait));
    const n = nodes[k % nodes.length]!;
    n.snapshot = mutate(r, n.snapshot);
    const p = (async () => {
      const s = performance.now();
      try {
        await n.checkIn();
        lat.push(performance.now() - s);
      } catch {
        lat.push(Number.POSITIVE_INFINITY);
      }
    })();
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }
  await Promise.all(inflight);
  return lat;
}

async function runBackend(backend: "sqlite" | "postgres", pool: Package[], port: number): Promise<Result> {
  let db: string;
  let drop = async () => {};
  if (backend === "sqlite") db = `sqlite:${join(dir, "fleet.sqlite")}`;
  else {
    const name = `berth_bench_fleet_${process.pid}`;
    const c = new pg.Client({ connectionString: PG_ADMIN });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    db = PG_ADMIN.replace(/\/[^/]*$/, `/${name}`);
    drop = async () => {
      const d = new pg.Client({ connectionString: PG_ADMIN });
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await d.end();
    };
  }
  const advisory = join(dir, `advisory-${backend}.sqlite`);
  rmSync(advisory, { force: true });
  dbUpdate(advisory, [`debian-tracker=${DATA}/debian-tracker/tracker-sample.json`]);
  const fleet = await openFleet(db, advisory);
  await initFleet(fleet);
  const { token } = await issueToken(fleet, fleet.db, { kind: "enroll", name: "bench", ttlSeconds: 86400 });
  fleet.matcher.close();
  await fleet.db.close();

  const server = await startServer(db, advisory, port);
  const pid = server.pid!;
  const url = `http://127.0.0.1:${port}`;
  try {
    const r = rng(7);
    const nodes = Array.from(
      { length: N },
      (_, i) =>
        new SimulatedNode(
          simulatedSnapshot(r, i, {
            pool,
            minPackages: 100,
            maxPackages: 800,
            containers: CONTAINERS,
            codename: "bookworm",
          }),
        ),
    );

    // Enrolment: a node id and a full first report for every node.
    let cpu0 = cpuSeconds(pid);
    let t0 = performance.now();
    await mapLimit(nodes, 32, async (n) => {
      await n.enroll(url, token);
      await n.checkIn();
    });
    const enrolSeconds = (performance.now() - t0) / 1000;
    const enrolCpu = cpuSeconds(pid) - cpu0;
    process.stderr.write(`${backend}: ${N} nodes enrolled in ${enrolSeconds.toFixed(1)} s\n`);

    // Steady state: every node every 60 s, for 60 s.
    cpu0 = cpuSeconds(pid);
    const pg0 = backend === "postgres" ? postgresCpu() : 0;
    const self0 = selfCpu();
    t0 = performance.now();
    const lat = await checkIns(nodes, N / INTERVAL, INTERVAL, r);
    const wall = (performance.now() - t0) / 1000;
    const serverCores = (cpuSeconds(pid) - cpu0) / wall;
    const dbCores = backend === "postgres" ? (postgresCpu() - pg0) / wall : 0;
    const clientCores = (selfCpu() - self0) / wall;
    const mem = rssMiB(pid);
    process.stderr.write(
      `${backend}: check-ins p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms\n`,
    );

    // The largest fleet with p99 < 100 ms: double the rate until p99 crosses it, then halve the gap
    // between the last size held and the first one lost, twice (20 s per step).
    let largest = 0;
    let largestP99 = Number.NaN;
    let lost = 0;
    const tryRate = async (fleetSize: number): Promise<boolean> => {
      const p99 = pct(await checkIns(nodes, fleetSize / INTERVAL, 20, r), 99);
      process.stderr.write(`${backend}: ${fleetSize} nodes' rate: p99 ${p99.toFixed(1)} ms\n`);
      if (!(p99 < 100)) return false;
      largest = fleetSize;
      largestP99 = p99;
      return true;
    };
    for (let fleetSize = N; fleetSize <= 64 * N; fleetSize *= 2)
      if (!(await tryRate(fleetSize))) {
        lost = fleetSize;
        break;
      }
    for (let step = 0; step < 2 && lost && largest; step++) {
      const mid = Math.round((largest + lost) / 2 / 500) * 500;
      if (!(await tryRate(mid))) lost = mid;
    }

    // Re-evaluation: the advisory database gains the DSA and DLA lists and the kernel CNA records.
    dbUpdate(advisory, [
      `debian-dsa=${DATA}/debian-tracker/DSA.list`,
      `debian-dla=${DATA}/debian-tracker/DLA.list`,
      `kernel-cna=${DATA}/kernel-cna/cves.jsonl.gz`,
    ]);
    const newGen = await waitForEvaluation(db, advisory);
    process.stderr.write(
      `${backend}: re-evaluated in ${newGen.seconds.toFixed(1)} s (${newGen.packages} packages)\n`,
    );
    return {
      backend,
      enrolSeconds,
      enrolCpu,
      checkins: lat.length,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      serverCores,
      dbCores,
      clientCores,
      rss: mem.rss,
      peak: mem.peak,
      reevalSeconds: newGen.seconds,
      reevalPackages: newGen.packages,
      largest,
      largestP99,
    };
  } finally {
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
    await drop();
  }
}

/**
 * The server's `evaluated` meta row, read without opening the fleet (openFleet migrates, which takes the
 * write lock that the server's re-evaluation holds: the read would fail with "database is locked").
 */
async function readEvaluated(db: string): Promise<{ value: string } | undefined> {
  if (db.startsWith("sqlite:")) {
    const d = new DatabaseSync(db.slice("sqlite:".length), { readOnly: true });
    try {
      return d.prepare("SELECT value FROM meta WHERE key = 'evaluated'").get() as
        | { value: string }
        | undefined;
    } finally {
      d.close();
    }
  }
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  try {
    return (await c.query<{ value: string }>("SELECT value FROM meta WHERE key = 'evaluated'")).rows[0];
  } finally {
    await c.end();
  }
}

/** Waits until the server's fleet evaluation matches the advisory database's new contents. */
async function waitForEvaluation(
  db: string,
  advisory: string,
): Promise<{ seconds: number; packages: number }> {
  const { Matcher } = await import("../src/server/matcher.ts");
  const m = new Matcher(advisory);
  const want = m.generation;
  m.close();
  for (let i = 0; i < 3600; i++) {
    const row = await readEvaluated(db);
    const ev = row
      ? (JSON.parse(row.value) as { generation: string; seconds: number; packages: number })
      : undefined;
    if (ev?.generation === want) return { seconds: ev.seconds, packages: ev.packages };
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error("the server did not re-evaluate within an hour");
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

try {
  const pool = await bookwormPool(3000);
  const results: Result[] = [];
  for (const b of backends.length ? backends : (["sqlite", "postgres"] as const))
    results.push(await runBackend(b, pool, await freePort()));
  console.log(
    `\n## fleet: ${N.toLocaleString("en-US")} simulated nodes, ${(N * CONTAINERS).toLocaleString("en-US")} containers, one server, this 2-core machine`,
  );
  console.log(`| metric | ${results.map((r) => r.backend).join(" | ")} |`);
  console.log(`|---|${results.map(() => "---").join("|")}|`);
  const row = (name: string, f: (r: Result) => string) =>
    console.log(`| ${name} | ${results.map(f).join(" | ")} |`);
  row(
    "enrolment of every node (full first report)",
    (r) => `${r.enrolSeconds.toFixed(1)} s (${Math.round(N / r.enrolSeconds)}/s)`,
  );
  row("server CPU during enrolment", (r) => `${r.enrolCpu.toFixed(1)} s`);
  row(`check-ins at ${INTERVAL} s (${Math.round(N / INTERVAL)}/s), p50`, (r) => ms(r.p50));
  row("check-ins p99", (r) => ms(r.p99));
  row("server CPU (cores) during check-ins", (r) => r.serverCores.toFixed(3));
  row("PostgreSQL CPU (cores) during check-ins", (r) =>
    r.backend === "postgres" ? r.dbCores.toFixed(3) : "—",
  );
  row("simulator CPU (cores), same machine", (r) => r.clientCores.toFixed(3));
  row("server memory (RSS / peak)", (r) => `${Math.round(r.rss)} / ${Math.round(r.peak)} MiB`);
  row(
    "re-evaluation of every node after a db update",
    (r) => `${r.reevalSeconds.toFixed(1)} s (${r.reevalPackages} distinct packages)`,
  );
  row("largest fleet with p99 < 100 ms", (r) =>
    r.largest ? `${r.largest.toLocaleString("en-US")} (p99 ${ms(r.largestP99)})` : "none",
  );

  // Fleet's published reference: one 512-CPU-unit (0.5 vCPU) / 4 GB task per 1,000 hosts, agents every
  // 10 s, plus MySQL and Redis. For N hosts: N/1000 tasks.
  const tasks = N / 1000;
  const fleetCores = tasks * 0.5;
  const fleetMiB = tasks * 4096;
  console.log(
    `\n## beside Fleet's reference architecture (${tasks} tasks of 512 CPU units / 4 GB for ${N.toLocaleString("en-US")} hosts)`,
  );
  console.log(
    "| backend | Berth cores (server + database) | Fleet cores | ratio | Berth memory | Fleet memory | ratio |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results) {
    const cores = r.serverCores + r.dbCores;
    console.log(
      `| ${r.backend} | ${cores.toFixed(3)} | ${fleetCores} | ${(fleetCores / cores).toFixed(1)}x | ${Math.round(r.peak)} MiB | ${fleetMiB} MiB | ${(fleetMiB / r.peak).toFixed(1)}x |`,
    );
  }
  console.log(
    "\nFleet's agents check in every 10 s, Berth's every 60 s: per check-in, divide the core ratio by 6.",
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
