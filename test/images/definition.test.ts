// Definitions are refused, before any package is fetched, with one line naming the file, the line and
// the key; the pure pieces of a build (globs, licences, the status file, the CA bundle, the merged-/usr
// unpacking) are checked against the tools they stand in for.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { tagOf } from "../../src/images/build.ts";
import { cutRulesOf } from "../../src/images/cuts.ts";
import { parseDefinition, readDefinition } from "../../src/images/definition.ts";
import { statusFile, writeCaBundle } from "../../src/images/effects.ts";
import { licensesOfCopyright, spdxExpression } from "../../src/images/licenses.ts";
import { FileTree, globToRegExp } from "../../src/images/tree.ts";
import { berth, isOneLineError, ROOT, runSync, tempDir } from "../helpers.ts";

const BASE = `name: t
main: hello
packages: [hello]
run:
  user: app
  entrypoint: [/usr/bin/hello]
  healthcheck:
    test: [/usr/bin/hello]
users:
  - name: app
    uid: 1000
`;

describe("image definitions", () => {
  test("every shipped definition parses", () => {
    const names = readdirSync(join(ROOT, "images")).filter((f) => f.endsWith(".yaml"));
    assert.equal(names.length, 12);
    for (const n of names) {
      const d = readDefinition(join(ROOT, "images", n));
      assert.notEqual(d.run.user.uid, 0, n);
      for (const drop of d.drop) assert.ok(drop.reason.length >= 10, `${n}: ${drop.package}`);
    }
  });

  const cases: [string, string, RegExp][] = [
    [
      "an unknown key",
      BASE.replace("  entrypoint:", "  entrypont:"),
      /^t\.yaml:6: unknown key "entrypont" under "run" \(did you mean "entrypoint"\?\)$/,
    ],
    [
      "a user that does not exist",
      BASE.replace("user: app", "user: ghost"),
      /^t\.yaml:5: user "ghost" does not exist in this image/,
    ],
    ["root", BASE.replace("user: app", "user: root"), /runs as a non-root user|non-root user, not root/],
    [
      "a directory owner that does not exist",
      `${BASE}directories:\n  - path: /srv\n    owner: nobody2\n`,
      /^t\.yaml:14: user "nobody2" does not exist/,
    ],
    [
      "a drop without a real reason",
      `${BASE}drop:\n  - package: perl\n    reason: x\n`,
      /^t\.yaml:14: drop\.0\.reason: /,
    ],
    [
      "a main package not requested",
      BASE.replace("main: hello", "main: nginx"),
      /^t\.yaml:2: main package "nginx" is not among packages$/,
    ],
    ["a path with ..", `${BASE}files:\n  - path: /etc/../x\n    content: ""\n`, /not in normal form/],
    [
      "a bad mode",
      `${BASE}files:\n  - path: /etc/x\n    mode: "999"\n    content: ""\n`,
      /^t\.yaml:14: files\.0\.mode: /,
    ],
  ];
  for (const [what, text, re] of cases)
    test(`refused in one line: ${what}`, () => {
      assert.throws(
        () => parseDefinition(text, "t.yaml"),
        (e: Error) => {
          assert.match(e.message, re);
          assert.ok(!e.message.includes("\n"));
          return true;
        },
      );
    });

  test("an unknown package and a path no package ships are refused before any .deb is fetched", async () => {
    const dir = tempDir("berth-images-bad-");
    const defs = join(dir, "defs");
    mkdirSync(defs);
    const nginx = readFileSync(join(ROOT, "images/nginx.yaml"), "utf8");
    writeFileSync(
      join(defs, "nopkg.yaml"),
      nginx.replace("name: nginx", "name: nopkg").replace("netcat-openbsd]", "netcat-openbsdd]"),
    );
    writeFileSync(
      join(defs, "nopath.yaml"),
      nginx.replace("name: nginx", "name: nopath").replace("[/usr/sbin/nginx,", "[/usr/sbin/nginxx,"),
    );
    const out = join(dir, "out");
    for (const [name, re] of [
      [
        "nopkg",
        /nopkg\.yaml:\d+: package "netcat-openbsdd" is not in trixie, trixie-updates, trixie-security/,
      ],
      // From the Contents index when it verifies (before any .deb is fetched), else from the unpacked tree.
      ["nopath", /nopath\.yaml(:\d+)?: .*\/usr\/sbin\/nginxx is not shipped by any package of this image/],
    ] as const) {
      const r = await berth([
        "images",
        "build",
        name,
        "--definitions",
        defs,
        "--out",
        out,
        "--db",
        join(dir, "db.sqlite"),
        "-q",
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(isOneLineError(r.stderr), r.stderr);
      assert.match(r.stderr, re);
    }
    assert.ok(!existsSync(out), "nothing was written");
  });

  test("globs: * stays in a directory, ** crosses them, keep wins over cut", () => {
    assert.ok(globToRegExp("usr/share/doc/*/copyright").test("usr/share/doc/nginx/copyright"));
    assert.ok(!globToRegExp("usr/share/doc/*/copyright").test("usr/share/doc/a/b/copyright"));
    assert.ok(globToRegExp("/usr/lib/**/*.a").test("usr/lib/x86_64-linux-gnu/libc.a"));
    assert.ok(globToRegExp("usr/lib/**/*.a").test("usr/lib/libz.a"));
    assert.ok(!globToRegExp("usr/lib/**/*.a").test("usr/lib/libz.so"));
    const tree = new FileTree();
    const file = (data: string) => ({
      type: "file" as const,
      mode: 0o644,
      uid: 0,
      gid: 0,
      data: Buffer.from(data),
      origin: "t",
    });
    tree.put("usr/share/doc/x/copyright", file("c"));
    tree.put("usr/share/doc/x/changelog.gz", file("log"));
    tree.put("usr/share/man/man1/x.1.gz", file("man"));
    const { rules, keep } = cutRulesOf(parseDefinition(BASE).cut);
    const stats = tree.cut(rules, keep);
    assert.deepEqual([...tree.nodes.keys()].filter((k) => k.includes("x")).sort(), [
      "usr/share/doc/x",
      "usr/share/doc/x/copyright",
    ]);
    assert.equal(stats.get("docs")?.paths, 1);
  });

  test("merged /usr: a package's /bin/x lands in usr/bin through base-files' link", () => {
    const tree = new FileTree();
    tree.put("usr/bin", { type: "directory", mode: 0o755, uid: 0, gid: 0, origin: "t" });
    tree.put("bin", { type: "symlink", target: "usr/bin", uid: 0, gid: 0, origin: "t" });
    tree.put("bin/sh", { type: "symlink", target: "dash", uid: 0, gid: 0, origin: "t" });
    tree.put("usr/bin/dash", {
      type: "file",
      mode: 0o755,
      uid: 0,
      gid: 0,
      data: Buffer.from("x"),
      origin: "t",
    });
    assert.ok(tree.nodes.has("usr/bin/sh"));
    assert.equal(tree.lookup("/bin/sh")?.path, "usr/bin/dash");
  });

  test("licences: DEP-5 names become SPDX expressions; free-form copyright files give none", () => {
    assert.equal(spdxExpression("GPL-2+ or Artistic"), "GPL-2.0-or-later OR Artistic-1.0");
    assert.equal(spdxExpression("BSD-3-clause"), "BSD-3-Clause");
    assert.equal(spdxExpression("LGPL-2.1"), "LGPL-2.1-only");
    const dep5 =
      "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\nLicense: Expat\n\nFiles: debian/*\nLicense: GPL-2+\n\nLicense: Expat\n text\n";
    assert.deepEqual(licensesOfCopyright(dep5), ["MIT", "GPL-2.0-or-later"]);
    assert.deepEqual(licensesOfCopyright("This is free software, see /usr/share/common-licenses/GPL.\n"), []);
  });

  test("the status file reads back with dpkg-query exactly as its control files say", () => {
    const control = (n: string, v: string) =>
      `Package: ${n}\nVersion: ${v}\nArchitecture: amd64\nMaintainer: A <a@b>\nDescription: short\n long line\n .\n more\n`;
    const admin = tempDir("berth-images-status-");
    writeFileSync(
      join(admin, "status"),
      statusFile([
        { name: "zeta", control: control("zeta", "1:2.0-1") },
        { name: "alpha", control: control("alpha", "0.9~rc1") },
      ]),
    );
    mkdirSync(join(admin, "updates"));
    const r = runSync("dpkg-query", [
      `--admindir=${admin}`,
      "-W",
      "-f",
      "${Package} ${Version} ${db:Status-Status}\\n",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "alpha 0.9~rc1 installed\nzeta 1:2.0-1 installed\n");
    const d = runSync("dpkg-query", [`--admindir=${admin}`, "-W", "-f", "${Description}", "zeta"]);
    assert.equal(d.stdout, "short\n long line\n .\n more");
  });

  test("the CA bundle is what update-ca-certificates made on this machine from the same certificates", () => {
    const conf = readFileSync("/etc/ca-certificates.conf", "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#") && !l.startsWith("!"));
    const tree = new FileTree();
    for (const c of conf)
      tree.put(`usr/share/ca-certificates/${c}`, {
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
        data: readFileSync(`/usr/share/ca-certificates/${c}`),
        origin: "host",
      });
    const n = writeCaBundle(tree, "etc/ssl/certs/ca-certificates.crt");
    assert.equal(n, conf.length);
    const ours = (tree.nodes.get("etc/ssl/certs/ca-certificates.crt") as { data: Buffer }).data;
    const local = readdirSync("/usr/local/share/ca-certificates").filter((f) => f.endsWith(".crt"));
    if (local.length === 0)
      assert.ok(ours.equals(readFileSync("/etc/ssl/certs/ca-certificates.crt")), "bundle bytes");
    else assert.ok(readFileSync("/etc/ssl/certs/ca-certificates.crt").includes(ours), "bundle contains ours");
  });

  test("Docker tags from Debian versions", () => {
    assert.equal(tagOf("5:8.0.2-3+deb13u3"), "8.0.2-3-deb13u3");
    assert.equal(tagOf("10.1.60-1~deb13u1"), "10.1.60-1-deb13u1");
  });
});
