// Every curated image on the real Docker engine, locked down (--read-only --cap-drop ALL
// --security-opt no-new-privileges, only the tmpfs and volumes the definition declares), each exercised
// with a real client of its protocol; postgresql, mariadb and redis keep their data across a new
// container on the same volume; docker's own health check turns healthy; `docker top` shows the
// image's non-root uid. All images, containers, networks and volumes are berth-images-* and removed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import amqp from "amqplib";
import * as mariadb from "mariadb";
import memjs from "memjs";
import mqtt from "mqtt";
import pg from "pg";
import { createClient } from "redis";
import { ROOT, run, runSync } from "../helpers.ts";
import { type Built, builtImages, IMAGE_NAMES, record } from "./fixture.ts";

const TAG = `berth-images-run-${process.pid}`;
const LOCKDOWN = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
const created = { containers: new Set<string>(), volumes: new Set<string>(), networks: new Set<string>() };

async function docker(args: string[]): Promise<string> {
  const r = await run("docker", args);
  assert.equal(r.code, 0, `docker ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Polls until `f` succeeds; the deadline only turns a hang into a failure, it asserts no timing. */
async function eventually<T>(what: string, f: () => Promise<T>, seconds = 300): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await f();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  throw new Error(`${what}: never succeeded; last error: ${(last as Error)?.message}`);
}

let built: Built;
const image = (name: string) => `${TAG}/${name}:test`;

interface Started {
  id: string;
  name: string;
  port(p: number): Promise<number>;
}

async function start(
  name: string,
  o: {
    env?: Record<string, string>;
    volumes?: string[];
    network?: string;
    alias?: string;
    suffix?: string;
  } = {},
): Promise<Started> {
  const r = record(built, name);
  const cname = `${TAG}-${name}${o.suffix ?? ""}`;
  const args = ["run", "-d", "--name", cname, ...LOCKDOWN];
  // Declared writable paths only: a tmpfs for each (world-writable like /tmp), a named volume for each.
  for (const t of r.run.tmpfs) args.push("--tmpfs", `${t}:mode=1777`);
  r.run.volumes.forEach((v, i) => {
    const vol = o.volumes?.[i] ?? `${cname}-v${i}`;
    created.volumes.add(vol);
    args.push("-v", `${vol}:${v}`);
  });
  for (const p of r.run.ports) args.push("-p", `127.0.0.1::${p}`);
  for (const [k, v] of Object.entries(o.env ?? {})) args.push("-e", `${k}=${v}`);
  if (o.network) args.push("--network", o.network, "--network-alias", o.alias ?? name);
  created.containers.add(cname);
  const id = await docker([...args, image(name)]);
  return {
    id,
    name: cname,
    port: async (p: number) => {
      const out = await docker(["port", cname, `${p}/tcp`]);
      return Number(/:(\d+)\s*$/m.exec(out.split("\n")[0]!)?.[1]);
    },
  };
}

async function stop(c: Started): Promise<void> {
  await docker(["stop", "-t", "30", c.name]);
  await docker(["rm", c.name]);
  created.containers.delete(c.name);
}

/** The image runs as its declared non-root user, seen from the engine, and its health check passes. */
async function checkLockedDown(c: Started, name: string): Promise<void> {
  const r = record(built, name);
  const inspect = JSON.parse(await docker(["inspect", c.id]))[0] as {
    Config: { User: string };
    HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[] };
  };
  assert.equal(inspect.Config.User, `${r.run.user.uid}:${r.run.user.gid}`);
  assert.ok(inspect.HostConfig.ReadonlyRootfs);
  // docker top needs the pid column; the second one is each process's uid.
  const uids = (await docker(["top", c.id, "-eo", "pid,uid"]))
    .split("\n")
    .slice(1)
    .map((l) => Number(l.trim().split(/\s+/)[1]));
  assert.ok(uids.length > 0 && uids.every((u) => u === r.run.user.uid && u !== 0), `uids ${uids}`);
  await eventually(`${name} health`, async () => {
    const s = await docker(["inspect", "-f", "{{.State.Health.Status}}", c.id]);
    if (s !== "healthy") throw new Error(`health is ${s}`);
  });
}

const get = async (url: string) => {
  const res = await fetch(url);
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  return body;
};

describe("curated images on the Docker engine, locked down", { concurrency: true }, () => {
  before(async () => {
    built = await builtImages();
    for (const n of IMAGE_NAMES) {
      const r = record(built, n);
      await docker(["load", "-q", "-i", join(built.out, n, `${n}.tar`)]);
      await docker(["tag", r.ref, image(n)]);
      // Only our own tag stays; the loaded reference (berth-images-test/...) is removed at once.
      await docker(["rmi", r.ref]);
    }
  });

  after(async () => {
    for (const c of created.containers) await run("docker", ["rm", "-f", c]);
    for (const n of created.networks) await run("docker", ["network", "rm", n]);
    for (const v of created.volumes) await run("docker", ["volume", "rm", "-f", v]);
    for (const n of IMAGE_NAMES) await run("docker", ["rmi", "-f", image(n)]);
  });

  test("nginx serves a page", async () => {
    const c = await start("nginx");
    const port = await c.port(8080);
    const body = await eventually("nginx", () => get(`http://127.0.0.1:${port}/`));
    assert.match(body, /Welcome to nginx/);
    await checkLockedDown(c, "nginx");
  });

  test("httpd serves a page", async () => {
    const c = await start("httpd");
    const port = await c.port(8080);
    const body = await eventually("httpd", () => get(`http://127.0.0.1:${port}/`));
    assert.match(body, /Apache2 Debian Default Page/);
    await checkLockedDown(c, "httpd");
  });

  test("haproxy proxies to the nginx container", async () => {
    const net = `${TAG}-net`;
    await docker(["network", "create", net]);
    created.networks.add(net);
    await start("nginx", { network: net, alias: "web", suffix: "-backend" });
    const c = await start("haproxy", { network: net, env: { BACKEND: "web:8080" } });
    const port = await c.port(8080);
    const body = await eventually("haproxy", () => get(`http://127.0.0.1:${port}/`));
    assert.match(body, /Welcome to nginx/);
    await checkLockedDown(c, "haproxy");
  });

  test("redis does SET and GET, and keeps its data on the volume across containers", async () => {
    const vol = `${TAG}-redis-data`;
    const c = await start("redis", { volumes: [vol] });
    const port = await c.port(6379);
    const client = await eventually("redis", async () => {
      const cl = createClient({ url: `redis://127.0.0.1:${port}` });
      cl.on("error", () => {});
      await cl.connect();
      return cl;
    });
    await client.set("berth", "images");
    assert.equal(await client.get("berth"), "images");
    await client.close();
    await checkLockedDown(c, "redis");
    await stop(c);
    const c2 = await start("redis", { volumes: [vol], suffix: "-again" });
    const port2 = await c2.port(6379);
    const again = await eventually("redis again", async () => {
      const cl = createClient({ url: `redis://127.0.0.1:${port2}` });
      cl.on("error", () => {});
      await cl.connect();
      return cl;
    });
    assert.equal(await again.get("berth"), "images");
    await again.close();
  });

  test("memcached does set and get", async () => {
    const c = await start("memcached");
    const port = await c.port(11211);
    const client = memjs.Client.create(`127.0.0.1:${port}`, { retries: 3, timeout: 15 });
    try {
      await eventually("memcached", () => client.set("berth", "images", { expires: 0 }));
      const { value } = await eventually("memcached get", () => client.get("berth"));
      assert.equal(value?.toString(), "images");
    } finally {
      client.close();
    }
    await checkLockedDown(c, "memcached");
  });

  test("postgresql runs a query with pg, and keeps its data on the volume across containers", async () => {
    const vol = `${TAG}-pg-data`;
    const env = { POSTGRES_PASSWORD: "berth-secret" };
    const c = await start("postgresql", { env, volumes: [vol] });
    const port = await c.port(5432);
    const connect = (p: number) =>
      eventually("postgresql", async () => {
        const cl = new pg.Client({ host: "127.0.0.1", port: p, user: "postgres", password: "berth-secret" });
        cl.on("error", () => {});
        try {
          await cl.connect();
        } catch (e) {
          await cl.end().catch(() => {});
          throw e;
        }
        return cl;
      });
    const client = await connect(port);
    await client.query("CREATE TABLE kept (v text)");
    await client.query("INSERT INTO kept VALUES ('survives')");
    const version = await client.query("SHOW server_version");
    assert.match(String(version.rows[0].server_version), /^17\./);
    await client.end();
    await checkLockedDown(c, "postgresql");
    await stop(c);
    const c2 = await start("postgresql", { env, volumes: [vol], suffix: "-again" });
    const again = await connect(await c2.port(5432));
    const rows = await again.query("SELECT v FROM kept");
    assert.deepEqual(
      rows.rows.map((r) => r.v),
      ["survives"],
    );
    await again.end();
  });

  test("mariadb runs a query, and keeps its data on the volume across containers", async () => {
    const vol = `${TAG}-mariadb-data`;
    const env = { MARIADB_ROOT_PASSWORD: "berth-secret" };
    const c = await start("mariadb", { env, volumes: [vol] });
    const connect = async (p: number) =>
      eventually("mariadb", () =>
        mariadb.createConnection({ host: "127.0.0.1", port: p, user: "root", password: "berth-secret" }),
      );
    const conn = await connect(await c.port(3306));
    await conn.query("CREATE DATABASE berth");
    await conn.query("CREATE TABLE berth.kept (v VARCHAR(20))");
    await conn.query("INSERT INTO berth.kept VALUES ('survives')");
    const [row] = (await conn.query("SELECT VERSION() AS v")) as { v: string }[];
    assert.match(row!.v, /MariaDB/);
    await conn.end();
    await checkLockedDown(c, "mariadb");
    await stop(c);
    const c2 = await start("mariadb", { env, volumes: [vol], suffix: "-again" });
    const again = await connect(await c2.port(3306));
    const rows = (await again.query("SELECT v FROM berth.kept")) as { v: string }[];
    assert.deepEqual(
      rows.map((r) => r.v),
      ["survives"],
    );
    await again.end();
  });

  test("rabbitmq publishes and consumes a message over AMQP", async () => {
    const c = await start("rabbitmq");
    const port = await c.port(5672);
    const conn = await eventually(
      "rabbitmq",
      () => amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`),
      600,
    );
    const ch = await conn.createChannel();
    await ch.assertQueue("berth");
    ch.sendToQueue("berth", Buffer.from("images"));
    const msg = await eventually("a message", async () => {
      const m = await ch.get("berth", { noAck: true });
      if (!m) throw new Error("queue empty");
      return m;
    });
    assert.equal(msg.content.toString(), "images");
    await conn.close();
    await checkLockedDown(c, "rabbitmq");
  });

  test("tomcat serves a page", async () => {
    const c = await start("tomcat");
    const port = await c.port(8080);
    const body = await eventually("tomcat", () => get(`http://127.0.0.1:${port}/`));
    assert.match(body, /Tomcat/);
    await checkLockedDown(c, "tomcat");
  });

  test("etcd does put and get over its HTTP/JSON API", async () => {
    const c = await start("etcd");
    const port = await c.port(2379);
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
      });
      if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
      return (await res.json()) as { kvs?: { value: string }[] };
    };
    await eventually("etcd", () => post("/v3/kv/put", { key: b64("berth"), value: b64("images") }));
    const got = await post("/v3/kv/range", { key: b64("berth") });
    assert.equal(Buffer.from(got.kvs![0]!.value, "base64").toString(), "images");
    await checkLockedDown(c, "etcd");
  });

  test("mosquitto delivers a published message to a subscriber", async () => {
    const c = await start("mosquitto");
    const port = await c.port(1883);
    const url = `mqtt://127.0.0.1:${port}`;
    const sub = await eventually("mosquitto", () => mqtt.connectAsync(url, { reconnectPeriod: 0 }));
    const got = new Promise<string>((res) => sub.on("message", (_t, m) => res(m.toString())));
    await sub.subscribeAsync("berth/images");
    const pubc = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    await pubc.publishAsync("berth/images", "delivered");
    assert.equal(await got, "delivered");
    await pubc.endAsync();
    await sub.endAsync();
    await checkLockedDown(c, "mosquitto");
  });

  test("the berth image runs berth --version, locked down and as its own user", async () => {
    const want = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string })
      .version;
    const r = runSync("docker", [
      "run",
      "--rm",
      ...LOCKDOWN,
      "--tmpfs",
      "/tmp:mode=1777",
      image("berth"),
      "berth",
      "--version",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), want);
    const id = runSync("docker", [
      "run",
      "--rm",
      ...LOCKDOWN,
      image("berth"),
      "/opt/berth/bin/node",
      "-p",
      "process.getuid()",
    ]);
    assert.equal(id.stdout.trim(), String(record(built, "berth").run.user.uid));
  });
});
