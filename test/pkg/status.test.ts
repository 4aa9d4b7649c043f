import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { readRootPackages, readStatus } from "../../src/pkg/status.ts";
import { berth, isOneLineError, runSync, tempDir } from "../helpers.ts";

const FORMAT = "${Package} ${Version} ${source:Package} ${source:Version}\n";

function dpkgQuery(admindir?: string): string[] {
  const args = admindir ? [`--admindir=${admindir}`, "-W", "-f", FORMAT] : ["-W", "-f", FORMAT];
  const r = runSync("dpkg-query", args);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean).sort();
}

const ours = (pkgs: Awaited<ReturnType<typeof readStatus>>) =>
  pkgs.map((p) => `${p.name} ${p.version} ${p.source} ${p.sourceVersion}`).sort();

// States dpkg can leave behind, with and without Source fields and binNMU versions.
const SYNTHETIC = `Package: plain
Status: install ok installed
Architecture: amd64
Version: 1.0-1

Package: binnmu
Status: install ok installed
Architecture: amd64
Source: srcpkg (1.0-1)
Version: 1.0-1+b2

Package: renamed
Status: hold ok installed
Architecture: all
Source: othersrc
Version: 2:3.4-5

Package: leftover
Status: deinstall ok config-files
Architecture: amd64
Version: 0.9
Conffiles:
 /etc/leftover.conf 00000000000000000000000000000000

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: halfway
Status: install reinstreq half-installed
Architecture: amd64
Version: 5
Source: halfsrc

Package: libmulti
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1.2-3
Source: multi (1.2-3)

Package: libmulti
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 1.2-3
Source: multi (1.2-3)
`;

describe("dpkg status reader", () => {
  test("agrees with dpkg-query on this machine's /var/lib/dpkg/status, entry for entry", async () => {
    const pkgs = await readStatus("/var/lib/dpkg/status");
    assert.ok(pkgs.length > 100);
    assert.deepEqual(ours(pkgs), dpkgQuery());
  });

  test("agrees with dpkg-query on a status file with unusual states and Source fields", async () => {
    const admin = tempDir();
    writeFileSync(join(admin, "status"), SYNTHETIC);
    mkdirSync(join(admin, "info"));
    mkdirSync(join(admin, "updates"));
    writeFileSync(join(admin, "available"), "");
    const pkgs = await readStatus(join(admin, "status"));
    assert.deepEqual(ours(pkgs), dpkgQuery(admin));
    const leftover = pkgs.find((p) => p.name === "leftover")!;
    assert.equal(leftover.status, "config-files");
    assert.equal(pkgs.find((p) => p.name === "binnmu")!.sourceVersion, "1.0-1");
  });

  test("reads a distroless status.d directory (no Status field, md5sums files beside)", async () => {
    const root = tempDir();
    const dir = join(root, "var/lib/dpkg/status.d");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "base-files"), "Package: base-files\nVersion: 13.8\nArchitecture: amd64\n");
    writeFileSync(join(dir, "base-files.md5sums"), "d41d8cd98f00b204e9800998ecf8427e  etc/debian_version\n");
    writeFileSync(
      join(dir, "libssl3t64"),
      "Package: libssl3t64\nVersion: 3.5.1-1\nArchitecture: amd64\nSource: openssl\n",
    );
    const pkgs = await readRootPackages(root);
    assert.deepEqual(
      pkgs.map((p) => [p.name, p.version, p.status, p.source, p.sourceVersion]),
      [
        ["base-files", "13.8", "installed", "base-files", "13.8"],
        ["libssl3t64", "3.5.1-1", "installed", "openssl", "3.5.1-1"],
      ],
    );
  });

  test("`berth pkg installed --json` has the documented fields and matches dpkg-query", async () => {
    const r = await berth(["pkg", "installed", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Record<string, string>[];
    assert.deepEqual(Object.keys(list[0]!).sort(), [
      "architecture",
      "name",
      "source",
      "sourceVersion",
      "status",
      "version",
    ]);
    assert.deepEqual(
      list.map((p) => `${p.name} ${p.version} ${p.source} ${p.sourceVersion}`).sort(),
      dpkgQuery(),
    );
  });

  test("malformed status data gives one clear line and exit 1", async () => {
    const d = tempDir();
    writeFileSync(join(d, "status"), "Package: a\nStatus: install ok installed\nthis line is wrong\n");
    const r = await berth(["pkg", "installed", "--status", join(d, "status")]);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(r.stderr, /line 3/);
    const missing = await berth(["pkg", "installed", "--root", join(d, "nowhere")]);
    assert.equal(missing.code, 1);
    assert.ok(isOneLineError(missing.stderr), missing.stderr);
    const both = await berth(["pkg", "installed", "--root", d, "--status", d]);
    assert.equal(both.code, 2);
  });
});
