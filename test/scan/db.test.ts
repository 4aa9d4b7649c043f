// The advisory database and the matching rules, on the real data in ../shared/data and small fixtures.

import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { fixedVersions, parseChangelog } from "../../src/db/changelog.ts";
import { AdvisoryDb } from "../../src/db/database.ts";
import { debianStatus, importTrackerJson } from "../../src/db/importers/debian-tracker.ts";
import { importAdvisoryList, parseAdvisoryList } from "../../src/db/importers/dsa-list.ts";
import { importKernelCna, importKernelStreams } from "../../src/db/importers/kernel.ts";
import { importOsv, inOsvRange } from "../../src/db/importers/osv.ts";
import { cvss3BaseScore, severityFromUrgency } from "../../src/db/severity.ts";
import { defaultRequests } from "../../src/db/update.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import type { Inventory } from "../../src/scan/inventory.ts";
import { cnaAffects, compareKernelVersions, streamAffects } from "../../src/scan/kernel-match.ts";
import { matchInventory, matchUpstreamKernel } from "../../src/scan/match.ts";
import { BERTH, berth, dbUpdate, isOneLineError, ROOT, runSync, SHARED_DATA, tempDir } from "../helpers.ts";

const fixture = (f: string) => join(ROOT, "test/fixtures/scan", f);
const TRACKER = join(SHARED_DATA, "debian-tracker/tracker-sample.json");
const CNA = join(SHARED_DATA, "kernel-cna/cves.jsonl.gz");
const STREAMS = join(SHARED_DATA, "linux-kernel-cves/stream_fixes.json.gz");
const CVES_TXT = join(SHARED_DATA, "linux-kernel-cves/CVEs.txt");

function freshDb(): AdvisoryDb {
  return new AdvisoryDb(join(tempDir(), "db.sqlite"));
}

const pkg = (name: string, version: string, source = name, sourceVersion = version) => ({
  name,
  version,
  architecture: "amd64",
  status: "installed",
  source,
  sourceVersion,
  want: "install",
});

describe("advisory database", () => {
  test("the tracker sample imports, and statuses read as the best scanners read them", () => {
    const db = freshDb();
    const data = JSON.parse(readFileSync(TRACKER, "utf8"));
    const n = importTrackerJson(db, data, TRACKER);
    assert.ok(n > 10);
    const rows = db.db
      .prepare(
        "SELECT vuln_id, release, status, fixed_version FROM advisories WHERE package = 'chromium' AND vuln_id = 'CVE-2022-0456'",
      )
      .all() as { release: string; status: string; fixed_version: string | null }[];
    const bookworm = rows.find((r) => r.release === "bookworm")!;
    assert.deepEqual([bookworm.status, bookworm.fixed_version], ["fixed", "98.0.4758.80-1"]);
    assert.equal(debianStatus({ status: "resolved", fixed_version: "0" }), "not-affected");
    assert.equal(debianStatus({ status: "open", nodsa: "Minor", nodsa_reason: "postponed" }), "fix-deferred");
    assert.equal(debianStatus({ status: "open", nodsa: "Minor", nodsa_reason: "ignored" }), "will-not-fix");
    assert.equal(debianStatus({ status: "open", urgency: "end-of-life" }), "end-of-life");
    assert.equal(debianStatus({ status: "undetermined" }), "undetermined");
    assert.equal(severityFromUrgency("high**"), "HIGH");
    assert.equal(severityFromUrgency("unimportant"), "NEGLIGIBLE");
  });

  test("matching: tracker statuses, never-affected skipped, other releases ignored, linux-libc-dev not a kernel", () => {
    const db = freshDb();
    importTrackerJson(db, JSON.parse(readFileSync(fixture("tracker-statuses.json"), "utf8")), "fixture");
    const inv: Inventory = {
      target: "t",
      kind: "rootfs",
      os: { id: "debian", codename: "bookworm" },
      packages: [
        pkg("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
        pkg("linux-libc-dev", "6.1.112-1", "linux", "6.1.112-1"),
      ],
      kernels: [],
    };
    const f = matchInventory(db, inv);
    const byId = Object.fromEntries(f.map((x) => [x.vulnId, x]));
    assert.deepEqual(Object.keys(byId).sort(), [
      "CVE-2099-0001",
      "CVE-2099-0003",
      "CVE-2099-0004",
      "CVE-2099-0005",
      "CVE-2099-0006",
      "CVE-2099-0009",
    ]);
    assert.equal(byId["CVE-2099-0001"]!.status, "fixed");
    assert.equal(byId["CVE-2099-0001"]!.fixedVersion, "99:1-1");
    assert.equal(byId["CVE-2099-0001"]!.severity, "HIGH");
    assert.equal(byId["CVE-2099-0003"]!.status, "no-fix-yet");
    assert.equal(byId["CVE-2099-0004"]!.status, "will-not-fix");
    assert.equal(byId["CVE-2099-0005"]!.status, "fix-deferred");
    assert.equal(byId["CVE-2099-0006"]!.status, "undetermined");
    assert.equal(byId["CVE-2099-0009"]!.status, "end-of-life");
    assert.equal(f[0]!.vulnId, "CVE-2099-0001", "fixable findings come first");
    assert.ok(!f.some((x) => x.package === "linux-libc-dev"));
  });

  test("the DSA and DLA lists parse completely and import", () => {
    for (const name of ["DSA.list", "DLA.list"] as const) {
      const text = readFileSync(join(SHARED_DATA, "debian-tracker", name), "utf8");
      const entries = parseAdvisoryList(text, name);
      const headers = text.split("\n").filter((l) => /^\[/.test(l)).length;
      assert.equal(entries.length, headers, `${name}: every advisory header parsed`);
      const db = freshDb();
      const n = importAdvisoryList(db, name === "DSA.list" ? "debian-dsa" : "debian-dla", text, name);
      assert.ok(n > 1000);
    }
    const dsa = parseAdvisoryList(readFileSync(join(SHARED_DATA, "debian-tracker/DSA.list"), "utf8"));
    const xorg = dsa.find((e) => e.id === "DSA-5380-1")!;
    assert.deepEqual(xorg.cves, ["CVE-2023-1393"]);
    assert.deepEqual(xorg.releases, [
      { release: "bullseye", package: "xorg-server", version: "2:1.20.11-1+deb11u6", state: undefined },
    ]);
  });

  test("OSV: a file, a directory and a zip import the same; ranges and CVSS are read", async () => {
    const dir = tempDir();
    copyFileSync(fixture("osv-zlib.json"), join(dir, "a.json"));
    copyFileSync(fixture("osv-npm.json"), join(dir, "b.json"));
    assert.equal(
      runSync("zip", ["-q", "-j", join(dir, "all.zip"), join(dir, "a.json"), join(dir, "b.json")]).code,
      0,
    );
    const counts = [];
    for (const src of [dir, join(dir, "all.zip")]) {
      const db = freshDb();
      counts.push(await importOsv(db, src));
      const row = db.db
        .prepare("SELECT release, status, fixed_version FROM advisories WHERE package = 'zlib'")
        .get() as Record<string, string>;
      assert.deepEqual({ ...row }, { release: "bookworm", status: "fixed", fixed_version: "1:99.0-1" });
      const npm = db.db
        .prepare("SELECT ecosystem FROM advisories WHERE package = 'left-pad'")
        .get() as Record<string, string>;
      assert.equal(npm.ecosystem, "npm");
      const v = db.db
        .prepare("SELECT cvss, severity FROM vulnerabilities WHERE vuln_id = 'CVE-2099-2000'")
        .get() as Record<string, unknown>;
      assert.deepEqual({ ...v }, { cvss: 9.8, severity: "CRITICAL" });
      const inv: Inventory = {
        target: "t",
        kind: "rootfs",
        os: { id: "debian", codename: "bookworm" },
        packages: [pkg("zlib1g", "1:1.2.13.dfsg-1", "zlib")],
        kernels: [],
      };
      const f = matchInventory(db, inv);
      assert.deepEqual(
        f.map((x) => [x.vulnId, x.fixedVersion, x.severity]),
        [["CVE-2099-2000", "1:99.0-1", "CRITICAL"]],
      );
    }
    assert.equal(counts[0], counts[1]);
    const bad = join(dir, "bad.zip");
    writeFileSync(bad, "PK\u0003\u0004 not really a zip");
    await assert.rejects(importOsv(freshDb(), bad), /zip/);
  });

  test("OSV range semantics and CVSS 3.1 base scores", () => {
    const ev = [
      { introduced: "1.0-1" },
      { fixed: "1.2-1" },
      { introduced: "2.0-1" },
      { last_affected: "2.1-1" },
    ];
    const at = (v: string) => inOsvRange(v, ev, compareVersions);
    assert.deepEqual(["0.9-1", "1.0-1", "1.1-5", "1.2-1", "1.9", "2.0-1", "2.1-1", "2.1-2"].map(at), [
      false,
      true,
      true,
      false,
      false,
      true,
      true,
      false,
    ]);
    assert.equal(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
    assert.equal(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H"), 9.1);
    assert.equal(cvss3BaseScore("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"), 7.8);
    assert.equal(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
    assert.equal(cvss3BaseScore("not a vector"), undefined);
  });

  test("changelogs: entries, the CVEs each upload fixes, the version credited with each fix", () => {
    // Sentences from real changelogs (apache2, openssl, mediawiki, bind9, cups, kernel, chromium).
    const text = `foo (1.2-3~deb12u1) bookworm-security; urgency=high

  * Rebuild for bookworm-security.

 -- Jane <j@example.org>  Tue, 02 Jan 2099 00:00:00 +0000

foo (1.2-3) unstable; urgency=high

  * Fix CVE-2099-1111 and CVE-2099-2222.
  * Remove mention of CVE-2099-5555 in 1.2-1 changelog. It was already
    fixed in 1.2-1.
  * Fix regression caused by the fix for CVE-2099-3333 (closes: #855540).
  * Drop CVE-2099-4444.dpatch, upstream now.

 -- Jane <j@example.org>  Mon, 01 Jan 2099 00:00:00 +0000

foo (1.2-2) unstable; urgency=medium

  * Not affected by CVE-2099-1111 because SSLv2 is disabled.
  * CVE-2099-6666 does not affect this version.
  * scsi: Revert "scsi: perform lockless command completion" (CVE-2099-3333)
  * crypto: algif_aead - Revert to operating out-of-place (CVE-2099-4444)
  * CVE-2099-7777: Incorrect security UI in Full Screen.
  * Revert the fix for CVE-2099-7777, it broke logins.

 -- Jane <j@example.org>  Sun, 31 Dec 2098 00:00:00 +0000

foo (1.2-1) unstable; urgency=medium

  * The security advisory lists the following fixes:
    - CVE-2099-5555 (fixed in 1.2).
  * CVE-2099-7777: Use after free in V8.

 -- Jane <j@example.org>  Sat, 30 Dec 2098 00:00:00 +0000

bar (9.0-1) unstable; urgency=medium

  * Merged history of another source package: fixes CVE-2099-8888.

 -- Jane <j@example.org>  Fri, 29 Dec 2098 00:00:00 +0000
`;
    const entries = parseChangelog(text);
    assert.deepEqual(
      entries.map((e) => [e.package, e.version, e.distributions, e.cves]),
      [
        ["foo", "1.2-3~deb12u1", ["bookworm-security"], []],
        ["foo", "1.2-3", ["unstable"], ["CVE-2099-1111", "CVE-2099-2222"]],
        ["foo", "1.2-2", ["unstable"], ["CVE-2099-3333", "CVE-2099-4444"]],
        ["foo", "1.2-1", ["unstable"], ["CVE-2099-5555", "CVE-2099-7777"]],
        ["bar", "9.0-1", ["unstable"], ["CVE-2099-8888"]],
      ],
    );
    assert.deepEqual(
      entries[2]!.mentions.map((m) => [m.cve, m.kind]),
      [
        ["CVE-2099-1111", "not-affected"],
        ["CVE-2099-6666", "not-affected"],
        ["CVE-2099-7777", "revert"],
      ],
    );
    assert.deepEqual(
      entries[1]!.mentions.map((m) => m.kind),
      ["reference", "reference", "reference"],
    );
    // Credited to the first upload that fixes each CVE (after the last revert), at the lowest version of
    // the line of descent from there: the bookworm rebuild carries 1.2-3's fixes; unstable's 1.2-3 reaches
    // bookworm only as rebuilds below it, hence "1.2-3~". Another package's merged history credits nothing.
    assert.deepEqual(Object.fromEntries(fixedVersions(entries, compareVersions)), {
      "CVE-2099-1111": "1.2-3~",
      "CVE-2099-2222": "1.2-3~",
      "CVE-2099-3333": "1.2-2~",
      "CVE-2099-4444": "1.2-2~",
      "CVE-2099-5555": "1.2-1~",
    });
    // dpkg-parsechangelog agrees on the entries.
    const file = join(tempDir(), "changelog");
    writeFileSync(file, text);
    const dp = runSync("dpkg-parsechangelog", ["-l", file, "--all", "--format", "rfc822"]);
    assert.deepEqual(
      [...dp.stdout.matchAll(/^Version: (\S+)$/gm)].map((m) => m[1]),
      entries.map((e) => e.version),
    );
  });
});

describe("kernel CVEs", () => {
  test("Dirty COW (CVE-2016-5195): upstream 4.4.0 is vulnerable, 4.4.26 and later on the branch are not", async () => {
    const db = freshDb();
    await importKernelStreams(db, STREAMS, CVES_TXT);
    const k = (v: string) => ({ release: v, upstream: v, running: false });
    const has = (v: string) => matchUpstreamKernel(db, k(v)).find((f) => f.vulnId === "CVE-2016-5195");
    assert.equal(has("4.4.0")?.fixedVersion, "4.4.26");
    assert.equal(has("4.4.25")?.status, "fixed");
    assert.equal(has("4.4.26"), undefined);
    assert.equal(has("4.4.100"), undefined);
    assert.equal(has("4.9"), undefined, "mainline fixed it in 4.9-rc2");
    assert.equal(has("2.6.21"), undefined, "introduced in 2.6.22-rc1");
    assert.equal(streamAffects("4.4.0", new Map([["4.4", "4.4.26"]])).affected, true);
    assert.ok(compareKernelVersions("4.9-rc2", "4.9") < 0 && compareKernelVersions("4.9", "4.9.1") < 0);
  });

  test("the CNA's per-branch ranges, checked record by record for the running kernel", async () => {
    const db = freshDb();
    const n = await importKernelCna(db, CNA);
    assert.ok(n > 10_000);
    const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const upstream = /^\d+\.\d+(\.\d+)?/.exec(release)![0];
    const branch = upstream.split(".").slice(0, 2).join(".");
    const findings = new Set(
      matchUpstreamKernel(db, { release, upstream, running: true }).map((f) => f.vulnId),
    );
    assert.ok(findings.size > 0, `no CNA entries for ${upstream}`);
    // Independent reading of the raw records: a fix on this branch newer than us means affected;
    // a fix on this branch at or below us means not affected.
    let checked = 0;
    for (const line of gunzipSync(readFileSync(CNA)).toString("utf8").split("\n")) {
      if (!line) continue;
      const rec = JSON.parse(line);
      const semver = rec.containers?.cna?.affected?.find((a: { versions?: { versionType?: string }[] }) =>
        a.versions?.some((v) => v.versionType === "semver"),
      );
      const fix = semver?.versions?.find(
        (v: { lessThanOrEqual?: string; status?: string }) =>
          v.status === "unaffected" && v.lessThanOrEqual === `${branch}.*`,
      );
      if (!fix || semver.defaultStatus !== "affected") continue;
      const introduced = semver.versions.find(
        (v: { status?: string; lessThan?: string; lessThanOrEqual?: string }) =>
          v.status === "affected" && !v.lessThan && !v.lessThanOrEqual,
      )?.version;
      if (introduced && compareKernelVersions(upstream, introduced) < 0) continue;
      const expected = compareKernelVersions(upstream, fix.version) < 0;
      assert.equal(
        findings.has(rec.cveMetadata.cveId),
        expected,
        `${rec.cveMetadata.cveId}: fixed on ${branch} in ${fix.version}`,
      );
      checked++;
    }
    assert.ok(checked > 50, `only ${checked} records with a ${branch} fix`);
    assert.equal(
      cnaAffects("6.1.50", "affected", [
        { version: "6.1.112", lessThanOrEqual: "6.1.*", status: "unaffected" },
      ]),
      true,
    );
    assert.equal(
      cnaAffects("6.1.112", "affected", [
        { version: "6.1.112", lessThanOrEqual: "6.1.*", status: "unaffected" },
      ]),
      false,
    );
  });

  test("berth scan kernel: releases with Dirty COW and without, JSON and exit codes", async () => {
    const dbPath = join(tempDir(), "k.sqlite");
    const up = await dbUpdate(dbPath, [`kernel-streams=${STREAMS}`], ["--cves-txt", CVES_TXT]);
    assert.equal(up.code, 0, up.stderr);
    const old = await berth(["scan", "kernel", "4.4.0", "--db", dbPath, "--json"]);
    assert.equal(old.code, 0, old.stderr);
    assert.ok(JSON.parse(old.stdout).findings.some((f: { vulnId: string }) => f.vulnId === "CVE-2016-5195"));
    const fixed = await berth(["scan", "kernel", "4.4.26", "--db", dbPath, "--json"]);
    assert.ok(
      !JSON.parse(fixed.stdout).findings.some((f: { vulnId: string }) => f.vulnId === "CVE-2016-5195"),
    );
    const fail = await berth(["scan", "kernel", "4.4.0", "--db", dbPath, "--fail-on", "unknown", "-q"]);
    assert.equal(fail.code, 1);
    const bad = await berth(["scan", "kernel", "not-a-version", "--db", dbPath]);
    assert.equal(bad.code, 2);
    assert.ok(isOneLineError(bad.stderr), bad.stderr);
  });
});

describe("Debian kernels", () => {
  test("Debian's verdicts win CVE by CVE over upstream ranges; upstream ranges only where Debian is silent", async () => {
    const dbPath = join(tempDir(), "dk.sqlite");
    const DSA = join(SHARED_DATA, "debian-tracker/DSA.list");
    const up = await dbUpdate(
      dbPath,
      [`debian-dsa=${DSA}`, `kernel-cna=${CNA}`, `kernel-streams=${STREAMS}`],
      ["--cves-txt", CVES_TXT],
    );
    assert.equal(up.code, 0, up.stderr);
    const installed = "5.10.158-2";
    const r = await berth([
      "scan",
      "kernel",
      "5.10.0-20-amd64",
      installed,
      "--release",
      "bullseye",
      "--db",
      dbPath,
      "--json",
      "-q",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const findings = JSON.parse(r.stdout).findings as {
      vulnId: string;
      fixedVersion?: string;
      dataSource: string;
    }[];
    const byId = new Map(findings.map((f) => [f.vulnId, f]));
    // The oracle: the DSA list itself, for linux in bullseye.
    const dsaFix = new Map<string, string>();
    for (const e of parseAdvisoryList(readFileSync(DSA, "utf8")))
      for (const rel of e.releases)
        if (rel.release === "bullseye" && rel.package === "linux" && rel.version)
          for (const c of e.cves)
            if (!dsaFix.has(c) || compareVersions(rel.version, dsaFix.get(c)!) < 0)
              dsaFix.set(c, rel.version);
    assert.ok(dsaFix.size > 50);
    let overridden = 0;
    const upstream = new Set(
      matchUpstreamKernel(new AdvisoryDb(dbPath), {
        release: "5.10.0-20-amd64",
        upstream: "5.10.158",
        running: false,
      }).map((f) => f.vulnId),
    );
    for (const [cve, fixed] of dsaFix) {
      const f = byId.get(cve);
      if (compareVersions(installed, fixed) >= 0) {
        assert.equal(f, undefined, `${cve}: Debian fixed it in ${fixed}`);
        if (upstream.has(cve)) overridden++;
      } else {
        assert.equal(f?.fixedVersion, fixed, cve);
        assert.equal(f?.dataSource, "debian-dsa", cve);
      }
    }
    assert.ok(overridden > 0, "no CVE where Debian's backported fix overrides the upstream range");
    // Where Debian's data is silent, the upstream ranges still report.
    const silent = findings.filter((f) => !dsaFix.has(f.vulnId));
    assert.ok(
      silent.length > 0 &&
        silent.every((f) => f.dataSource === "kernel-cna" || f.dataSource === "kernel-streams"),
    );
  });
});

describe("db command", () => {
  test("status lists sources with counts; an old database draws a warning", async () => {
    const dbPath = join(tempDir(), "s.sqlite");
    await berth(["db", "update", "--db", dbPath, "--source", `debian-tracker=${TRACKER}`]);
    const s = await berth(["db", "status", "--db", dbPath, "--json"]);
    const st = JSON.parse(s.stdout);
    assert.equal(st.sources[0].name, "debian-tracker");
    assert.equal(st.stale, false);
    const db = new AdvisoryDb(dbPath);
    db.db.prepare("UPDATE sources SET imported_at = '2020-01-01T00:00:00Z'").run();
    db.close();
    const old = await berth(["db", "status", "--db", dbPath]);
    assert.match(old.stderr, /days old/);
    const scan = await berth(["scan", "kernel", "4.4.0", "--db", dbPath, "-q"]);
    assert.match(scan.stderr, /more than 7 days old: debian-tracker \(\d+\.\d days\)/);
  });

  test("a bare update updates every default source it can reach, one line each; with no network it fails", async () => {
    const dbPath = join(tempDir(), "d.sqlite");
    const r = await berth(["db", "update", "--db", dbPath, "--target", "host", "--json"]);
    const results = JSON.parse(r.stdout) as { source: string; result?: string; error?: string }[];
    assert.deepEqual(results.map((x) => x.source).sort(), [...defaultRequests().map((q) => q.name)].sort());
    for (const x of results) assert.ok(Boolean(x.result) !== Boolean(x.error), JSON.stringify(x));
    // This machine reaches the Debian archive: its changelogs for the host are always updated.
    const archive = results.find((x) => x.source === "debian-archive")!;
    assert.match(archive.result ?? "", /source packages have newer versions/, archive.error);
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse((await berth(["db", "status", "--db", dbPath, "--json"])).stdout);
    const updated = results.filter((x) => x.result).map((x) => x.source);
    assert.deepEqual(st.sources.map((s: { name: string }) => s.name).sort(), updated.sort());
    for (const s of st.sources) assert.ok(s.ageDays >= 0 && s.ageDays < 0.1, `${s.name}: ${s.ageDays}`);
    // In a network namespace of its own nothing is reachable: every source fails, and so does the command.
    const none = runSync("unshare", ["-n", BERTH, "db", "update", "--db", dbPath, "--target", "host"], {
      env: { ...process.env, BERTH_OFFLINE: "" },
    });
    assert.equal(none.code, 1, none.stdout + none.stderr);
    // One line per source, saying why it was not updated.
    for (const x of results)
      assert.match(none.stderr, new RegExp(`^berth: warning: ${x.source}: not updated: \\S`, "m"));
  });

  test("bad sources fail with one line: unknown name, missing file, broken JSON", async () => {
    const dbPath = join(tempDir(), "b.sqlite");
    const unknown = await berth(["db", "update", "--db", dbPath, "--source", "nope=x"]);
    assert.equal(unknown.code, 2);
    assert.ok(isOneLineError(unknown.stderr), unknown.stderr);
    const missing = await berth(["db", "update", "--db", dbPath, "--source", "osv=/nonexistent.json"]);
    assert.equal(missing.code, 1);
    assert.ok(isOneLineError(missing.stderr), missing.stderr);
    const broken = join(tempDir(), "broken.json");
    writeFileSync(broken, "{ not json");
    const r = await berth(["db", "update", "--db", dbPath, "--source", `debian-tracker=${broken}`]);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
  });
});

describe("kernel inventory", () => {
  test("uname of a Debian kernel finds its package and upstream version; other kernels their upstream", async () => {
    const { kernelFromUname } = await import("../../src/scan/targets.ts");
    const debian = kernelFromUname("6.1.0-26-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)", [
      { name: "linux-image-6.1.0-26-amd64", version: "6.1.112-1", status: "installed" },
      { name: "linux-libc-dev", version: "6.1.115-1", status: "installed" },
    ]);
    assert.deepEqual(debian, {
      release: "6.1.0-26-amd64",
      upstream: "6.1.112",
      package: "linux-image-6.1.0-26-amd64",
      packageVersion: "6.1.112-1",
      running: true,
    });
    const other = kernelFromUname("6.18.44-fc-v669", "#1 SMP PREEMPT_DYNAMIC @0", []);
    assert.deepEqual(other, {
      release: "6.18.44-fc-v669",
      upstream: "6.18.44",
      package: undefined,
      packageVersion: undefined,
      running: true,
    });
  });
});
