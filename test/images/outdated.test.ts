// Keeping images current: an image built from trixie alone is named by `outdated` (against trixie and
// trixie-security) with the packages and the CVEs their newer versions fix, and `rebuild --outdated`
// clears it. The security gate refuses a fixable HIGH vulnerability, lets it through when the
// definition accepts it with a reason, and reports an unfixed one with Debian's status.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { berth, dbUpdate, isOneLineError, ROOT, tempDir } from "../helpers.ts";

const SUITES = "trixie,trixie-security";

interface Outdated {
  name: string;
  packages: { name: string; installed: string; candidate: string; fixes: { vulnId: string }[] }[];
  cves: string[];
}

describe("outdated images and the security gate", () => {
  test("a trixie-only build is outdated against trixie-security; rebuild --outdated clears it", async () => {
    const dir = tempDir("berth-images-outdated-");
    const out = join(dir, "out");
    const db = join(dir, "db.sqlite");
    const b = await berth([
      "images",
      "build",
      "memcached",
      "--suite",
      "trixie",
      "--out",
      out,
      "--db",
      db,
      "-q",
    ]);
    assert.equal(b.code, 0, b.stderr);
    // outdated and rebuild look at the same build against trixie and trixie-security.
    const against = ["--out", out, "--suite", SUITES, "--db", db];
    const outdated = async () => {
      const o = await berth(["images", "outdated", ...against, "--json", "-q"]);
      assert.equal(o.code, 0, o.stderr);
      return JSON.parse(o.stdout) as Outdated[];
    };
    const record = () =>
      JSON.parse(readFileSync(join(out, "memcached/build.json"), "utf8")) as {
        manifestDigest: string;
        packages: { name: string; version: string }[];
      };
    const [img] = await outdated();
    assert.equal(img!.name, "memcached");
    assert.ok(img!.packages.length > 0, "trixie-security has newer packages for this closure");
    assert.ok(img!.cves.length > 0, "their changelogs name CVEs");
    for (const p of img!.packages) assert.notEqual(p.installed, p.candidate);
    const before = record();
    const rb = await berth(["images", "rebuild", "--outdated", ...against, "-q"]);
    assert.equal(rb.code, 0, rb.stderr);
    const afterRecord = record();
    assert.notEqual(afterRecord.manifestDigest, before.manifestDigest);
    for (const p of img!.packages)
      assert.equal(afterRecord.packages.find((q) => q.name === p.name)?.version, p.candidate, p.name);
    const [now] = await outdated();
    assert.deepEqual(now!.packages, []);
    assert.deepEqual(now!.cves, []);
  });

  test("the gate fails a build on a fixable HIGH CVE unless the definition accepts it, and reports unfixed ones", async () => {
    const dir = tempDir("berth-images-gate-");
    const db = join(dir, "db.sqlite");
    const up = await dbUpdate(db, [`debian-tracker=${join(ROOT, "test/fixtures/images/tracker-gate.json")}`]);
    assert.equal(up.code, 0, up.stderr);
    const refused = await berth([
      "images",
      "build",
      "memcached",
      "--out",
      join(dir, "out"),
      "--db",
      db,
      "-q",
    ]);
    assert.equal(refused.code, 1);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    assert.match(refused.stderr, /security gate: 1 fixable HIGH\/CRITICAL .*CVE-2099-1111 in memcached/);
    const defs = join(dir, "defs");
    const text = readFileSync(join(ROOT, "images/memcached.yaml"), "utf8");
    mkdirSync(defs);
    writeFileSync(
      join(defs, "memcached.yaml"),
      `${text}accepted:\n  - cve: CVE-2099-1111\n    reason: the affected code path needs SASL, which this image does not enable\n`,
    );
    const ok = await berth([
      "images",
      "build",
      "memcached",
      "--definitions",
      defs,
      "--out",
      join(dir, "out"),
      "--db",
      db,
      "--json",
      "-q",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const [r] = JSON.parse(ok.stdout) as {
      accepted: { cve: string; reason: string }[];
      findings: { vulnId: string; status: string }[];
      cves: { byStatus: Record<string, number> };
    }[];
    assert.deepEqual(
      r!.accepted.map((a) => a.cve),
      ["CVE-2099-1111"],
    );
    const unfixed = r!.findings.find((f) => f.vulnId === "CVE-2099-2222");
    assert.ok(unfixed && unfixed.status !== "fixed", "the unfixed CVE is reported with its status");
  });
});
