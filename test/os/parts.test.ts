// The pieces of an image checked against the tools that consume them: cpio reads the initramfs format,
// dpkg-deb reads berth-base, docker loads and runs the baked image.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { buildBusyboxImage } from "../../src/images/busybox.ts";
import { baseFiles, buildBasePackage, sysctlConf } from "../../src/os/base-package.ts";
import { writeCpio } from "../../src/os/cpio.ts";
import { parseProfile, readProfile } from "../../src/os/profile.ts";
import { Archive } from "../../src/pkg/archive.ts";
import { repositoriesOf, resolveSources } from "../../src/pkg/sources.ts";
import { ROOT, run, runSync, tempDir } from "../helpers.ts";

describe("image parts", () => {
  let busyboxDeb: string;
  before(async () => {
    const archive = new Archive();
    const index = await archive.loadIndex(repositoriesOf(resolveSources({ suites: ["trixie"] })));
    busyboxDeb = await archive.fetchDeb(index.candidate("busybox-static")!);
  });

  test("cpio newc archives read back with GNU cpio, byte for byte", () => {
    const dir = tempDir();
    const data = Buffer.from("odd length!");
    const archive = writeCpio(
      [
        { path: "bin", type: "directory", mode: 0o755 },
        { path: "bin/tool", type: "file", mode: 0o755, data },
        { path: "bin/sh", type: "symlink", mode: 0o777, target: "tool" },
        { path: "empty", type: "file", mode: 0o600, data: Buffer.alloc(0) },
      ],
      1_700_000_000,
    );
    writeFileSync(join(dir, "a.cpio"), archive);
    const list = runSync("cpio", ["-itv", "-F", join(dir, "a.cpio")]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^drwxr-xr-x .* bin$/m);
    assert.match(list.stdout, /^-rwxr-xr-x .* 11 .* bin\/tool$/m);
    assert.match(list.stdout, /^lrwxrwxrwx .* bin\/sh -> tool$/m);
    const x = runSync("bash", ["-c", `mkdir -p ${dir}/x && cd ${dir}/x && cpio -idm --quiet -F ../a.cpio`]);
    assert.equal(x.code, 0, x.stderr);
    assert.deepEqual(readFileSync(join(dir, "x/bin/tool")), data);
  });

  test("berth-base: dpkg-deb reads it, it provides linux-initramfs-tool, and it is reproducible", async () => {
    const p = readProfile(join(ROOT, "profiles/container-host.yaml"));
    const a = await buildBasePackage(p, Buffer.from("image"), tempDir(), 1_700_000_000);
    const b = await buildBasePackage(p, Buffer.from("image"), tempDir(), 1_700_000_000);
    assert.deepEqual(readFileSync(a), readFileSync(b));
    const info = runSync("dpkg-deb", ["-f", a, "Package", "Provides", "Version"]);
    assert.match(
      info.stdout,
      /Package: berth-base\nProvides: linux-initramfs-tool\nVersion: 0\.1\.0\+[0-9a-f]{12}/,
    );
    const files = runSync("dpkg-deb", ["-c", a]).stdout;
    for (const f of baseFiles(p, Buffer.from("image")))
      assert.ok(files.includes(`./${f.path}`), `${f.path} missing from the .deb`);
    assert.match(runSync("dpkg-deb", ["-I", a, "conffiles"]).stdout, /\/etc\/docker\/daemon\.json/);
  });

  test("sysctls: sorted, module-dependent keys optional for systemd-sysctl", () => {
    const p = parseProfile(
      "name: x\nsysctls:\n  net.core.somaxconn: 1024\n  net.bridge.bridge-nf-call-iptables: 1\n",
    );
    assert.equal(
      sysctlConf(p).split("\n").slice(1).join("\n"),
      "-net.bridge.bridge-nf-call-iptables = 1\nnet.core.somaxconn = 1024\n",
    );
  });

  test("the baked busybox image is reproducible and Docker loads and runs it", async () => {
    const a = await buildBusyboxImage(busyboxDeb, 1_700_000_000);
    const b = await buildBusyboxImage(busyboxDeb, 1_700_000_000);
    assert.equal(a.manifestDigest, b.manifestDigest);
    assert.deepEqual(a.archive, b.archive);
    const file = join(tempDir(), "busybox.tar");
    writeFileSync(file, a.archive);
    const load = await run("docker", ["load", "-i", file]);
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stdout, /berth\/busybox:latest/);
    const r = await run("docker", [
      "run",
      "--rm",
      "--network",
      "none",
      "berth/busybox:latest",
      "/bin/sh",
      "-c",
      "echo ran as $(id -u)",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "ran as 65534");
  });

  test("per-container network sysctls leave the host's value alone (Docker on this host)", async () => {
    const host = readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim();
    const want = host === "1234" ? "1235" : "1234";
    const r = await run("docker", [
      "run",
      "--rm",
      "--sysctl",
      `net.core.somaxconn=${want}`,
      "berth/busybox:latest",
      "cat",
      "/proc/sys/net/core/somaxconn",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), want);
    assert.equal(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim(), host);
  });
});
