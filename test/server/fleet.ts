// Helpers for the fleet tests: a real `berth server` process (so it can be killed with -9), a PostgreSQL
// database of the test's own on the running server, and real package pools for simulated nodes.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { freePort } from "../../src/os/qemu.ts";
import { scanRoot } from "../../src/scan/targets.ts";
import { initFleet, issueToken } from "../../src/server/admin.ts";
import type { Package } from "../../src/server/api-schemas.ts";
import { openFleet } from "../../src/server/server.ts";
import { BERTH, dbUpdate, ROOT, tempDir } from "../helpers.ts";

export const PG_ADMIN = process.env.BERTH_TEST_PG ?? "postgres://berth:berth@127.0.0.1:5432/postgres";

/** A fresh PostgreSQL database; drop() removes it (and is registered to run when the process exits). */
export async function pgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `berth_fleet_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = PG_ADMIN.replace(/\/[^/]*$/, `/${name}`);
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    const c = new pg.Client({ connectionString: PG_ADMIN });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  };
  return { url, drop };
}

export async function sqliteDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  return { url: `sqlite:${join(tempDir("berth-fleet-"), "fleet.sqlite")}`, drop: async () => {} };
}

export interface ServerProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  stderr: () => string;
  /** The server's log (fastify's, on stdout): errors it logged. */
  log: () => string;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `berth server` and waits until it listens. */
export async function startServerProcess(o: {
  db: string;
  advisoryDb?: string;
  port?: number;
  interval?: number;
  tickMs?: number;
  extra?: string[];
}): Promise<ServerProcess> {
  const port = o.port ?? (await freePort());
  const args = [
    "server",
    "--listen",
    `127.0.0.1:${port}`,
    "--db",
    o.db,
    "--advisory-db",
    o.advisoryDb ?? join(tempDir("berth-fleet-nodb-"), "none.sqlite"),
    "--interval",
    String(o.interval ?? 60),
    "--tick",
    String(o.tickMs ?? 300),
    ...(o.extra ?? []),
  ];
  const proc = spawn(BERTH, args, { stdio: ["ignore", "pipe", "pipe"], env: process.env });
  let err = "";
  let out = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out = (out + d).slice(-20000);
  });
  const exited = new Promise<number | null>((res) => proc.on("exit", (code) => res(code)));
  await new Promise<void>((res, rej) => {
    // Generous: on a busy 2-core machine a cold start of the CLI can take a minute.
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      rej(new Error(`berth server did not start in 180 s: ${err}`));
    }, 180_000);
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      if (err.includes("listening on")) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`berth server exited (${code}): ${err}`));
    });
  });
  process.on("exit", () => proc.kill("SIGKILL"));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    stderr: () => err,
    log: () => out,
    exited,
    async kill(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** The fleet's schema, its admin API token and an enrolment token (what berth server init and token create do). */
export async function initFleetDb(db: string, uses?: number): Promise<{ admin: string; enroll: string }> {
  const fleet = await openFleet(db, join(tempDir("berth-fleet-nodb-"), "none.sqlite"));
  try {
    const { token } = await initFleet(fleet);
    const enroll = await issueToken(fleet, fleet.db, {
      kind: "enroll",
      name: "test",
      ttlSeconds: 7200,
      uses,
    });
    return { admin: token, enroll: enroll.token };
  } finally {
    fleet.matcher.close();
    await fleet.db.close();
  }
}

/** This machine's installed packages: real names, versions and source packages for simulated nodes. */
export async function hostPool(): Promise<Package[]> {
  const inv = await scanRoot("/", "host");
  return inv.packages.map((p) => ({
    name: p.name,
    version: p.version,
    architecture: p.architecture,
    status: p.status,
    source: p.source,
    sourceVersion: p.sourceVersion,
  }));
}

/** Admin API calls with a bearer token. */
export async function api<T>(
  server: string,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${server}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed as T };
}

export interface StoredNode {
  seq: number;
  packages: string[];
  containers: string[];
}

/**
 * What the fleet database holds for every node, read straight from it (not through the server): seq,
 * packages as name:architecture=version, container ids, each sorted.
 */
export async function storedNodes(dbUrl: string): Promise<Map<string, StoredNode>> {
  const q = {
    nodes: "SELECT nid, id, seq FROM nodes",
    pkgs: "SELECT np.nid, p.name, p.architecture, p.version FROM node_pkgs np JOIN pkgs p ON p.id = np.pkg_id",
    containers: "SELECT nid, id FROM node_containers",
  };
  let rows: {
    nodes: Record<string, unknown>[];
    pkgs: Record<string, unknown>[];
    containers: Record<string, unknown>[];
  };
  if (dbUrl.startsWith("sqlite:")) {
    const d = new DatabaseSync(dbUrl.slice("sqlite:".length), { readOnly: true });
    rows = {
      nodes: d.prepare(q.nodes).all(),
      pkgs: d.prepare(q.pkgs).all(),
      containers: d.prepare(q.containers).all(),
    };
    d.close();
  } else {
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    rows = {
      nodes: (await c.query(q.nodes)).rows,
      pkgs: (await c.query(q.pkgs)).rows,
      containers: (await c.query(q.containers)).rows,
    };
    await c.end();
  }
  const byNid = new Map<string, StoredNode & { id: string }>();
  for (const n of rows.nodes)
    byNid.set(String(n.nid), { id: String(n.id), seq: Number(n.seq), packages: [], containers: [] });
  for (const p of rows.pkgs)
    byNid.get(String(p.nid))?.packages.push(`${p.name}:${p.architecture}=${p.version}`);
  for (const c of rows.containers) byNid.get(String(c.nid))?.containers.push(String(c.id));
  const out = new Map<string, StoredNode>();
  for (const n of byNid.values())
    out.set(n.id, { seq: n.seq, packages: n.packages.sort(), containers: n.containers.sort() });
  return out;
}

/** The scan tests' tracker fixture (bash CVE-2099-*, bookworm and trixie statuses). */
export const TRACKER_FIXTURE = join(ROOT, "test/fixtures/scan/tracker-statuses.json");

/** An advisory database at `path` made by `berth db update` from `sources` (NAME=LOCATION). */
export async function advisoryDb(path: string, sources: string[] = [`debian-tracker=${TRACKER_FIXTURE}`]) {
  const up = await dbUpdate(path, sources);
  if (up.code !== 0) throw new Error(`berth db update: ${up.stderr}`);
  return path;
}
