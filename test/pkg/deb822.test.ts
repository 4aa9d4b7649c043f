import assert from "node:assert/strict";
import { createReadStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import {
  continuationLines,
  Deb822SyntaxError,
  fieldOf,
  parseDeb822,
  streamDeb822,
} from "../../src/pkg/deb822.ts";
import { parseRelease } from "../../src/pkg/release.ts";
import { runSync } from "../helpers.ts";

const SAMPLE = `# a comment before the first stanza
Package: foo
Version: 1.0-1
Description: short
 long line one
 .
 long line two
Depends: libc6 (>= 2.36),
 libfoo1

# comment between stanzas

Package: bar
Version: 2
Conffiles:
 /etc/bar.conf 0123456789abcdef0123456789abcdef
 /etc/bar.d/x 0123456789abcdef0123456789abcdef obsolete
`;

describe("deb822 parsing", () => {
  test("stanzas, continuation lines, multi-line fields and comments", () => {
    const s = parseDeb822(SAMPLE);
    assert.equal(s.length, 2);
    assert.equal(s[0]!.Package, "foo");
    assert.equal(s[0]!.Description, "short\n long line one\n .\n long line two");
    assert.equal(s[0]!.Depends, "libc6 (>= 2.36),\n libfoo1");
    assert.equal(
      s[1]!.Conffiles,
      "\n /etc/bar.conf 0123456789abcdef0123456789abcdef\n /etc/bar.d/x 0123456789abcdef0123456789abcdef obsolete",
    );
    assert.deepEqual(continuationLines(s[1]!.Conffiles), [
      "/etc/bar.conf 0123456789abcdef0123456789abcdef",
      "/etc/bar.d/x 0123456789abcdef0123456789abcdef obsolete",
    ]);
    assert.equal(fieldOf(s[0]!, "package"), "foo");
  });

  test("streaming gives the same stanzas whatever the chunk boundaries", async () => {
    const whole = parseDeb822(SAMPLE);
    for (const size of [1, 2, 3, 7, 64]) {
      const chunks: Buffer[] = [];
      const buf = Buffer.from(SAMPLE);
      for (let i = 0; i < buf.length; i += size) chunks.push(buf.subarray(i, i + size));
      const got = [];
      for await (const s of streamDeb822(Readable.from(chunks))) got.push(s);
      assert.deepEqual(got, whole, `chunk size ${size}`);
    }
  });

  test("multi-byte UTF-8 split across chunks survives", async () => {
    const text = "Package: x\nMaintainer: Jérôme Ünïcødé <j@example.org>\n";
    const buf = Buffer.from(text);
    const chunks = [...buf].map((b) => Buffer.from([b]));
    const got = [];
    for await (const s of streamDeb822(Readable.from(chunks))) got.push(s);
    assert.equal(got[0]!.Maintainer, "Jérôme Ünïcødé <j@example.org>");
  });

  test("errors name the line", () => {
    assert.throws(
      () => parseDeb822("Package: a\n continuation ok\nno colon here\n"),
      (e: unknown) => e instanceof Deb822SyntaxError && e.line === 3,
    );
    assert.throws(() => parseDeb822(" starts with continuation\n"), Deb822SyntaxError);
    assert.throws(() => parseDeb822("Package: a\nPackage: b\n"), /duplicate field "Package"/);
    assert.throws(() => parseDeb822(": empty name\n"), /empty field name/);
  });

  test("field selection keeps only the asked fields, and skips their continuations", () => {
    const s = parseDeb822(SAMPLE, { fields: new Set(["Package"]) });
    assert.deepEqual(s, [{ Package: "foo" }, { Package: "bar" }]);
  });

  test("fuzzed input never throws anything but a syntax error", () => {
    let seed = 1234;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const alphabet = ["\n", " ", "\t", ":", "#", "a", "Package", ".", "\r", "\u0000", "é", "\n\n"];
    for (let i = 0; i < 3000; i++) {
      let text = SAMPLE;
      const edits = 1 + Math.floor(rnd() * 8);
      for (let e = 0; e < edits; e++) {
        const pos = Math.floor(rnd() * text.length);
        const what = rnd();
        if (what < 0.4) text = text.slice(0, pos) + text.slice(pos + 1 + Math.floor(rnd() * 5));
        else text = text.slice(0, pos) + alphabet[Math.floor(rnd() * alphabet.length)] + text.slice(pos);
      }
      try {
        parseDeb822(text);
      } catch (e) {
        assert.ok(e instanceof Deb822SyntaxError, `unexpected ${(e as Error).name}: ${(e as Error).message}`);
      }
    }
  });

  test("this machine's status file parses to the same package count dpkg-query reports", async () => {
    let n = 0;
    for await (const s of streamDeb822(createReadStream("/var/lib/dpkg/status"))) if (s.Package) n++;
    const dq = runSync("dpkg-query", ["-f", "${Package}\n", "-W"]).stdout.trim().split("\n").length;
    assert.ok(n >= dq, `${n} stanzas, dpkg-query lists ${dq}`);
  });

  test("a Release file: hash list, by-hash flag and dates", () => {
    const text = readFileSync(new URL("../fixtures/Release.sample", import.meta.url), "utf8");
    const r = parseRelease(text);
    assert.equal(r.codename, "trixie");
    assert.equal(r.acquireByHash, true);
    assert.equal(r.files.get("main/binary-amd64/Packages.xz")?.size, 9679304);
    assert.equal(
      r.files.get("main/binary-amd64/Packages.xz")?.sha256,
      "be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412",
    );
    assert.equal(r.date?.toISOString(), "2026-11-21T09:15:44.000Z");
  });
});
