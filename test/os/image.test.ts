// The default Berth OS image, end to end, on real tools: built from the shipped profile with the
// general-purpose baseline, its report and manifest checked against dpkg-query on the image itself,
// booted in QEMU (direct kernel boot and through UEFI firmware), logged into over SSH with a key, Docker
// run inside it, rebuilt for the same digest, and a build interrupted without leaving debris.
// This file takes minutes: two image builds (plus the baseline once per archive state) and three boots.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { sha256File } from "../../src/common/hash.ts";
import type { Manifest } from "../../src/os/manifest.ts";
import { startVm } from "../../src/os/qemu.ts";
import type { Report } from "../../src/os/report.ts";
import { BERTH, berth, dbUpdate, ROOT, run, runSync, SHARED_DATA, tempDir } from "../helpers.ts";

const PROFILE = join(ROOT, "profiles/container-host.yaml");
const CACHE = process.env.BERTH_CACHE || "/var/cache/berth";

const readJson = <T>(p: string) => JSON.parse(readFileSync(p, "utf8")) as T;

function ssh(
  port: number,
  key: string,
  command: string,
  timeout = 120,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("timeout", [
    String(timeout),
    "ssh",
    "-i",
    key,
    "-p",
    String(port),
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=60",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    "berth@127.0.0.1",
    command,
  ]);
}

describe("Berth OS image", () => {
  const dir = tempDir("berth-image-");
  const outA = join(dir, "a");
  const key = join(dir, "id_ed25519");
  let manifest: Manifest;

  before(async () => {
    assert.equal(runSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]).code, 0);
    const r = await berth(["os", "build", PROFILE, "--out", outA, "--ssh-key", `${key}.pub`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /built container-host in/);
    manifest = readJson<Manifest>(join(outA, "manifest.json"));
  });

  test("the output directory holds the root image, kernel, initramfs, disk, manifest and report", () => {
    for (const f of [
      "root.squashfs",
      "vmlinuz",
      "initrd.img",
      "disk.img",
      "kernel.config",
      "manifest.json",
      "report.json",
      "report.md",
      "profile.yaml",
    ])
      assert.ok(existsSync(join(outA, f)), `${f} missing`);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes("partial")),
      [],
    );
  });

  test("the report: at most 100 packages and 100 MB compressed, the baseline beside it", () => {
    const r = readJson<Report>(join(outA, "report.json"));
    for (const side of [r.image, r.baseline!])
      for (const k of [
        "packages",
        "enabledServices",
        "serviceUnits",
        "installedBytes",
        "compressedBytes",
      ] as const)
        assert.ok(typeof side[k] === "number" && side[k] > 0, `${side.profile}.${k}`);
    assert.ok(r.image.packages <= 100, `${r.image.packages} packages`);
    assert.ok(r.image.compressedBytes <= 100_000_000, `${r.image.compressedBytes} bytes compressed`);
    assert.ok(r.baseline!.packages > 2 * r.image.packages, "the baseline is not a stock install");
    assert.ok(r.baseline!.compressedBytes > r.image.compressedBytes);
    assert.ok(r.baseline!.enabledServices > r.image.enabledServices);
    assert.match(r.claim, /^packages \d+ -> \d+, services \d+ -> \d+, image [\d.]+ [MG]B -> [\d.]+ MB$/);
    assert.match(
      readFileSync(join(outA, "report.md"), "utf8"),
      /\| packages \| \d+ \| \d+ \| [\d.]+x smaller \|/,
    );
    // Every package says why it is there, and the chain starts at something the profile asked for.
    for (const p of manifest.packages) assert.ok(p.why && p.why.length > 0, `${p.name} has no reason`);
    assert.deepEqual(manifest.packages.find((p) => p.name === "runc")?.why?.slice(0, 1), ["docker.io"]);
  });

  test("the manifest agrees with dpkg-query on the image's own database, and with the files", async () => {
    const root = join(dir, "unpacked");
    assert.equal(
      runSync("unsquashfs", ["-q", "-d", root, join(outA, "root.squashfs"), "var/lib/dpkg"]).code,
      0,
    );
    const dq = runSync("dpkg-query", [
      `--admindir=${root}/var/lib/dpkg`,
      "-W",
      "-f",
      "${Package} ${Version} ${source:Package} ${source:Version}\\n",
    ]);
    assert.equal(dq.code, 0, dq.stderr);
    assert.deepEqual(
      manifest.packages.map((p) => `${p.name} ${p.version} ${p.source} ${p.sourceVersion}`).sort(),
      dq.stdout.trim().split("\n").sort(),
    );
    for (const a of manifest.artifacts) assert.equal(await sha256File(join(outA, a.file)), a.sha256, a.file);
    // Nothing in the image may depend on the day it was built: account dates come from SOURCE_DATE_EPOCH.
    const shadow = runSync("unsquashfs", ["-cat", join(outA, "root.squashfs"), "etc/shadow"]).stdout;
    const day = String(Math.floor(manifest.sourceDateEpoch / 86400));
    for (const line of shadow.trim().split("\n"))
      assert.ok(["", day].includes(line.split(":")[2]!), `build-date-dependent account: ${line}`);

    assert.equal(manifest.compressedBytes, readFileSync(join(outA, "root.squashfs")).length);
  });

  test("berth os run --check: the image boots and runs a container", async () => {
    const r = await berth(["os", "run", outA, "--check", "--timeout", "400"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^container ran: boot-to-ready [\d.]+ s/m);
  });

  test("the disk boots through UEFI firmware and systemd-boot too", async () => {
    const r = await berth(["os", "run", outA, "--uefi", "--check", "--timeout", "400"]);
    assert.equal(r.code, 0, r.stderr);
  });

  test("over SSH with the key: Docker runs containers, per-container sysctls, read-only root, services as computed", async () => {
    const vm = await startVm({ image: outA });
    try {
      // Connect only once the guest is up (see startVm): the boot self-test line comes after sshd starts.
      await vm.waitForLine(/BERTH-CHECK: container ran/, 600_000);
      const up = await ssh(vm.sshPort, key, "true");
      assert.equal(up.code, 0, `no SSH login: ${up.stderr}`);
      const state = await ssh(
        vm.sshPort,
        key,
        "sudo systemctl is-system-running --wait; sudo systemctl --failed --no-legend",
        400,
      );
      assert.equal(state.stdout.trim(), "running", state.stdout);
      const hello = await ssh(
        vm.sshPort,
        key,
        "docker run --rm berth/busybox:latest echo hello from a container",
      );
      assert.equal(hello.stdout.trim(), "hello from a container", hello.stderr);
      const sysctl = await ssh(
        vm.sshPort,
        key,
        "docker run --rm --sysctl net.core.somaxconn=1024 berth/busybox:latest cat /proc/sys/net/core/somaxconn; cat /proc/sys/net/core/somaxconn",
      );
      assert.deepEqual(sysctl.stdout.trim().split("\n"), ["1024", "65535"], sysctl.stderr);
      const ro = await ssh(
        vm.sshPort,
        key,
        "sudo touch /usr/berth-test; echo rc=$?; findmnt -n -o FSTYPE,OPTIONS /; sudo touch /var/berth-test && echo var-ok; findmnt -n -o FSTYPE -T /etc",
      );
      assert.match(ro.stdout, /rc=1/);
      assert.match(ro.stdout, /^squashfs ro,/m);
      assert.match(ro.stdout, /var-ok/);
      assert.match(ro.stdout, /^overlay$/m);
      const password = await run("ssh", [
        "-p",
        String(vm.sshPort),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "PubkeyAuthentication=no",
        "berth@127.0.0.1",
        "true",
      ]);
      assert.notEqual(password.code, 0, "password login must be off");
      // Offline analysis of the image vs what systemd itself pulls in for the default target (units
      // that exist: list-dependencies also lists wanted units that are not installed).
      const deps = await ssh(
        vm.sshPort,
        key,
        "sudo systemctl list-dependencies --plain --all --no-legend default.target | sed 's/^[^a-zA-Z0-9]*//' | grep '[.]service$' | sort -u | xargs sudo systemctl show -p Id,LoadState,FragmentPath; echo ---; find /run/systemd/generator /run/systemd/generator.early /run/systemd/generator.late -name '*.service' -printf '%f\n' 2>/dev/null",
      );
      const [shown, generated] = deps.stdout.split("---");
      const live = new Set<string>();
      for (const block of shown!.trim().split(/\n\n+/)) {
        const f = Object.fromEntries(
          block.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
        );
        if (f.LoadState === "loaded" && f.Id) live.add(f.Id);
      }
      assert.ok(live.size > 20, deps.stdout);
      for (const s of manifest.enabledServices)
        assert.ok(live.has(s), `${s} computed offline but not pulled in by systemd`);
      for (const s of live)
        assert.ok(
          manifest.enabledServices.includes(s) || generated!.includes(s) || /@/.test(s),
          `${s} pulled in by systemd but missed offline`,
        );
    } finally {
      await vm.stop();
    }
  });

  test("an interrupted build leaves nothing behind; the next build gives the same root image digest", async () => {
    const outC = join(dir, "c");
    const child = spawn(
      BERTH,
      ["os", "build", PROFILE, "--out", outC, "--ssh-key", `${key}.pub`, "--no-baseline"],
      { stdio: "ignore" },
    );
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    // Wait until mmdebstrap is at work on this build's root, then press Ctrl-C.
    const workDir = join(CACHE, "os/work", `${child.pid}-container-host`);
    for (let i = 0; i < 600; i++) {
      if (runSync("pgrep", ["-f", `mmdebstrap.*${workDir}`]).code === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(runSync("pgrep", ["-f", `mmdebstrap.*${workDir}`]).code, 0, "mmdebstrap never started");
    await new Promise((r) => setTimeout(r, 3000));
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    assert.equal(existsSync(outC), false, "output directory appeared");
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes(".c.partial")),
      [],
    );
    assert.equal(existsSync(workDir), false, "scratch directory left");
    assert.equal(readFileSync("/proc/self/mountinfo", "utf8").includes(workDir), false, "mounts left");
    assert.equal(runSync("pgrep", ["-f", `mmdebstrap.*${workDir}`]).code, 1, "mmdebstrap still running");

    // Rebuild the same profile with the same key: same archive state, same root image.
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await berth([
        "os",
        "build",
        PROFILE,
        "--out",
        outC,
        "--ssh-key",
        `${key}.pub`,
        "--no-baseline",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const again = readJson<Manifest>(join(outC, "manifest.json"));
      if (JSON.stringify(again.archive) !== JSON.stringify(manifest.archive)) continue; // the mirror moved on; try once more
      const digest = (m: Manifest) => m.artifacts.find((a) => a.file === "root.squashfs")!.sha256;
      assert.equal(
        digest(again),
        digest(manifest),
        "root image digest differs between two builds of the same archive state",
      );
      assert.equal(
        again.artifacts.find((a) => a.file === "initrd.img")!.sha256,
        manifest.artifacts.find((a) => a.file === "initrd.img")!.sha256,
      );
      return;
    }
    assert.fail("the archive changed under both rebuilds");
  });

  test("berth scan reads the image's own database and its kernel package", async () => {
    const db = join(dir, "kernel.sqlite");
    const up = await dbUpdate(db, [`kernel-cna=${join(SHARED_DATA, "kernel-cna/cves.jsonl.gz")}`]);
    assert.equal(up.code, 0, up.stderr);
    const r = await berth(["scan", outA, "--db", db, "--json", "-q"]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      packages: number;
      kernels: { package?: string }[];
      findings: { kernel?: unknown }[];
    };
    assert.equal(s.packages, manifest.packages.length);
    assert.deepEqual(
      s.kernels.map((k) => k.package),
      [`linux-image-${manifest.kernelVersion}`],
    );
    assert.ok(
      s.findings.some((f) => f.kernel),
      "no kernel findings from the CNA data",
    );
  });

  test("berth harden check reads the built image's own root: no critical finding; apply is refused", async () => {
    const r = await berth(["harden", "check", "--target", outA, "--json", "-q"]);
    assert.equal(r.code, 0, r.stderr);
    const a = JSON.parse(r.stdout) as {
      kind: string;
      summary: { rules: number; failedBySeverity: { critical: number } };
      results: { id: string; status: string; severity: string; evidence?: string }[];
    };
    assert.equal(a.kind, "root");
    assert.ok(a.summary.rules >= 200, `${a.summary.rules} rules`);
    const critical = a.results.filter((x) => x.status === "fail" && x.severity === "critical");
    assert.deepEqual(critical, [], "critical findings in the default image");
    // Values Berth's own base package sets in the image, not this host's.
    const fwd = a.results.find((x) => x.id === "sysctl-net-ipv4-ip-forward")!;
    assert.equal(fwd.status, "pass", fwd.evidence);
    const refused = await berth(["harden", "apply", "--target", outA]);
    assert.equal(refused.code, 2, refused.stderr);
  });

  test("kernel-check on the built image finds every feature Docker needs", async () => {
    const r = await berth(["os", "kernel-check", outA]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
