// The advisory round trip on real builds: release v1 (the default profile against trixie only) and v2
// (trixie + trixie-updates + trixie-security, plus an extra package) from test/shared/os-releases.ts.
// Oracles: the manifests for what changed, and dpkg-parsechangelog on the new .debs' changelogs for the
// CVEs each upgrade names; then the advisories are published as repository targets, imported through
// the TUF client, and `berth scan` of v1 names them. Also the Docker watch against the live archive.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { compareVersions } from "../../src/pkg/version.ts";
import { BERTH, berth, runSync, tempDir } from "../helpers.ts";
import { releaseV1, releaseV2, V2, V2_EXTRA_PACKAGE } from "../shared/os-releases.ts";
import { freshTestRepository, serveTestRepository } from "../shared/repo.ts";

interface Manifest {
  packages: { name: string; version: string; source: string; sourceVersion: string }[];
}
interface Generated {
  advisories: { id: string; file: string; source: string; from: string; to: string; cves: string[] }[];
  others: { source: string; kind: string }[];
}

const sources = (m: Manifest) => new Map(m.packages.map((p) => [p.source, p.sourceVersion]));
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;

/**
 * The CVEs dpkg-parsechangelog lists in the uploads after `since`, from the newest .deb in trixie and its
 * updates of the first of `names` that carries a changelog of its own (a doc directory can be a link to
 * another binary's); at least the version the build has: a later upload only names more.
 */
function cvesSince(names: string[], since: string): Set<string> {
  for (const name of names) {
    const work = tempDir("berth-adv-cl-");
    const dl = runSync(BERTH, [
      "pkg",
      "download",
      name,
      "--suite",
      "trixie,trixie-updates,trixie-security",
      "--dest",
      work,
      "-q",
    ]);
    assert.equal(dl.code, 0, dl.stderr);
    const deb = join(work, readdirSync(work).find((f) => f.endsWith(".deb"))!);
    const x = runSync("bash", [
      "-c",
      `dpkg-deb --fsys-tarfile '${deb}' | tar -x -C '${work}' --wildcards './usr/share/doc/*/changelog.Debian.gz' 2>/dev/null; ls ${work}/usr/share/doc/*/changelog.Debian.gz 2>/dev/null | head -1`,
    ]);
    const file = x.stdout.trim();
    if (!file) continue;
    runSync("bash", ["-c", `zcat '${file}' > '${work}/changelog'`]);
    const out = runSync("dpkg-parsechangelog", [
      "-l",
      join(work, "changelog"),
      "--since",
      since,
      "-S",
      "Changes",
    ]);
    return new Set(out.stdout.match(/CVE-\d{4}-\d{4,7}/g) ?? []);
  }
  return new Set();
}

describe("berth advisory", () => {
  let v1 = "";
  let v2 = "";
  let out = "";
  let gen: Generated;

  before(async () => {
    v1 = await releaseV1();
    v2 = await releaseV2();
    out = tempDir("berth-adv-");
    const r = await berth(["advisory", "generate", v1, v2, "--out", out, "--json", "-q"]);
    assert.equal(r.code, 0, r.stderr);
    gen = JSON.parse(r.stdout) as Generated;
  });

  test("generate names the upgrades the security suite brought and the CVEs their changelogs fix", () => {
    const a = sources(manifestOf(v1));
    const b = sources(manifestOf(v2));
    const upgraded = [...b].filter(([s, v]) => a.has(s) && compareVersions(v, a.get(s)!) > 0);
    assert.ok(upgraded.length > 0, "v2 upgrades nothing over v1");
    assert.ok(gen.advisories.length > 0, "no advisory for any upgrade");
    for (const adv of gen.advisories) {
      assert.match(adv.id, /^BSA-\d{4}-\d{4}$/);
      assert.equal(adv.from, a.get(adv.source), `${adv.id}: old version`);
      assert.equal(adv.to, b.get(adv.source), `${adv.id}: new version`);
      // Every CVE credited is one the changelog names in the uploads since the old version.
      const bins = manifestOf(v2)
        .packages.filter((p) => p.source === adv.source)
        .map((p) => p.name);
      const named = cvesSince(bins, adv.from);
      for (const c of adv.cves)
        assert.ok(named.has(c), `${adv.id} ${adv.source}: ${c} not named since ${adv.from}`);
    }
    // The extra package is an addition, not a fix.
    const extra = manifestOf(v2).packages.find((p) => p.name === V2_EXTRA_PACKAGE)!;
    assert.ok(!gen.advisories.some((x) => x.source === extra.source));
    assert.ok(gen.others.some((x) => x.source === extra.source && x.kind === "added"));
    const ids = gen.advisories.map((x) => x.id);
    assert.equal(new Set(ids).size, ids.length, "an id used twice");
    const md = readFileSync(join(out, "summary.md"), "utf8");
    for (const adv of gen.advisories) assert.match(md, new RegExp(`Berth Security Advisory ${adv.id}`));
  });

  test("numbering is stable across runs and never reuses an id", async () => {
    const again = await berth(["advisory", "generate", v1, v2, "--out", out, "--json", "-q"]);
    assert.equal(again.code, 0, again.stderr);
    const g2 = JSON.parse(again.stdout) as Generated;
    assert.deepEqual(
      g2.advisories.map((x) => [x.id, x.source]),
      gen.advisories.map((x) => [x.id, x.source]),
    );
    // A registry that already gave out numbers continues after them.
    const reg = JSON.parse(readFileSync(join(out, "ids.json"), "utf8"));
    const year = Object.keys(reg.last)[0]!;
    const other = join(tempDir(), "ids.json");
    writeFileSync(other, JSON.stringify({ last: { [year]: 41 }, assigned: {} }));
    const third = await berth([
      "advisory",
      "generate",
      v1,
      v2,
      "--out",
      tempDir(),
      "--registry",
      other,
      "--json",
      "-q",
    ]);
    const g3 = JSON.parse(third.stdout) as Generated;
    assert.equal(g3.advisories[0]!.id, `BSA-${year}-0042`);
  });

  test("published in a repository and imported through the TUF client, berth scan of v1 names the BSAs", async () => {
    const repo = await freshTestRepository();
    for (const adv of gen.advisories) {
      const add = await berth(["repo", "add", repo.dir, "advisory", adv.file, "-q"]);
      assert.equal(add.code, 0, add.stderr);
    }
    const pub = await berth(["repo", "publish", repo.dir, "-q"]);
    assert.equal(pub.code, 0, pub.stderr);
    const served = await serveTestRepository(repo.dir);
    try {
      const db = join(tempDir(), "db.sqlite");
      const env = { BERTH_REPO_STATE: tempDir() };
      const up = await berth(
        [
          "db",
          "update",
          "--db",
          db,
          "--source",
          `berth-advisories=${served.url}`,
          "--trusted-root",
          repo.trustedRoot,
          "-q",
        ],
        { env },
      );
      assert.equal(up.code, 0, up.stderr);
      const scan = await berth(["scan", v1, "--db", db, "--json", "-q"]);
      assert.equal(scan.code, 0, scan.stderr);
      const findings = JSON.parse(scan.stdout).findings as {
        vulnId: string;
        source: string;
        berthFix?: { advisory: string; releases: string[] };
      }[];
      for (const adv of gen.advisories)
        for (const cve of adv.cves) {
          const f = findings.find((x) => x.vulnId === cve && x.source === adv.source);
          assert.equal(f?.berthFix?.advisory, adv.id, `${cve} in ${adv.source}`);
          assert.deepEqual(f?.berthFix?.releases, [V2]);
        }
      const table = await berth(["scan", v1, "--db", db]);
      assert.match(table.stdout, new RegExp(`fixed in Berth ${V2.replace(/\./g, "\\.")} \\(BSA-`));
      // v2 has every fix: none of the advisories' CVEs is reported against it.
      const newer = JSON.parse((await berth(["scan", v2, "--db", db, "--json", "-q"])).stdout).findings as {
        vulnId: string;
        berthFix?: unknown;
      }[];
      assert.ok(!newer.some((x) => x.berthFix), "v2 reported as fixed by a later release");
      // Plain HTTP without the TUF client is never used: a wrong trusted root is refused.
      const other = await freshTestRepository();
      const bad = await berth(
        [
          "db",
          "update",
          "--db",
          db,
          "--source",
          `berth-advisories=${served.url}`,
          "--trusted-root",
          other.trustedRoot,
        ],
        { env: { BERTH_REPO_STATE: tempDir() } },
      );
      assert.equal(bad.code, 1, bad.stdout);
      assert.match(bad.stderr, /root|signature|threshold/i);
    } finally {
      await served.close();
    }
  });

  test("watch docker: the first run reports the stack, the second nothing new, an older state the versions since", async () => {
    const state = join(tempDir(), "watch.json");
    const suites = ["--suite", "trixie,trixie-security"];
    const first = await berth(["advisory", "watch", "docker", "--state", state, ...suites, "--json", "-q"]);
    assert.equal(first.code, 0, first.stderr);
    const r1 = JSON.parse(first.stdout) as {
      reports: { package: string; version: string; cves: string[] }[];
    };
    assert.deepEqual(r1.reports.map((x) => x.package).sort(), ["containerd", "docker.io", "runc"]);
    const second = JSON.parse(
      (await berth(["advisory", "watch", "docker", "--state", state, ...suites, "--json", "-q"])).stdout,
    );
    assert.deepEqual(second.reports, []);
    // Back to an older docker.io: the versions since then are new again, with the CVEs their changelogs fix.
    const s = JSON.parse(readFileSync(state, "utf8"));
    s.seen["docker.io"] = "20.10.24+dfsg1-1";
    writeFileSync(state, JSON.stringify(s));
    const third = JSON.parse(
      (await berth(["advisory", "watch", "docker", "--state", state, ...suites, "--json", "-q"])).stdout,
    ) as typeof r1;
    const docker = third.reports.filter((x) => x.package === "docker.io");
    assert.ok(docker.length > 0);
    const named = cvesSince(["docker.io"], "20.10.24+dfsg1-1");
    for (const d of docker) for (const c of d.cves) assert.ok(named.has(c), `docker.io ${d.version}: ${c}`);
  });
});
