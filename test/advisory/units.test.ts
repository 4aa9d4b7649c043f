// The pure parts of berth advisory: what changed between two package lists, stable numbering, the OSV
// record's fields, and CVE crediting between two versions of a real changelog (this host's dpkg).

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { compareReleases } from "../../src/advisory/compare.ts";
import { changelogFixes } from "../../src/advisory/fixes.ts";
import { assignId, fixKey, readRegistry, writeRegistry } from "../../src/advisory/ids.ts";
import { toOsv } from "../../src/advisory/osv.ts";
import type { Release } from "../../src/advisory/release.ts";
import { fixedVersions, parseChangelog } from "../../src/db/changelog.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import { runSync, tempDir } from "../helpers.ts";

const rel = (version: string, pkgs: [string, string, string][]): Release => ({
  kind: "os",
  path: `/r/${version}`,
  version,
  codename: "trixie",
  packages: pkgs.map(([name, source, v]) => ({ name, version: v, source, sourceVersion: v })),
});

test("changes by source package: upgraded, added, removed; binaries of the newer side", () => {
  const a = rel("2026.12.1", [
    ["libssl3t64", "openssl", "3.5.1-1"],
    ["openssl", "openssl", "3.5.1-1"],
    ["gone", "gone", "1.0-1"],
  ]);
  const b = rel("2026.12.2", [
    ["libssl3t64", "openssl", "3.5.1-1+deb13u1"],
    ["openssl", "openssl", "3.5.1-1+deb13u1"],
    ["tree", "tree", "2.2.1-1"],
  ]);
  assert.deepEqual(compareReleases(a, b), [
    { source: "gone", kind: "removed", from: "1.0-1", binaries: ["gone"] },
    {
      source: "openssl",
      kind: "upgraded",
      from: "3.5.1-1",
      to: "3.5.1-1+deb13u1",
      binaries: ["libssl3t64", "openssl"],
    },
    { source: "tree", kind: "added", to: "2.2.1-1", binaries: ["tree"] },
  ]);
});

test("ids: the same fix keeps its id, a new one takes the next number, numbers are never reused", async () => {
  const file = join(tempDir(), "ids.json");
  const reg = readRegistry(file);
  const a = assignId(reg, fixKey("openssl", "3.5.1-1+deb13u1", "trixie"), 2026);
  const b = assignId(reg, fixKey("curl", "8.14.1-2+deb13u1", "trixie"), 2026);
  assert.deepEqual([a, b], ["BSA-2026-0001", "BSA-2026-0002"]);
  await writeRegistry(file, reg);
  const again = readRegistry(file);
  assert.equal(assignId(again, fixKey("openssl", "3.5.1-1+deb13u1", "trixie"), 2026), a);
  delete again.assigned[fixKey("curl", "8.14.1-2+deb13u1", "trixie")]; // a withdrawn advisory
  assert.equal(assignId(again, fixKey("curl", "8.14.1-2+deb13u2", "trixie"), 2026), "BSA-2026-0003");
  assert.equal(assignId(again, fixKey("zlib", "1:1.3-1", "trixie"), 2027), "BSA-2027-0001");
});

test("the OSV record carries the fixed version, the CVEs and the affected and fixed Berth releases", () => {
  const a = rel("2026.12.1", [["openssl", "openssl", "3.5.1-1"]]);
  const b = rel("2026.12.2", [["openssl", "openssl", "3.5.1-1+deb13u1"]]);
  const [change] = compareReleases(a, b);
  const osv = toOsv({
    id: "BSA-2026-0001",
    change: change!,
    fixes: [{ cve: "CVE-2099-0001", fixedIn: "3.5.1-1+deb13u1", sources: ["changelog"] }],
    severity: "HIGH",
    older: a,
    newer: b,
    codename: "trixie",
    published: "2026-12-02T00:00:00Z",
  }) as unknown as {
    id: string;
    related: string[];
    affected: { package: unknown; ranges: { events: unknown[] }[] }[];
    database_specific: { berth: { affected_releases: string[]; fixed_releases: string[] } };
  };
  assert.equal(osv.id, "BSA-2026-0001");
  assert.deepEqual(osv.related, ["CVE-2099-0001"]);
  assert.deepEqual(osv.affected[0]!.package, {
    ecosystem: "Debian:13",
    name: "openssl",
    purl: "pkg:deb/debian/openssl?distro=trixie",
  });
  assert.deepEqual(osv.affected[0]!.ranges[0]!.events, [{ introduced: "0" }, { fixed: "3.5.1-1+deb13u1" }]);
  assert.deepEqual(osv.database_specific.berth.affected_releases, ["2026.12.1"]);
  assert.deepEqual(osv.database_specific.berth.fixed_releases, ["2026.12.2"]);
});

test("CVEs between two versions of a real changelog are the credited ones in (old, new]", () => {
  // The first changelog on this host (by package name) that credits CVEs over a long history.
  let text = "";
  let entries: ReturnType<typeof parseChangelog> = [];
  let credits = new Map<string, string>();
  for (const dir of readdirSync("/usr/share/doc").sort()) {
    const file = join("/usr/share/doc", dir, "changelog.Debian.gz");
    if (!existsSync(file)) continue;
    text = gunzipSync(readFileSync(file)).toString("utf8");
    entries = parseChangelog(text);
    credits = fixedVersions(entries, compareVersions);
    if (credits.size > 5 && entries.length > 20) break;
  }
  assert.ok(credits.size > 5, "no changelog on this host credits CVEs");
  const versions = entries.map((e) => e.version);
  const to = versions[0]!;
  const from = versions[Math.min(versions.length - 1, 60)]!;
  const got = changelogFixes(text, from, to);
  for (const [cve, v] of credits) {
    const inside = compareVersions(v, from) > 0 && compareVersions(v, to) <= 0;
    assert.equal(got.has(cve), inside, `${cve} credited to ${v}`);
  }
  // dpkg-parsechangelog names at least every CVE credited in the range.
  const file = join(tempDir(), "changelog");
  writeFileSync(file, text);
  const since = runSync("dpkg-parsechangelog", ["-l", file, "--since", from, "-S", "Changes"]);
  assert.equal(since.code, 0, since.stderr);
  for (const cve of got.keys()) assert.match(since.stdout, new RegExp(cve));
});
