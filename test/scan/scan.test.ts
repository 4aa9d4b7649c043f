// The scanner on real targets: a bookworm root made by mmdebstrap, scanned as a directory, as a
// `docker save` archive and through the Docker engine; a layered image built with docker build
// (a package purged in one layer, one reinstalled in another), also as an OCI layout made by skopeo;
// this host's pending security updates against apt and dpkg-parsechangelog; output formats against
// their schema; hostile inputs refused.

import assert from "node:assert/strict";
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import * as CDX from "@cyclonedx/cyclonedx-library";
import tar from "tar-stream";
import { treeDigest } from "../../src/common/tree-digest.ts";
import { parseChangelog } from "../../src/db/changelog.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import { berth, dbUpdate, isOneLineError, ROOT, run, runSync, tempDir } from "../helpers.ts";

const MIRROR = "http://deb.debian.org/debian";
const BASE = "berth-scan-base:test";
const LAYERED = "berth-scan-layered:test";

interface ScanJson {
  packages: number;
  findings: {
    vulnId: string;
    package: string;
    installed: string;
    fixedVersion?: string;
    status: string;
    severity: string;
    dataSource: string;
    layer?: { index: number; diffId?: string };
  }[];
  os?: { codename?: string };
  layers?: { index: number; diffId?: string }[];
}

async function scanJson(target: string, db: string, extra: string[] = []): Promise<ScanJson> {
  const r = await berth(["scan", target, "--db", db, "--json", "-q", ...extra]);
  assert.equal(r.code, 0, `${target}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ScanJson;
}

const findingKeys = (s: ScanJson) =>
  s.findings.map((f) => `${f.package} ${f.installed} ${f.vulnId} ${f.status} ${f.fixedVersion ?? ""}`).sort();

async function tarOf(
  entries: { name: string; body?: Buffer | string; type?: "file" | "directory"; size?: number }[],
): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((r) => pack.on("end", () => r()));
  pack.on("data", (c: unknown) => void chunks.push(c as Buffer));
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? "file", mode: 0o644 }, e.body ?? "");
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A docker-save style archive around one layer, for hostile-layer tests. */
async function archiveWithLayer(layer: Buffer): Promise<Buffer> {
  return tarOf([
    {
      name: "manifest.json",
      body: JSON.stringify([
        { Config: "config.json", RepoTags: ["evil:latest"], Layers: ["layer/layer.tar"] },
      ]),
    },
    { name: "config.json", body: JSON.stringify({ rootfs: { type: "layers" } }) },
    { name: "layer/layer.tar", body: layer },
  ]);
}

describe("berth scan on real targets", () => {
  const dir = tempDir("berth-scan-");
  const root = join(dir, "root");
  const db = join(dir, "db.sqlite");

  before(async () => {
    // bookworm from its main suite only: its packages lag the security suite, so there is something to find.
    const mm = await run("mmdebstrap", [
      "--variant=minbase",
      "--include=hello,sl",
      "bookworm",
      root,
      `deb ${MIRROR} bookworm main`,
    ]);
    assert.equal(mm.code, 0, mm.stderr.slice(-1500));
    const imp = await run("bash", ["-c", `tar -C ${root} -c . | docker import - ${BASE}`]);
    assert.equal(imp.code, 0, imp.stderr);
    const ctx = join(dir, "ctx");
    mkdirSync(ctx);
    const dl = await berth(["pkg", "download", "hello", "--suite", "bookworm", "--dest", ctx, "-q"]);
    assert.equal(dl.code, 0, dl.stderr);
    const deb = readdirSync(ctx).find((f) => f.endsWith(".deb"))!;
    writeFileSync(
      join(ctx, "Dockerfile"),
      `FROM ${BASE}\nRUN dpkg --purge sl hello\nCOPY ${deb} /tmp/hello.deb\nRUN dpkg -i /tmp/hello.deb && rm /tmp/hello.deb\n`,
    );
    const build = await run("docker", ["build", "-q", "-t", LAYERED, ctx], {
      env: { ...process.env, DOCKER_BUILDKIT: "0" },
    });
    assert.equal(build.code, 0, build.stderr);
    for (const [img, file] of [
      [BASE, "base.tar"],
      [LAYERED, "layered.tar"],
    ])
      assert.equal(runSync("docker", ["save", "-o", join(dir, file!), img!]).code, 0);
    const sk = await run("skopeo", [
      "copy",
      "-q",
      `docker-archive:${join(dir, "layered.tar")}`,
      `oci:${join(dir, "oci")}:latest`,
    ]);
    assert.equal(sk.code, 0, sk.stderr);
    // The database: fixes from the archive's changelogs for this root's packages, and tracker statuses for bash.
    const up = await dbUpdate(
      db,
      ["debian-archive", `debian-tracker=${join(ROOT, "test/fixtures/scan/tracker-statuses.json")}`],
      ["--target", root],
    );
    assert.equal(up.code, 0, up.stderr);
  });

  test("a root as a directory, a docker save archive and through the Docker engine: identical results", async () => {
    const asDir = await scanJson(root, db);
    const asArchive = await scanJson(join(dir, "base.tar"), db);
    const asEngine = await scanJson(`docker:${BASE}`, db);
    const dq = runSync("dpkg-query", [`--admindir=${root}/var/lib/dpkg`, "-W"])
      .stdout.trim()
      .split("\n");
    assert.equal(asDir.packages, dq.length);
    assert.equal(asDir.os?.codename, "bookworm");
    assert.ok(asDir.findings.length > 0);
    assert.ok(asDir.findings.some((f) => f.vulnId === "CVE-2099-0001" && f.package === "bash"));
    assert.deepEqual(findingKeys(asArchive), findingKeys(asDir));
    assert.deepEqual(findingKeys(asEngine), findingKeys(asDir));
    assert.equal(asArchive.packages, asDir.packages);
  });

  test("layers: a purged package is gone, a reinstalled one belongs to its layer (archive, engine, OCI layout)", async () => {
    const inspect = JSON.parse(
      runSync("docker", ["image", "inspect", "--format", "{{json .RootFS.Layers}}", LAYERED]).stdout,
    ) as string[];
    const inside = runSync("docker", ["run", "--rm", LAYERED, "dpkg-query", "-W", "-f", "${Package}\\n"])
      .stdout.trim()
      .split("\n")
      .sort();
    for (const target of [join(dir, "layered.tar"), `docker:${LAYERED}`, join(dir, "oci")]) {
      const r = await berth(["scan", target, "--db", db, "--json", "-q"]);
      assert.equal(r.code, 0, `${target}: ${r.stderr}`);
      const s = JSON.parse(r.stdout) as ScanJson & { layers: { index: number; diffId: string }[] };
      assert.deepEqual(
        s.layers.map((l) => l.diffId),
        inspect,
        `${target}: layer digests`,
      );
      const inv = await berth(["scan", target, "--db", db, "--format", "cyclonedx", "-q"]);
      const comps = (JSON.parse(inv.stdout).components as { name: string }[]).map((c) => c.name).sort();
      assert.deepEqual(
        [...new Set(comps)],
        inside,
        `${target}: packages differ from dpkg-query inside the image`,
      );
      assert.ok(!comps.includes("sl"), `${target}: sl was purged in layer 1`);
    }
    const s = JSON.parse(
      (await berth(["scan", join(dir, "layered.tar"), "--db", db, "--json", "-q"])).stdout,
    ) as ScanJson;
    // hello comes from the last layer; bash from the base layer.
    const fromLayer = (pkgName: string) => s.findings.find((f) => f.package === pkgName)?.layer;
    assert.equal(fromLayer("bash")?.index, 0);
    assert.equal(fromLayer("bash")?.diffId, inspect[0]);
  });

  test("this host's pending security updates carry the CVEs their changelogs name; current packages get nothing", async () => {
    const hostDb = join(dir, "host.sqlite");
    // Best effort: stale lists only mean fewer pending updates to check.
    await run("apt-get", ["update", "-qq"]);
    const up = await dbUpdate(hostDb, ["debian-archive"], ["--target", "host"]);
    assert.equal(up.code, 0, up.stderr);
    const s = await scanJson("host", hostDb);
    const archive = s.findings.filter((f) => f.dataSource === "debian-archive");
    // apt's view of pending upgrades from the security suite.
    const sim = runSync("apt-get", ["-s", "-o", "Debug::NoLocking=1", "upgrade"]).stdout;
    const upgradable = new Map<string, string>();
    for (const m of sim.matchAll(/^Inst (\S+) \[([^\]]+)\] \((\S+) ([^)]*)\)/gm))
      upgradable.set(m[1]!.replace(/:amd64$/, ""), m[4]!);
    const security = [...upgradable].filter(([, origin]) => /security/i.test(origin)).map(([name]) => name);
    // Nothing from this source for packages apt does not want to upgrade.
    for (const f of archive)
      assert.ok(
        upgradable.has(f.package),
        `${f.package}: reported from changelogs but apt has no upgrade for it`,
      );
    // For a sample of security updates, the CVEs are exactly those dpkg-parsechangelog lists since the installed version.
    const installed = new Map(
      runSync("dpkg-query", ["-W", "-f", "${Package} ${source:Version}\\n"])
        .stdout.trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    let compared = 0;
    for (const name of security.slice(0, 12)) {
      const work = tempDir();
      const dl = runSync("apt-get", ["download", "-q", name], { cwd: work });
      if (dl.code !== 0) continue;
      const deb = join(work, readdirSync(work).find((f) => f.endsWith(".deb"))!);
      const cl = runSync("bash", [
        "-c",
        `dpkg-deb --fsys-tarfile ${deb} | tar -xO ./usr/share/doc/${name}/changelog.Debian.gz 2>/dev/null | zcat`,
      ]);
      if (!cl.stdout.trim()) continue; // doc directory is a link to another package's
      writeFileSync(join(work, "changelog"), cl.stdout);
      const since = runSync("dpkg-parsechangelog", [
        "-l",
        join(work, "changelog"),
        "--since",
        installed.get(name)!,
        "-S",
        "Changes",
      ]).stdout;
      const named = new Set(since.match(/CVE-\d{4}-\d{4,7}/g) ?? []);
      const got = new Set(archive.filter((f) => f.package === name).map((f) => f.vulnId));
      // Reported: only CVEs an upload since the installed version names ...
      for (const c of got) assert.ok(named.has(c), `${name}: ${c} is not named since ${installed.get(name)}`);
      // ... and every one of those that such an upload says it fixes (not "not affected", a revert, ...).
      const entries = parseChangelog(cl.stdout);
      const fixedBy = (newer: boolean) =>
        new Set(
          entries
            .filter((e) => compareVersions(e.version, installed.get(name)!) > 0 === newer)
            .flatMap((e) => e.cves),
        );
      const fixedSince = fixedBy(true);
      const fixedBefore = fixedBy(false);
      for (const c of named)
        if (fixedSince.has(c) && !fixedBefore.has(c))
          assert.ok(got.has(c), `${name}: ${c} fixed since ${installed.get(name)} but not reported`);
      compared++;
    }
    if (security.length) assert.ok(compared > 0, "no security update could be compared");
  });

  test("SARIF 2.1.0 and CycloneDX 1.6 (validated against the CycloneDX schema)", async () => {
    const sarif = JSON.parse((await berth(["scan", root, "--db", db, "--format", "sarif", "-q"])).stdout);
    assert.equal(sarif.version, "2.1.0");
    const run0 = sarif.runs[0];
    assert.equal(run0.tool.driver.name, "berth");
    for (const r of run0.results) assert.equal(run0.tool.driver.rules[r.ruleIndex].id, r.ruleId);
    assert.ok(run0.results.length > 0);
    const out = join(dir, "bom.json");
    const r = await berth(["scan", root, "--db", db, "--format", "cyclonedx", "--output", out, "-q"]);
    assert.equal(r.code, 0, r.stderr);
    const text = readFileSync(out, "utf8");
    const validator = new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6);
    assert.equal(await validator.validate(text), null, "CycloneDX schema errors");
    const bom = JSON.parse(text);
    assert.equal(bom.specVersion, "1.6");
    const refs = new Set(bom.components.map((c: { "bom-ref": string }) => c["bom-ref"]));
    for (const v of bom.vulnerabilities)
      for (const a of v.affects) assert.ok(refs.has(a.ref), `dangling ref ${a.ref}`);
    assert.ok(bom.components.every((c: { purl: string }) => c.purl.startsWith("pkg:deb/debian/")));
  });

  test("filters and CI exit codes: --ignore-unfixed, --severity, --fail-on", async () => {
    const unfixed = await scanJson(root, db, ["--ignore-unfixed"]);
    assert.ok(unfixed.findings.every((f) => f.status === "fixed"));
    const high = await scanJson(root, db, ["--severity", "HIGH"]);
    assert.ok(high.findings.length > 0 && high.findings.every((f) => f.severity === "HIGH"));
    const fail = await berth(["scan", root, "--db", db, "--fail-on", "HIGH", "-q"]);
    assert.equal(fail.code, 1);
    assert.match(fail.stderr, /at or above HIGH/);
    const bad = await berth(["scan", root, "--db", db, "--severity", "SEVERE"]);
    assert.equal(bad.code, 2);
    assert.ok(isOneLineError(bad.stderr), bad.stderr);
  });

  test("hostile and broken inputs are refused with one line; the target is never written", async () => {
    const before = await treeDigest(root);
    const bad = join(dir, "badroot");
    mkdirSync(join(bad, "var/lib/dpkg"), { recursive: true });
    writeFileSync(
      join(bad, "var/lib/dpkg/status"),
      "Package: x\nStatus: install ok installed\nnot a field line\n",
    );
    const cut = join(dir, "cut.tar");
    copyFileSync(join(dir, "base.tar"), cut);
    truncateSync(cut, Math.floor(statSync(cut).size / 2));
    const escaping = join(dir, "escaping.tar");
    writeFileSync(escaping, await archiveWithLayer(await tarOf([{ name: "../../etc/passwd", body: "x" }])));
    const absolute = join(dir, "absolute.tar");
    writeFileSync(absolute, await archiveWithLayer(await tarOf([{ name: "/etc/shadow", body: "x" }])));
    // A gzip bomb: a small layer that expands past the (test-lowered) limit.
    const bomb = join(dir, "bomb.tar");
    writeFileSync(
      bomb,
      await archiveWithLayer(
        gzipSync(await tarOf([{ name: "zeros", body: Buffer.alloc(64 * 1024 * 1024) }])),
      ),
    );
    const cases: [string, RegExp, NodeJS.ProcessEnv?][] = [
      [bad, /malformed dpkg status.*line 3/],
      [cut, /corrupt|truncated|not in the archive|Unexpected end/i],
      [escaping, /refusing path with "\.\."/],
      [absolute, /refusing absolute path/],
      [bomb, /holds more than/, { BERTH_SCAN_MAX_LAYER_BYTES: String(16 * 1024 * 1024) }],
    ];
    for (const [target, message, env] of cases) {
      const cwd = tempDir();
      const r = await berth(["scan", target, "--db", db, "-q"], { cwd, env });
      assert.equal(r.code, 1, `${target}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLineError(r.stderr), `${target}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.deepEqual(readdirSync(cwd), [], "a scan wrote into the working directory");
    }
    assert.equal(await treeDigest(root), before, "the scanned root changed");
  });
});
