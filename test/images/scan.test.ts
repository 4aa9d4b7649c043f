// What every built image carries, checked with outside oracles: `berth scan` finds no fixable HIGH or
// CRITICAL vulnerability and its inventory equals dpkg-query's on the image's own status file; the
// status file is the only dpkg state; the SBOMs validate (CycloneDX 1.6 with the library's strict
// validator) and sit in the layout as OCI 1.1 referrers of the image manifest (read back by skopeo);
// annotations carry the main package's version and the archive state's time; two builds against the
// same archive state give the same manifest digest.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import * as CDX from "@cyclonedx/cyclonedx-library";
import { berth, runSync, tempDir } from "../helpers.ts";
import { type Built, builtImages, IMAGE_NAMES, record } from "./fixture.ts";

let built: Built;

interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
}

const blob = (name: string, digest: string) =>
  readFileSync(join(built.out, name, "oci/blobs/sha256", digest.replace(/^sha256:/, "")));

/** A file out of the image's single layer, read with GNU tar. */
function fromLayer(name: string, path: string): string {
  const r = record(built, name);
  const layer = join(built.out, name, "oci/blobs/sha256", r.layerDigest.replace(/^sha256:/, ""));
  const out = runSync("tar", ["-xzOf", layer, path]);
  assert.equal(out.code, 0, `${name}: ${path}: ${out.stderr}`);
  return out.stdout;
}

describe("built images: inventory, scan, SBOMs, referrers, reproducibility", () => {
  before(async () => {
    built = await builtImages();
  });

  test("berth scan finds no fixable HIGH/CRITICAL, and its inventory is dpkg-query's on the image's status file", async () => {
    for (const name of IMAGE_NAMES) {
      const r = await berth(["scan", join(built.out, name, "oci"), "--db", built.db, "--json", "-q"]);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      const s = JSON.parse(r.stdout) as {
        packages: number;
        findings: { status: string; severity: string }[];
        os?: { codename?: string };
      };
      const serious = s.findings.filter(
        (f) => f.status === "fixed" && ["HIGH", "CRITICAL"].includes(f.severity),
      );
      assert.deepEqual(serious, [], name);
      assert.equal(s.os?.codename, "trixie", name);
      const admin = tempDir("berth-images-admindir-");
      writeFileSync(join(admin, "status"), fromLayer(name, "var/lib/dpkg/status"));
      mkdirSync(join(admin, "updates"));
      const dq = runSync("dpkg-query", [
        `--admindir=${admin}`,
        "-W",
        "-f",
        "${Package} ${Version} ${db:Status-Status}\\n",
      ]);
      assert.equal(dq.code, 0, dq.stderr);
      const lines = dq.stdout.trim().split("\n");
      assert.ok(
        lines.every((l) => l.endsWith(" installed")),
        `${name}: every package is installed`,
      );
      const cdx = await berth([
        "scan",
        join(built.out, name, "oci"),
        "--db",
        built.db,
        "--format",
        "cyclonedx",
        "-q",
      ]);
      const scanned = (JSON.parse(cdx.stdout).components as { name: string; version: string }[])
        .map((c) => `${c.name} ${c.version}`)
        .sort();
      assert.deepEqual(scanned, lines.map((l) => l.replace(/ installed$/, "")).sort(), name);
      assert.equal(s.packages, lines.length);
      // The build record lists the same packages.
      assert.deepEqual(
        record(built, name)
          .packages.map((p) => `${p.name} ${p.version}`)
          .sort(),
        scanned,
      );
    }
  });

  test("the status file is the only dpkg state, there is no package manager, and shells are declared", () => {
    for (const name of IMAGE_NAMES) {
      const r = record(built, name);
      const layer = join(built.out, name, "oci/blobs/sha256", r.layerDigest.replace(/^sha256:/, ""));
      const list = runSync("tar", ["-tzf", layer]).stdout.trim().split("\n");
      assert.deepEqual(
        list.filter((p) => p.startsWith("var/lib/dpkg/") && !p.endsWith("/")),
        ["var/lib/dpkg/status"],
        name,
      );
      for (const pm of ["usr/bin/dpkg", "usr/bin/apt", "usr/bin/apt-get"])
        assert.ok(!list.includes(pm), `${name} ships ${pm}`);
      assert.ok(
        !list.some((p) => p.startsWith("usr/share/man/") && !p.endsWith("/")),
        `${name} ships man pages`,
      );
      const hasShell =
        list.includes("usr/bin/sh") || list.includes("usr/bin/dash") || list.includes("usr/bin/bash");
      assert.equal(hasShell, r.shells.length > 0, name);
      const def = readFileSync(join(import.meta.dirname, "../../images", `${name}.yaml`), "utf8");
      assert.equal(/^shell:/m.test(def), hasShell, `${name}: a shell exactly when the definition says why`);
      // Every file has the archive state's time; owners are numeric.
      const verbose = runSync("tar", ["--numeric-owner", "--full-time", "-tvzf", layer]).stdout;
      const stamp = new Date(r.sourceDateEpoch * 1000).toISOString().replace("T", " ").slice(0, 19);
      assert.ok(
        verbose
          .trim()
          .split("\n")
          .every((l) => l.includes(stamp)),
        `${name}: mtimes`,
      );
    }
  });

  test("annotations: version of the main package, created at the archive state, licences from copyright files", () => {
    for (const name of IMAGE_NAMES) {
      const r = record(built, name);
      const index = JSON.parse(readFileSync(join(built.out, name, "oci/index.json"), "utf8")) as {
        manifests: (OciDescriptor & { annotations?: Record<string, string> })[];
      };
      const manifest = JSON.parse(blob(name, index.manifests[0]!.digest).toString()) as {
        annotations: Record<string, string>;
        config: OciDescriptor;
      };
      assert.equal(`sha256:${index.manifests[0]!.digest.slice(7)}`, r.manifestDigest);
      const admin = tempDir("berth-images-admindir-");
      writeFileSync(join(admin, "status"), fromLayer(name, "var/lib/dpkg/status"));
      mkdirSync(join(admin, "updates"));
      const def = readFileSync(join(import.meta.dirname, "../../images", `${name}.yaml`), "utf8");
      const main = /^main: (\S+)$/m.exec(def)![1]!;
      const version = runSync("dpkg-query", [`--admindir=${admin}`, "-W", "-f", "${Version}", main]).stdout;
      assert.equal(manifest.annotations["org.opencontainers.image.version"], version, name);
      assert.equal(
        manifest.annotations["org.opencontainers.image.created"],
        new Date(r.sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, "Z"),
      );
      assert.ok(manifest.annotations["org.opencontainers.image.licenses"], name);
      const config = JSON.parse(blob(name, manifest.config.digest).toString()) as {
        config: { User: string; Healthcheck: { Test: string[] }; Labels: Record<string, string> };
      };
      assert.notEqual(config.config.User.split(":")[0], "0");
      assert.equal(config.config.Healthcheck.Test[0], "CMD");
    }
    // nginx's DEP-5 copyright file: BSD-2-clause for the sources (and others for bundled parts).
    assert.match(
      record(built, "nginx").annotations["org.opencontainers.image.licenses"]!,
      /^BSD-2-Clause( AND |$)/,
    );
  });

  test("SBOMs: CycloneDX 1.6 validates, SPDX 2.3 is consistent, both inside the image and as referrers", async () => {
    const validator = new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6);
    for (const name of IMAGE_NAMES) {
      const r = record(built, name);
      const index = JSON.parse(readFileSync(join(built.out, name, "oci/index.json"), "utf8")) as {
        manifests: OciDescriptor[];
      };
      const referrers = index.manifests.slice(1).map((d) => JSON.parse(blob(name, d.digest).toString()));
      assert.deepEqual(referrers.map((m) => m.artifactType).sort(), [
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
      ]);
      for (const m of referrers)
        assert.equal(m.subject.digest, r.manifestDigest, `${name}: referrer subject`);
      const cdxRef = referrers.find((m) => m.artifactType === "application/vnd.cyclonedx+json");
      const cdx = blob(name, cdxRef.layers[0].digest).toString();
      assert.equal(
        cdx,
        fromLayer(name, `usr/share/berth/sbom/${name}.cdx.json`),
        `${name}: same SBOM inside`,
      );
      assert.equal(await validator.validate(cdx), null, `${name}: CycloneDX validation`);
      const bom = JSON.parse(cdx) as { components: { name: string; version?: string; type: string }[] };
      const pkgs = bom.components.filter((c) => c.type === "library").map((c) => `${c.name} ${c.version}`);
      assert.deepEqual(pkgs.sort(), r.packages.map((p) => `${p.name} ${p.version}`).sort());
      const spdxRef = referrers.find((m) => m.artifactType === "application/spdx+json");
      const spdx = JSON.parse(blob(name, spdxRef.layers[0].digest).toString()) as {
        spdxVersion: string;
        SPDXID: string;
        packages: { SPDXID: string; name: string }[];
        relationships: { spdxElementId: string; relatedSpdxElement: string; relationshipType: string }[];
        creationInfo: { created: string };
      };
      assert.equal(spdx.spdxVersion, "SPDX-2.3");
      assert.match(spdx.creationInfo.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const ids = new Set([spdx.SPDXID, ...spdx.packages.map((p) => p.SPDXID)]);
      assert.equal(ids.size, spdx.packages.length + 1, "unique SPDX ids");
      for (const rel of spdx.relationships)
        if (!rel.relatedSpdxElement.startsWith("SPDXRef-File-"))
          assert.ok(ids.has(rel.spdxElementId) && ids.has(rel.relatedSpdxElement), JSON.stringify(rel));
      assert.equal(spdx.packages.length, r.packages.length + 1);
    }
    // skopeo reads the layout as an OCI image by its reference name.
    const r = record(built, "nginx");
    const sk = runSync("skopeo", [
      "inspect",
      `oci:${join(built.out, "nginx/oci")}:${r.annotations["org.opencontainers.image.ref.name"]}`,
    ]);
    assert.equal(sk.code, 0, sk.stderr);
    assert.equal((JSON.parse(sk.stdout) as { Digest: string }).Digest, r.manifestDigest);
  });

  test("a second build against the same archive state gives the same manifest digest", async () => {
    const out = tempDir("berth-images-again-");
    const again = await berth([
      "images",
      "build",
      "memcached",
      "--out",
      out,
      "--db",
      built.db,
      "--repository",
      "berth-images-test",
      "--json",
      "-q",
    ]);
    assert.equal(again.code, 0, again.stderr);
    const [r] = JSON.parse(again.stdout) as { manifestDigest: string; sourceDateEpoch: number }[];
    const first = record(built, "memcached");
    // Only a new archive state (a point release or security upload between the two builds) may differ.
    if (r!.sourceDateEpoch === first.sourceDateEpoch) assert.equal(r!.manifestDigest, first.manifestDigest);
    else assert.notEqual(r!.sourceDateEpoch, first.sourceDateEpoch);
    const tarA = readFileSync(join(built.out, "memcached/memcached.tar"));
    const tarB = readFileSync(join(out, "memcached/memcached.tar"));
    if (r!.sourceDateEpoch === first.sourceDateEpoch) assert.ok(tarA.equals(tarB), "archives byte for byte");
  });

  test("list and show report the builds: packages with the chain that pulled each in, drops with reasons", async () => {
    const list = await berth(["images", "list", "--out", built.out, "--json"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as { name: string; build: { manifestDigest: string } | null }[];
    assert.deepEqual(rows.map((x) => x.name).sort(), [...IMAGE_NAMES].sort());
    for (const row of rows) assert.equal(row.build?.manifestDigest, record(built, row.name).manifestDigest);
    const show = await berth(["images", "show", "nginx", "--out", built.out]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /drops iproute2: only nginx's postinst uses it/);
    assert.match(show.stdout, /libssl3t64 .* nginx > libssl3t64/);
    const r = record(built, "nginx");
    const ssl = r.packages.find((p) => p.name === "libssl3t64")!;
    assert.deepEqual(ssl.chain, ["nginx", "libssl3t64"]);
    assert.ok(r.compressedBytes <= 15_000_000, `nginx is ${r.compressedBytes} bytes compressed (goal 15 MB)`);
    const scan = await berth([
      "images",
      "scan",
      "nginx",
      "redis",
      "--out",
      built.out,
      "--db",
      built.db,
      "--format",
      "sarif",
    ]);
    assert.equal(scan.code, 0, scan.stderr);
    const sarif = JSON.parse(scan.stdout) as { version: string; runs: unknown[] };
    assert.equal(sarif.version, "2.1.0");
    assert.equal(sarif.runs.length, 2);
  });
});
