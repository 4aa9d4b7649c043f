import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { cgroupLayout, checkConfig } from "../../src/os/kernel-check.ts";
import { Archive } from "../../src/pkg/archive.ts";
import { readDebFile } from "../../src/pkg/deb.ts";
import { repositoriesOf, resolveSources } from "../../src/pkg/sources.ts";
import { parseKernelConfig } from "../../src/system/kernel-config.ts";
import { berth, tempDir } from "../helpers.ts";

describe("kernel check", () => {
  let kernelDeb: string;
  let config: string;
  before(async () => {
    const archive = new Archive();
    const index = await archive.loadIndex(repositoriesOf(resolveSources({ suites: ["trixie"] })));
    const meta = index.candidate("linux-image-cloud-amd64")!;
    const image = meta.depends!.split(/[ ,(]/)[0]!;
    kernelDeb = await archive.fetchDeb(index.candidate(image)!);
    const name = image.replace(/^linux-image-/, "");
    config = (await readDebFile(kernelDeb, `boot/config-${name}`))!.toString("utf8");
  });

  test("Debian's cloud kernel has every feature Docker needs (from the .deb)", async () => {
    const r = await berth(["os", "kernel-check", kernelDeb, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const check = JSON.parse(r.stdout) as {
      missingRequired: unknown[];
      features: { name: string; state: string }[];
    };
    assert.deepEqual(check.missingRequired, []);
    assert.equal(check.features.find((f) => f.name === "OVERLAY_FS")?.state, "module");
    assert.equal(check.features.find((f) => f.name === "LIVEPATCH")?.state, "builtin");
  });

  test("a kernel without veth and seccomp is reported, with exit 1", async () => {
    const cut = config
      .replace(/^CONFIG_VETH=.*$/m, "# CONFIG_VETH is not set")
      .replace(/^CONFIG_SECCOMP=y$/m, "");
    const file = join(tempDir(), "config");
    writeFileSync(file, cut);
    const r = await berth(["os", "kernel-check", file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /VETH\s+missing\s+yes/);
    assert.match(r.stdout, /SECCOMP\s+missing\s+yes/);
    const features = checkConfig(parseKernelConfig(cut));
    assert.deepEqual(
      features
        .filter((f) => f.required && f.state === "missing")
        .map((f) => f.name)
        .sort(),
      ["SECCOMP", "VETH"],
    );
  });

  test("the running kernel: probes of /proc and /sys agree with what this machine shows", async () => {
    const r = await berth(["os", "kernel-check", "--running", "--json"]);
    assert.ok([0, 1].includes(r.code), r.stderr);
    const check = JSON.parse(r.stdout) as { features: { name: string; state: string }[] };
    assert.equal(check.features.find((f) => f.name === "net namespace")?.state, "present");
    const layout = cgroupLayout();
    assert.ok(check.features.some((f) => f.name === `cgroup hierarchy: ${layout.mode}`));
  });

  test("cgroup layouts: pure v2, hybrid", () => {
    const v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    assert.equal(cgroupLayout(v2).mode, "v2");
    const hybrid = `${v2}31 23 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n`;
    assert.deepEqual(cgroupLayout(hybrid).v1, ["memory"]);
    assert.equal(cgroupLayout(hybrid).mode, "hybrid");
  });
});
