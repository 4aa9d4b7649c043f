// Real OpenSSL, live: two builds of Debian's libssl3 chosen at test time from what the archive serves
// for this release (the newest pair whose libcrypto and libssl can both be applied; pairs Berth refuses
// must be refused for a reason it names). `openssl s_server` and a python3 TLS client linked to the
// older build handshake continuously for more than 60 s while the newer build's libcrypto and libssl
// are applied to both processes from the .deb, then rolled back. Every handshake must succeed, both
// processes must live, the client must see the new build's OpenSSL_version_num() after the apply and
// the old one after the rollback, and the plan must show redirected and identical functions.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort } from "../../src/os/qemu.ts";
import { recipeFor } from "../../src/patch/live.ts";
import { berth, runSync, tempDir } from "../helpers.ts";
import { archiveBuilds, type DebianBuild, libIn } from "./debian.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const CLIENT = `
import ctypes, socket, ssl, sys, time, os
port, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
crypto = ctypes.CDLL("libcrypto.so.3")
crypto.OpenSSL_version_num.restype = ctypes.c_ulong
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok = bad = 0
with open(out, "w", buffering=1) as f:
    while not os.path.exists(stop):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with ctx.wrap_socket(s) as t:
                    t.sendall(b"ping\\n")
            ok += 1
            f.write("ok %d %x\\n" % (ok, crypto.OpenSSL_version_num()))
        except Exception as e:
            bad += 1
            f.write("fail %r\\n" % (e,))
        time.sleep(0.02)
    f.write("done %d %d\\n" % (ok, bad))
`;

interface Plan {
  pid: number;
  lib: string;
  state: string;
  identical: number;
  copied: number;
  redirected: unknown[];
}

describe("live OpenSSL upgrade in real processes", () => {
  const dir = tempDir("berth-patch-openssl-");
  const state = join(dir, "state");
  const children: ChildProcess[] = [];
  let old: DebianBuild;
  let neu: DebianBuild;
  const refusedPairs: string[] = [];

  before(async () => {
    const builds = await archiveBuilds("libssl3");
    assert.ok(builds.length >= 2, `the archive serves ${builds.length} build(s) of libssl3`);
    // Newest target first, then the closest older build: the update a host would get.
    search: for (const n of builds)
      for (const o of builds.filter((b) => b !== n && builds.indexOf(b) > builds.indexOf(n))) {
        let ok = true;
        for (const lib of ["libssl.so.3", "libcrypto.so.3"]) {
          const [a, b] = [libIn(o, lib), libIn(n, lib)];
          const r = await recipeFor(a, readFileSync(a), b, readFileSync(b));
          if (r.refusals.length) {
            refusedPairs.push(
              `${lib} ${o.version} -> ${n.version}: ${r.refusals[0]!.where ?? ""} ${r.refusals[0]!.reason}`,
            );
            ok = false;
            break;
          }
        }
        if (ok) {
          old = o;
          neu = n;
          break search;
        }
      }
    assert.ok(old && neu, `no pair of libssl3 builds can be applied live: ${refusedPairs.join("; ")}`);
    process.stderr.write(
      `# OpenSSL ${old.version} -> ${neu.version}${refusedPairs.length ? `; refused: ${refusedPairs.join("; ")}` : ""}\n`,
    );
  });

  after(() => {
    for (const c of children) c.kill("SIGKILL");
  });

  test("pairs Berth refuses are refused for a reason it names", () => {
    for (const r of refusedPairs)
      assert.match(
        r,
        /structure|variable|initializer|IFUNC|exported|functions differ|redirected|counterpart/,
        r,
      );
  });

  test("s_server and a python3 client handshake through apply and rollback: 0 failures, both alive", async () => {
    const oldLibs = dirname(libIn(old, "libcrypto.so.3"));
    const env = { ...process.env, LD_LIBRARY_PATH: oldLibs };
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    const req = runSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
    ]);
    assert.equal(req.code, 0, req.stderr);
    const port = await freePort();
    const server = spawn(
      "openssl",
      ["s_server", "-accept", String(port), "-cert", cert, "-key", key, "-quiet"],
      {
        env,
        stdio: "ignore",
      },
    );
    children.push(server);
    writeFileSync(join(dir, "client.py"), CLIENT);
    const out = join(dir, "client.out");
    const stop = join(dir, "stop");
    await sleep(1000);
    const client = spawn("/usr/bin/python3", [join(dir, "client.py"), String(port), out, stop], {
      env,
      stdio: "ignore",
    });
    children.push(client);
    const lines = () => (existsSync(out) ? readFileSync(out, "utf8").trim().split("\n").filter(Boolean) : []);
    const version = () => lines().at(-1)?.split(" ")[2];
    const waitFor = async (what: string, ok: () => boolean, ms = 60000) => {
      for (let t = 0; t < ms && !ok(); t += 200) await sleep(200);
      assert.ok(ok(), `timed out waiting for ${what}; last client line: ${lines().at(-1)}`);
    };
    await waitFor("the first handshakes", () => lines().length >= 10);
    const started = Date.now();
    const oldVersion = version();
    const pids = ["--pid", String(server.pid), String(client.pid)];
    // Both processes map both libraries of the old build, loaded from its directory.
    for (const pid of [server.pid!, client.pid!]) {
      const maps = readFileSync(`/proc/${pid}/maps`, "utf8");
      for (const lib of ["libssl.so.3", "libcrypto.so.3"])
        assert.ok(maps.includes(join(oldLibs, lib)), `${pid} maps ${lib}`);
    }

    const planned = await berth([
      "patch",
      "lib",
      "plan",
      "--from-deb",
      neu.deb,
      ...pids,
      "--state",
      state,
      "--json",
    ]);
    assert.equal(planned.code, 0, planned.stderr);
    const plans = (JSON.parse(planned.stdout) as { plans: Plan[] }).plans;
    assert.equal(plans.length, 4, JSON.stringify(plans.map((p) => [p.pid, p.lib, p.state])));
    for (const p of plans) {
      assert.equal(p.state, "ready");
      assert.ok(p.copied > 0 && p.redirected.length > 0, `${p.lib}: nothing to redirect`);
      assert.ok(p.identical > 10 * p.copied, `${p.lib}: ${p.identical} identical, ${p.copied} copied`);
    }

    const applied = await berth([
      "patch",
      "lib",
      "apply",
      "--from-deb",
      neu.deb,
      ...pids,
      "--state",
      state,
      "--json",
    ]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    const summary = JSON.parse(applied.stdout) as {
      patched: { pid: number; lib: string }[];
      refused: unknown[];
    };
    assert.equal(summary.patched.length, 4, applied.stdout);
    assert.deepEqual(summary.refused, []);
    await waitFor("the new build's version in the client", () => version() !== oldVersion);
    const newVersion = version();
    const patchedAt = lines().length;
    // Handshakes go on through the patched code for a while.
    await waitFor(
      "handshakes on the new code",
      () => lines().length >= patchedAt + 200 && Date.now() - started > 25000,
      90000,
    );

    for (let layer = 0; layer < 2; layer++) {
      const rb = await berth(["patch", "lib", "rollback", ...pids, "--state", state, "--json"]);
      assert.equal(rb.code, 0, rb.stderr + rb.stdout);
    }
    await waitFor("the old build's version again", () => version() === oldVersion);
    const status = JSON.parse(
      (await berth(["patch", "lib", "status", "--json", "--state", state])).stdout,
    ) as unknown[];
    assert.deepEqual(status, []);
    await waitFor("60 s of handshakes", () => Date.now() - started > 62000, 90000);

    writeFileSync(stop, "");
    const code = await new Promise<number | null>((res) => client.on("exit", (c) => res(c)));
    assert.equal(code, 0, "the client died");
    const all = lines();
    const done = all.at(-1)!.split(" ");
    assert.equal(done[0], "done");
    assert.equal(all.filter((l) => l.startsWith("fail")).join("\n"), "");
    assert.equal(done[2], "0", "failed handshakes");
    assert.ok(Number(done[1]) > 500, `only ${done[1]} handshakes`);
    assert.ok(all.some((l) => l.split(" ")[2] === newVersion));
    // The server lives and still serves.
    assert.equal(server.exitCode, null, "s_server died");
    assert.notEqual(readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1]![0], "Z");
    const probe = runSync("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-brief"], { input: "" });
    assert.match(probe.stderr + probe.stdout, /CONNECTION ESTABLISHED|Protocol version/);
  });
});
