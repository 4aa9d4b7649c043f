// Profile validation: every mistake is one line naming the file, the line and the key, and a profile
// that names a missing package or service fails before anything is built.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseProfile, readProfile } from "../../src/os/profile.ts";
import { berth, isOneLineError, ROOT, tempDir } from "../helpers.ts";

const fixture = (f: string) => join(ROOT, "test/fixtures/os", f);

describe("OS profiles", () => {
  test("the shipped profiles parse, with the documented defaults", () => {
    const p = readProfile(join(ROOT, "profiles/container-host.yaml"));
    assert.equal(p.suite, "trixie");
    assert.equal(p.kernel.package, "linux-image-cloud-amd64");
    assert.equal(p.runtime, "docker");
    assert.equal(p.sysctls["net.ipv4.ip_forward"], "1");
    assert.ok(Number(p.sysctls["net.core.somaxconn"]) > 4096);
    const g = readProfile(join(ROOT, "profiles/general-purpose.yaml"));
    assert.equal(g.variant, "standard");
    assert.equal(g.recommends, true);
    const minimal = parseProfile("name: tiny\n");
    assert.deepEqual(
      [minimal.variant, minimal.runtime, minimal.image.compression, minimal.network.dhcp],
      ["essential", "docker", "xz", true],
    );
  });

  const cases: [string, string, RegExp][] = [
    [
      "unknown top-level key",
      "name: x\nservces:\n  enable: []\n",
      /^t\.yaml:2: unknown key "servces" \(did you mean "services"\?\)$/,
    ],
    [
      "unknown nested key",
      "name: x\nkernel:\n  pakage: foo\n",
      /^t\.yaml:3: unknown key "pakage" under "kernel"/,
    ],
    [
      "a bad package name",
      "name: x\npackages:\n  - ok-one\n  - Bad_Name\n",
      /^t\.yaml:4: packages\.1: must match pattern/,
    ],
    [
      "a bad enum",
      "name: x\nimage:\n  compression: lz4\n",
      /^t\.yaml:3: image\.compression: must be one of: xz, zstd, gzip$/,
    ],
    ["a wrong type", "name: x\nrecommends: perhaps\n", /^t\.yaml:2: recommends: must be boolean$/],
    ["a missing name", "packages: [a1]\n", /^t\.yaml:1: profile: must have required properties name$/],
    ["YAML syntax", "name: x\n  bad: [\n", /^t\.yaml:\d+: /],
    [
      "a sysctl list value",
      "name: x\nsysctls:\n  net.core.somaxconn: [1]\n",
      /^t\.yaml:3: sysctls\.net\.core\.somaxconn: /,
    ],
    ["a duplicate user", "name: x\nusers:\n  - name: a\n  - name: a\n", /user "a" is declared twice/],
  ];
  for (const [what, text, message] of cases)
    test(`refuses ${what} with file and line`, () => {
      assert.throws(
        () => parseProfile(text, "t.yaml"),
        (e: Error) => message.test(e.message) || assert.fail(e.message),
      );
    });

  test("berth os build refuses a bad profile before touching the archive (exit 2, one line)", async () => {
    const out = join(tempDir(), "out");
    const r = await berth(["os", "build", fixture("bad-key.yaml"), "--out", out, "--no-baseline"], {
      env: { BERTH_OFFLINE: "1", BERTH_CACHE: tempDir() },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(r.stderr, /bad-key\.yaml:4: unknown key "servces"/);
    assert.equal(existsSync(out), false);
  });

  test("a package that does not exist fails before any package download, naming the line", async () => {
    const cache = tempDir();
    const out = join(tempDir(), "out");
    const r = await berth(["os", "build", fixture("bad-package.yaml"), "--out", out, "--no-baseline"], {
      env: { BERTH_CACHE: cache },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(r.stderr, /bad-package\.yaml:4: package "no-such-package-berth" is not in trixie/);
    assert.equal(existsSync(out), false);
    // Only signed metadata was fetched: no .deb in the cache, no work directory.
    const { readdirSync } = await import("node:fs");
    const blobs = readdirSync(cache, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".deb"));
    assert.deepEqual(blobs, []);
    assert.equal(existsSync(join(cache, "os/work")), true);
    assert.deepEqual(readdirSync(join(cache, "os/work")), []);
  });

  test("a service no package of the image ships fails before the root is built", async () => {
    const out = join(tempDir(), "out");
    const r = await berth(["os", "build", fixture("bad-service.yaml"), "--out", out, "--no-baseline"]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(
      r.stderr,
      /bad-service\.yaml:7: service "no-such-unit-berth\.service" is not shipped by any package of this image/,
    );
    assert.equal(existsSync(out), false);
  });
});
