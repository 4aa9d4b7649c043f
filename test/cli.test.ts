// The CLI contract: help with examples, exit codes (2 usage, 1 failure), one-line errors.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { berth, isOneLineError } from "./helpers.ts";

describe("berth CLI", () => {
  test("--help lists the command families and examples", async () => {
    const r = await berth(["--help"]);
    assert.equal(r.code, 0);
    for (const family of ["pkg"]) assert.match(r.stdout, new RegExp(`^\\s+${family}\\b`, "m"));
    assert.match(r.stdout, /Examples:/);
    const sub = await berth(["pkg", "resolve", "--help"]);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /Examples:/);
    assert.match(sub.stdout, /--json/);
  });

  test("usage errors exit 2 with one line", async () => {
    for (const args of [
      ["nope"],
      ["pkg", "nope"],
      ["pkg", "compare", "1"],
      ["pkg", "installed", "--bogus"],
      ["pkg", "compare", "1", "zz", "2"],
    ]) {
      const r = await berth(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(isOneLineError(r.stderr), `${args.join(" ")}: ${r.stderr}`);
    }
  });

  test("failures exit 1 with one line and no stack trace", async () => {
    const r = await berth(["pkg", "deb", "info", "/nonexistent.deb"]);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
  });

  test("--version prints the version", async () => {
    const r = await berth(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  });

  test("a subcommand's own --version is its option, not the program's version", async () => {
    // `berth update apply --version V` once printed 0.1.0 and exited 0 without applying anything.
    const r = await berth(["update", "apply", "--version", "2026.12.2"]);
    assert.doesNotMatch(r.stdout, /^\d+\.\d+\.\d+/);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /berth update runs on a Berth OS node/);
  });

  test("JSON output is valid JSON even when piped", async () => {
    const r = await berth(["pkg", "compare", "1", "lt", "2", "--json"]);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), { a: "1", op: "lt", b: "2", holds: true });
  });
});
