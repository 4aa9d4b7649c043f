// .deb reading against dpkg-deb as the oracle, and extraction that refuses every escape.

import assert from "node:assert/strict";
import {
  copyFileSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { Archive } from "../../src/pkg/archive.ts";
import { extractDeb, listDeb, readDebControl, readDebFile } from "../../src/pkg/deb.ts";
import { repositoriesOf, resolveSources } from "../../src/pkg/sources.ts";
import { berth, isOneLineError, runSync, tempDir } from "../helpers.ts";

/** Builds a .deb by hand (ar + tarballs) so tests can plant entries dpkg-deb would never write. */
async function buildDeb(path: string, data: Buffer, dataName = "data.tar"): Promise<void> {
  const control = await tarOf([
    { name: "./control", body: "Package: evil\nVersion: 1\nArchitecture: all\n" },
  ]);
  const members: [string, Buffer][] = [
    ["debian-binary", Buffer.from("2.0\n")],
    ["control.tar", control],
    [dataName, data],
  ];
  const parts: Buffer[] = [Buffer.from("!<arch>\n")];
  for (const [name, body] of members) {
    const h = `${name.padEnd(16)}${"0".padEnd(12)}${"0".padEnd(6)}${"0".padEnd(6)}${"100644".padEnd(8)}${String(body.length).padEnd(10)}\`\n`;
    parts.push(Buffer.from(h, "latin1"), body);
    if (body.length % 2) parts.push(Buffer.from("\n"));
  }
  writeFileSync(path, Buffer.concat(parts));
}

interface E {
  name: string;
  body?: string;
  type?: "file" | "symlink" | "directory" | "link";
  linkname?: string;
}

async function tarOf(entries: E[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((r) => pack.on("end", () => r()));
  pack.on("data", (c: unknown) => void chunks.push(c as Buffer));
  for (const e of entries) {
    if (e.type === "symlink" || e.type === "link")
      pack.entry({ name: e.name, type: e.type, linkname: e.linkname });
    else if (e.type === "directory") pack.entry({ name: e.name, type: "directory", mode: 0o755 });
    else pack.entry({ name: e.name, mode: 0o644 }, e.body ?? "");
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Builds a small real package with dpkg-deb in the given compression. */
function dpkgDebBuild(dir: string, compression: string): string {
  const src = join(dir, `src-${compression}`);
  mkdirSync(join(src, "DEBIAN"), { recursive: true });
  mkdirSync(join(src, "usr/share/doc/demo"), { recursive: true });
  mkdirSync(join(src, "usr/bin"), { recursive: true });
  writeFileSync(
    join(src, "DEBIAN/control"),
    "Package: demo\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: demo\n",
  );
  writeFileSync(join(src, "usr/share/doc/demo/README"), `compressed with ${compression}\n`);
  writeFileSync(join(src, "usr/bin/demo"), "#!/bin/sh\necho demo\n", { mode: 0o755 });
  symlinkSync("demo", join(src, "usr/bin/demo-link"));
  const out = join(dir, `demo-${compression}.deb`);
  const r = runSync("dpkg-deb", [`-Z${compression}`, "--root-owner-group", "-b", src, out]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** `dpkg-deb -c` listing as "type mode size path[ -> target]" lines. */
function dpkgListing(deb: string): string[] {
  const r = runSync("dpkg-deb", ["-c", deb]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => {
      const m = /^(\S)(\S{9})\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\.\/(.*)$/.exec(l)!;
      return `${m[1]} ${m[3]} ${m[4]}`.replace(/\/$/, "");
    });
}

function ourListing(entries: Awaited<ReturnType<typeof listDeb>>): string[] {
  const t = { file: "-", directory: "d", symlink: "l", link: "h" } as Record<string, string>;
  return entries.map(
    (e) =>
      `${t[e.type]} ${e.type === "file" ? e.size : 0} ${e.path}${e.type === "symlink" ? ` -> ${e.linkname}` : e.type === "link" ? ` link to ${e.linkname}` : ""}`,
  );
}

describe(".deb reading", () => {
  for (const z of ["gzip", "xz", "zstd", "none"]) {
    test(`a dpkg-deb built package (${z}): listing, control, one file and extraction agree with dpkg-deb`, async () => {
      const dir = tempDir();
      const deb = dpkgDebBuild(dir, z);
      assert.deepEqual(ourListing(await listDeb(deb)), dpkgListing(deb));
      assert.equal((await readDebControl(deb)).Package, "demo");
      assert.equal(
        (await readDebFile(deb, "usr/share/doc/demo/README"))?.toString(),
        `compressed with ${z}\n`,
      );
      assert.equal(await readDebFile(deb, "./usr/share/doc/demo/missing"), undefined);
      const ours = join(dir, "ours");
      const theirs = join(dir, "theirs");
      await extractDeb(deb, ours);
      runSync("dpkg-deb", ["-x", deb, theirs]);
      const tree = (root: string) =>
        runSync("bash", ["-c", `cd ${root} && find . -printf '%y %m %s %p %l\\n' | sort`]).stdout;
      assert.equal(tree(ours), tree(theirs));
    });
  }

  test("a real trixie package: list matches dpkg-deb, changelog.Debian.gz is readable", async () => {
    const archive = new Archive();
    const index = await archive.loadIndex(repositoriesOf(resolveSources({ suites: ["trixie"] })));
    const rec = index.candidate("coreutils")!;
    const deb = await archive.fetchDeb(rec);
    assert.deepEqual(ourListing(await listDeb(deb)), dpkgListing(deb));
    const cl = await readDebFile(deb, "usr/share/doc/coreutils/changelog.Debian.gz");
    assert.ok(cl, "no changelog");
    assert.match(gunzipSync(cl).toString("utf8").split("\n")[0]!, /^coreutils \(/);
    const r = await berth([
      "pkg",
      "deb",
      "cat",
      deb,
      "usr/share/doc/coreutils/changelog.Debian.gz",
      "--gunzip",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^coreutils \(/);
  });

  test("a truncated .deb is refused with one clear line", async () => {
    const dir = tempDir();
    const deb = dpkgDebBuild(dir, "xz");
    const cut = join(dir, "cut.deb");
    copyFileSync(deb, cut);
    truncateSync(cut, statSync(deb).size - 40);
    await assert.rejects(listDeb(cut), /truncated/);
    const r = await berth(["pkg", "deb", "list", cut]);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    // Corrupt compressed data inside a well-formed ar container.
    const bad = join(dir, "bad.deb");
    const buf = readFileSync(deb);
    buf.fill(0x41, buf.length - 60, buf.length - 20);
    writeFileSync(bad, buf);
    const r2 = await berth(["pkg", "deb", "extract", bad, join(dir, "out-bad")]);
    assert.equal(r2.code, 1);
    assert.ok(isOneLineError(r2.stderr), r2.stderr);
    const notDeb = join(dir, "x.deb");
    writeFileSync(notDeb, "hello");
    await assert.rejects(listDeb(notDeb), /not an ar archive/);
  });

  const evil: [string, E[], RegExp][] = [
    ["a ../../ entry", [{ name: "./../../etc/passwd", body: "pwned" }], /refusing path with "\.\."/],
    ["an absolute path", [{ name: "/etc/passwd", body: "pwned" }], /refusing absolute path/],
    [
      "a symlink that leads outside",
      [{ name: "./escape", type: "symlink", linkname: "../../../../tmp" }],
      /leads outside the target/,
    ],
    [
      "a file written through a symlink",
      [
        { name: "./etc", type: "symlink", linkname: "/etc" },
        { name: "./etc/passwd", body: "pwned" },
      ],
      /through the symlink etc/,
    ],
    [
      "a hard link to a file outside",
      [{ name: "./shadow", type: "link", linkname: "../../etc/shadow" }],
      /refusing path with "\.\."/,
    ],
  ];
  for (const [what, entries, message] of evil) {
    test(`extraction refuses ${what}, and writes nothing outside the target`, async () => {
      const dir = tempDir();
      const outside = join(dir, "outside");
      mkdirSync(outside);
      const target = join(dir, "a", "b", "target");
      mkdirSync(target, { recursive: true });
      const deb = join(dir, "evil.deb");
      await buildDeb(
        deb,
        await tarOf([{ name: "./", type: "directory" }, { name: "./ok", body: "fine" }, ...entries]),
      );
      await assert.rejects(extractDeb(deb, target), message);
      const r = await berth(["pkg", "deb", "extract", deb, target]);
      assert.equal(r.code, 1);
      assert.ok(isOneLineError(r.stderr), r.stderr);
      // Nothing appeared beside the target, and /etc/passwd is untouched.
      assert.deepEqual(readdirSync(join(dir, "a", "b")), ["target"]);
      assert.deepEqual(readdirSync(outside), []);
      assert.doesNotMatch(readFileSync("/etc/passwd", "utf8"), /pwned/);
      for (const f of readdirSync(target))
        assert.ok(!lstatSync(join(target, f)).isSymbolicLink() || f === "etc");
    });
  }

  test("absolute symlinks inside a package are kept (they point into the root when it is used as one)", async () => {
    const dir = tempDir();
    const deb = join(dir, "abs.deb");
    await buildDeb(
      deb,
      await tarOf([{ name: "./usr/bin/editor", type: "symlink", linkname: "/etc/alternatives/editor" }]),
    );
    await extractDeb(deb, join(dir, "t"));
    assert.equal(lstatSync(join(dir, "t/usr/bin/editor")).isSymbolicLink(), true);
  });
});
