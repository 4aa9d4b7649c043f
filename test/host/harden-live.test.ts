// berth harden on this live machine. These tests change the host (sysctls, /etc, the Docker daemon's
// settings and a daemon restart), so `npm test` runs them alone, after every other test.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { treeDigest } from "../../src/common/tree-digest.ts";
import { buildBusyboxImage } from "../../src/images/busybox.ts";
import { berth, run, runSync, tempDir } from "../helpers.ts";

const BUSYBOX = "berth/busybox:latest";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Restarts the Docker daemon the way this machine runs it (systemd, or a plain dockerd). */
async function restartDocker(): Promise<void> {
  if (runSync("systemctl", ["is-active", "--quiet", "docker"]).code === 0) {
    assert.equal(runSync("systemctl", ["restart", "docker"]).code, 0);
  } else {
    const pid = runSync("pidof", ["dockerd"]).stdout.trim();
    if (pid) process.kill(Number(pid), "SIGTERM");
    for (let i = 0; i < 120 && runSync("pidof", ["dockerd"]).code === 0; i++) await sleep(500);
    const log = openSync("/var/log/berth-dockerd.log", "a");
    spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] }).unref();
  }
  for (let i = 0; i < 120; i++) {
    if (runSync("docker", ["info"]).code === 0) return;
    await sleep(500);
  }
  assert.fail("dockerd did not come back");
}

/** Two containers on a user network reach each other by name; the host reaches a published port. */
async function containerNetworkingWorks(): Promise<void> {
  runSync("docker", ["rm", "-f", "berth-live-web"]);
  runSync("docker", ["network", "rm", "berth-live"]);
  assert.equal(runSync("docker", ["network", "create", "berth-live"]).code, 0);
  // The busybox image runs as nobody with a read-only-friendly layout: serve /etc, whose hostname file
  // docker writes from --hostname.
  const web = await run("docker", [
    "run",
    "-d",
    "--name",
    "berth-live-web",
    "--hostname",
    "berth-ok",
    "--network",
    "berth-live",
    "-p",
    "127.0.0.1:18080:8080",
    BUSYBOX,
    "busybox",
    "httpd",
    "-f",
    "-p",
    "8080",
    "-h",
    "/etc",
  ]);
  assert.equal(web.code, 0, web.stderr);
  let body = "";
  for (let i = 0; i < 20 && !body.includes("berth-ok"); i++) {
    await sleep(250);
    body = (
      await run("docker", [
        "run",
        "--rm",
        "--network",
        "berth-live",
        BUSYBOX,
        "busybox",
        "wget",
        "-qO-",
        "http://berth-live-web:8080/hostname",
      ])
    ).stdout;
  }
  assert.match(body, /berth-ok/, "container to container by name");
  const fromHost = await fetch("http://127.0.0.1:18080/hostname").then((r) => r.text());
  assert.match(fromHost, /berth-ok/, "host to a published port");
  runSync("docker", ["rm", "-f", "berth-live-web"]);
  runSync("docker", ["network", "rm", "berth-live"]);
}

describe("berth harden on this live host", () => {
  const dir = tempDir("berth-harden-live-");
  const state = join(dir, "state");

  before(async () => {
    if (runSync("docker", ["image", "inspect", BUSYBOX]).code === 0) return;
    const dl = await berth(["pkg", "download", "busybox-static", "--dest", dir, "-q"]);
    assert.equal(dl.code, 0, dl.stderr);
    const deb = readdirSync(dir).find((f) => f.endsWith(".deb"))!;
    const img = await buildBusyboxImage(join(dir, deb), 0);
    writeFileSync(join(dir, "busybox.tar"), img.archive);
    assert.equal(runSync("docker", ["load", "-i", join(dir, "busybox.tar")]).code, 0);
  });

  after(() => {
    runSync("docker", ["rm", "-f", "berth-live-web"]);
  });

  test("check reads the whole machine without error", async () => {
    const r = await berth(["harden", "check", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const a = JSON.parse(r.stdout) as {
      kind: string;
      files: number;
      summary: { rules: number; score: number };
      results: { evidence?: string }[];
    };
    assert.equal(a.kind, "host");
    assert.ok(a.summary.rules >= 200, `${a.summary.rules} rules ran`);
    assert.ok(a.files > 10_000, `${a.files} files walked`);
    assert.ok(a.summary.score >= 0 && a.summary.score <= 100);
  });

  test("security mode on a host with Docker: containers keep working networking; rollback restores /etc and sysctls", async () => {
    const etcBefore = await treeDigest("/etc", { mtimes: true });
    const dry = await berth(["harden", "apply", "--dry-run", "--json", "--state", state]);
    assert.equal(dry.code, 0, dry.stderr);
    const planned = JSON.parse(dry.stdout) as { steps: { kind: string; key?: string }[] };
    const keys = planned.steps.filter((s) => s.kind === "sysctl").map((s) => s.key!);
    const sysctlsBefore = keys.map((k) => readFileSync(`/proc/sys/${k.replaceAll(".", "/")}`, "utf8"));

    const r = await berth(["harden", "apply", "--profile", "security-mode", "--json", "--state", state]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      (await treeDigest("/etc", { mtimes: true })) === etcBefore,
      false,
      "apply changed nothing in /etc",
    );
    const out = JSON.parse(r.stdout) as { run: string; scoreBefore: number; scoreAfter: number };
    assert.ok(out.run, "nothing was applied");
    assert.ok(out.scoreAfter > out.scoreBefore, `${out.scoreBefore} -> ${out.scoreAfter}`);
    try {
      await restartDocker();
      // The daemon runs with the hardened settings...
      assert.equal(runSync("docker", ["info", "--format", "{{.LiveRestoreEnabled}}"]).stdout.trim(), "true");
      const nnp = await run("docker", ["run", "--rm", BUSYBOX, "grep", "NoNewPrivs", "/proc/self/status"]);
      assert.match(nnp.stdout, /NoNewPrivs:\s+1/);
      // ...and containers still have working networking.
      await containerNetworkingWorks();
    } finally {
      const rb = await berth(["harden", "rollback", out.run, "--state", state]);
      assert.equal(rb.code, 0, rb.stderr);
      await restartDocker();
    }
    assert.equal(await treeDigest("/etc", { mtimes: true }), etcBefore, "/etc differs after rollback");
    assert.deepEqual(
      keys.map((k) => readFileSync(`/proc/sys/${k.replaceAll(".", "/")}`, "utf8")),
      sysctlsBefore,
    );
    await containerNetworkingWorks();
  });
});
