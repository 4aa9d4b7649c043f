// The target kinds as a node reads them: an os-release published from a build output directory (a real
// squashfs made by mksquashfs, a manifest with the artifacts' digests) comes back as one release whose
// files all verify; an image from an OCI archive made by src/images comes back as a tar that the Docker
// engine loads as the same image (config digest), with its SBOM; a layout directory's referrer SBOM is
// found and the packed tar is byte-for-byte reproducible; bad inputs are refused with one line.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { sha256Hex } from "../../src/common/hash.ts";
import { extractTar } from "../../src/common/tar.ts";
import { buildImageArchive, buildLayer } from "../../src/images/oci.ts";
import { describeAdvisory } from "../../src/repo/kinds/advisory.ts";
import { describeImage } from "../../src/repo/kinds/image.ts";
import {
  describeOsRelease,
  type OsReleaseCustom,
  openPercent,
  parseWaves,
} from "../../src/repo/kinds/os-release.ts";
import { publish } from "../../src/repo/publish.ts";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { stageTargets } from "../../src/repo/stage.ts";
import { referenceProblems } from "../../src/repo/verify.ts";
import { berth, isOneLineError, runSync, tempDir } from "../helpers.ts";
import { freshTestRepository, serveTestRepository, type TestRepository, testClient } from "../shared/repo.ts";

const IMAGE = { repository: "berth-repo-test/tiny", tag: "1" };

describe("berth repo target kinds", () => {
  const work = tempDir("berth-repo-kinds-");
  let repo: TestRepository;
  let served: ServedRepository;

  before(async () => {
    repo = await freshTestRepository();
    served = await serveTestRepository(repo.dir);
  });
  after(async () => {
    await served?.close();
    runSync("docker", ["rmi", "-f", `${IMAGE.repository}:${IMAGE.tag}`]);
  });

  /** A build output directory as `berth os build` writes it. */
  function osOutput(name: string): string {
    const out = join(work, name);
    mkdirSync(join(out, "root/etc"), { recursive: true });
    writeFileSync(join(out, "root/etc/os-release"), 'NAME="Berth"\n');
    const sq = runSync("mksquashfs", [join(out, "root"), join(out, "root.squashfs"), "-noappend", "-quiet"]);
    assert.equal(sq.code, 0, sq.stderr);
    for (const f of ["vmlinuz", "initrd.img", "disk.img", "kernel.config"])
      writeFileSync(join(out, f), randomBytes(4096));
    writeFileSync(join(out, "report.md"), "# report\n");
    const artifacts = ["root.squashfs", "vmlinuz", "initrd.img", "disk.img", "kernel.config"].map((file) => ({
      file,
      bytes: statSync(join(out, file)).size,
      sha256: sha256Hex(readFileSync(join(out, file))),
    }));
    writeFileSync(
      join(out, "manifest.json"),
      JSON.stringify({
        profile: "container-host",
        kernelVersion: "6.12.57+deb13-amd64",
        berthVersion: "0.1.0",
        sourceDateEpoch: 1764547200,
        artifacts,
      }),
    );
    return out;
  }

  test("os-release: one release naming its files; every file verifies; the installer disk stays out", async () => {
    const out = osOutput("os-1");
    const r = await berth([
      "repo",
      "add",
      repo.dir,
      "os-release",
      out,
      "--release",
      "2026.12.1",
      "--wave",
      "2026-12-01T00:00:00Z=10",
      "--wave",
      "2026-12-03T00:00:00Z=100",
      "--publish",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const client = testClient(served.url, repo.trustedRoot);
    const all = await client.targets("os-release");
    const release = all.find((t) => t.custom.member === "release")!;
    assert.equal(release.name, "os/2026.12.1/release.json");
    const c = release.custom as OsReleaseCustom;
    assert.deepEqual(Object.keys(c.files).sort(), [
      "initrd.img",
      "kernel.config",
      "manifest.json",
      "root.squashfs",
      "vmlinuz",
    ]);
    assert.equal(c.kernelVersion, "6.12.57+deb13-amd64");
    assert.deepEqual(c.waves, [
      { start: "2026-12-01T00:00:00Z", percent: 10 },
      { start: "2026-12-03T00:00:00Z", percent: 100 },
    ]);
    assert.deepEqual(referenceProblems(release, new Map(all.map((t) => [t.name, t]))), []);
    // release.json's content is its signed custom field.
    const dl = join(work, "dl-release.json");
    await client.download(release.name, dl);
    assert.deepEqual(JSON.parse(readFileSync(dl, "utf8")), c);
    // Each file comes back as built: the squashfs is still one unsquashfs lists.
    const sq = join(work, "dl-root.squashfs");
    await client.download(c.files["root.squashfs"]!.target, sq);
    assert.equal(sha256Hex(readFileSync(sq)), sha256Hex(readFileSync(join(out, "root.squashfs"))));
    assert.match(runSync("unsquashfs", ["-l", sq]).stdout, /squashfs-root\/etc\/os-release/);
    for (const t of all.filter((x) => x.custom.member !== "release")) {
      assert.equal(t.custom.release, release.name);
      assert.equal(t.length, statSync(join(out, t.custom.member as string)).size);
    }
  });

  test("os-release: a file that does not match its manifest, a missing version, bad waves", async () => {
    const out = osOutput("os-2");
    writeFileSync(join(out, "vmlinuz"), randomBytes(4096));
    const w = join(work, "w");
    mkdirSync(w, { recursive: true });
    await assert.rejects(
      describeOsRelease(out, { version: "2026.12.2", work: w }),
      /vmlinuz does not match the SHA-256 its manifest records/,
    );
    await assert.rejects(
      describeOsRelease(osOutput("os-3"), { work: w }),
      /no release version; give --release/,
    );
    await assert.rejects(
      describeOsRelease(join(work, "nowhere"), { version: "1", work: w }),
      /not a berth os build output/,
    );
    assert.throws(
      () => parseWaves(["2026-12-02T00:00:00Z=50", "2026-12-01T00:00:00Z=100"]),
      /one after another/,
    );
    assert.throws(() => parseWaves(["tomorrow=10"]), /TIME=PERCENT/);
    assert.throws(() => parseWaves(["2026-12-01T00:00:00Z=150"]), /TIME=PERCENT/);
    const waves = parseWaves(["2026-12-01T00:00:00Z=10", "2026-12-03T00:00:00Z=100"]);
    assert.equal(openPercent(waves, new Date("2026-11-30T00:00:00Z")), 0);
    assert.equal(openPercent(waves, new Date("2026-12-02T00:00:00Z")), 10);
    assert.equal(openPercent(waves, new Date("2026-12-04T00:00:00Z")), 100);
    assert.equal(openPercent([], new Date()), 100);
  });

  test("image: an OCI archive by digest with its SBOM; Docker loads the downloaded tar as the same image", async () => {
    const layer = await buildLayer(
      [{ path: "hello.txt", type: "file", mode: 0o644, data: Buffer.from("hello from the repository\n") }],
      0,
    );
    const img = await buildImageArchive(
      { ...IMAGE, layers: [layer], created: "2026-12-01T00:00:00Z", config: { Cmd: ["/hello"] } },
      0,
    );
    const tarFile = join(work, "tiny.tar");
    writeFileSync(tarFile, img.archive);
    const sbom = join(work, "tiny.cdx.json");
    writeFileSync(sbom, JSON.stringify({ bomFormat: "CycloneDX", specVersion: "1.6", components: [] }));
    const w = join(work, "wi");
    mkdirSync(w, { recursive: true });
    await stageTargets(repo.dir, await describeImage(tarFile, { sboms: [sbom], work: w }));
    await publish(repo.dir);
    const client = testClient(served.url, repo.trustedRoot);
    const images = await client.targets("image");
    const image = images.find((t) => t.custom.member === "image")!;
    assert.equal(image.name, `images/${IMAGE.repository}/${img.manifestDigest}.tar`);
    assert.equal(image.custom.digest, `sha256:${img.manifestDigest}`);
    assert.equal(image.custom.tag, "1");
    assert.deepEqual(image.custom.sboms, {
      cyclonedx: `images/${IMAGE.repository}/${img.manifestDigest}.cdx.json`,
    });
    assert.deepEqual(referenceProblems(image, new Map(images.map((t) => [t.name, t]))), []);
    const dl = join(work, "dl-tiny.tar");
    await client.download(image.name, dl);
    const load = runSync("docker", ["load", "-i", dl]);
    assert.equal(load.code, 0, load.stderr);
    const id = runSync("docker", [
      "image",
      "inspect",
      "--format",
      "{{.Id}}",
      `${IMAGE.repository}:${IMAGE.tag}`,
    ]).stdout.trim();
    assert.equal(id, `sha256:${img.configDigest}`);
  });

  test("image: a layout directory's referrer SBOM is found; the packed tar is reproducible; no SBOM is refused", async () => {
    const layer = await buildLayer([{ path: "a", type: "file", mode: 0o644, data: Buffer.from("a\n") }], 0);
    const img = await buildImageArchive(
      { ...IMAGE, layers: [layer], created: "2026-12-01T00:00:00Z", config: {} },
      0,
    );
    const layout = join(work, "layout");
    await extractTar(Readable.from([img.archive]), layout);
    // Add an OCI 1.1 referrer artifact: a manifest whose subject is the image, with a CycloneDX layer.
    const sbom = Buffer.from(JSON.stringify({ bomFormat: "CycloneDX", specVersion: "1.6" }));
    const put = (b: Buffer) => {
      writeFileSync(join(layout, "blobs/sha256", sha256Hex(b)), b);
      return sha256Hex(b);
    };
    const sbomDigest = put(sbom);
    const empty = put(Buffer.from("{}"));
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
    const imageDesc = index.manifests[0];
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        artifactType: "application/vnd.cyclonedx+json",
        config: { mediaType: "application/vnd.oci.empty.v1+json", digest: `sha256:${empty}`, size: 2 },
        layers: [
          { mediaType: "application/vnd.cyclonedx+json", digest: `sha256:${sbomDigest}`, size: sbom.length },
        ],
        subject: { mediaType: imageDesc.mediaType, digest: imageDesc.digest, size: imageDesc.size },
      }),
    );
    index.manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${put(artifact)}`,
      size: artifact.length,
      artifactType: "application/vnd.cyclonedx+json",
    });
    writeFileSync(join(layout, "index.json"), JSON.stringify(index));
    const pack = async (n: string) => {
      const w = join(work, n);
      mkdirSync(w, { recursive: true });
      return describeImage(layout, { work: w });
    };
    const [a, b] = [await pack("p1"), await pack("p2")];
    assert.deepEqual(
      a.map((t) => t.name),
      [
        `images/${IMAGE.repository}/${img.manifestDigest}.tar`,
        `images/${IMAGE.repository}/${img.manifestDigest}.cdx.json`,
      ],
    );
    assert.equal(sha256Hex(readFileSync(a[1]!.file)), sbomDigest);
    assert.equal(
      sha256Hex(readFileSync(a[0]!.file)),
      sha256Hex(readFileSync(b[0]!.file)),
      "packing the layout twice gave other bytes",
    );
    // Without the referrer and without --sbom: refused.
    index.manifests.pop();
    writeFileSync(join(layout, "index.json"), JSON.stringify(index));
    await assert.rejects(pack("p3"), /has no SBOM .*give --sbom FILE/);
  });

  test("advisory: an OSV file's id, modified and aliases; files that are not OSV are refused in one line", async () => {
    const good = join(work, "BSA-2026-0042.json");
    writeFileSync(
      good,
      JSON.stringify({ id: "BSA-2026-0042", modified: "2026-12-01T00:00:00Z", aliases: ["CVE-2026-4242"] }),
    );
    const [t] = await describeAdvisory(good);
    assert.deepEqual(
      [t!.name, t!.custom],
      [
        "advisories/BSA-2026-0042.json",
        {
          kind: "advisory",
          id: "BSA-2026-0042",
          modified: "2026-12-01T00:00:00Z",
          aliases: ["CVE-2026-4242"],
        },
      ],
    );
    for (const [body, why] of [
      ["{not json", /not an OSV JSON file/],
      ["[]", /not an object/],
      [
        JSON.stringify({ id: "../../etc", modified: "2026-12-01T00:00:00Z" }),
        /"id" is missing or not a plain identifier/,
      ],
      [JSON.stringify({ id: "BSA-1" }), /"modified" is missing/],
    ] as const) {
      const f = join(work, "bad.json");
      writeFileSync(f, body);
      await assert.rejects(describeAdvisory(f), why);
    }
    const f = join(work, "bad.json");
    const r = await berth(["repo", "add", repo.dir, "advisory", f]);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
  });
});
