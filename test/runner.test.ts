// The suite runner (scripts/test.ts): finds every *.test.ts, runs test/host/ last and alone, and fails
// when a test file ran no test.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, runSync, tempDir } from "./helpers.ts";

const RUNNER = join(ROOT, "scripts/test.ts");

function tree(files: Record<string, string>): string {
  const dir = tempDir("berth-runner-");
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(dir, p, ".."), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  return dir;
}

const passing = (marker?: string) =>
  `import { test } from "node:test";\nimport { writeFileSync } from "node:fs";\ntest("ok", () => { ${
    marker ? `writeFileSync(${JSON.stringify(marker)}, "ran");` : ""
  } });\n`;

test("a test file that runs no test fails the suite and is named", () => {
  const dir = tree({
    "a.test.ts": passing(),
    "b.test.ts": `import { test } from "node:test";\ntest.skip("later", () => {});\n`,
    "deep/new-part/c.test.ts": "// no tests registered\n",
  });
  const r = runSync(process.execPath, [RUNNER, "--dir", dir]);
  assert.equal(r.code, 1, r.stderr);
  const line = r.stderr.split("\n").find((l) => l.includes("ran no test")) ?? "";
  assert.match(line, /b\.test\.ts/);
  assert.match(line, /deep\/new-part\/c\.test\.ts/);
  assert.doesNotMatch(line, /a\.test\.ts/);
});

test("every file found runs, in any folder, and test/host runs after the rest", () => {
  const dir = tempDir("berth-runner-");
  const marker = join(dir, "marker");
  const files = {
    "x/one.test.ts": passing(marker),
    "y/z/two.test.ts": passing(),
    "host/live.test.ts": `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { readFileSync } from "node:fs";\ntest("after", () => { assert.equal(readFileSync(${JSON.stringify(marker)}, "utf8"), "ran"); });\n`,
  };
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(dir, p, ".."), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  const r = runSync(process.execPath, [RUNNER, "--dir", dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(readFileSync(marker, "utf8"), "ran");
  // The spec reporter names every test that ran: three files, three tests.
  assert.equal((r.stdout.match(/✔ (ok|after) /g) ?? []).length, 3, r.stdout);
});

test("a failing test fails the suite", () => {
  const dir = tree({
    "f.test.ts": `import { test } from "node:test";\ntest("no", () => { throw new Error("boom"); });\n`,
  });
  const r = runSync(process.execPath, [RUNNER, "--dir", dir]);
  assert.notEqual(r.code, 0);
});

test("the real suite's files are all found, host files included", () => {
  const listed = runSync(process.execPath, [
    "--input-type=module",
    "-e",
    `import { findTestFiles } from ${JSON.stringify(RUNNER)}; console.log(JSON.stringify(findTestFiles(${JSON.stringify(join(ROOT, "test"))})));`,
  ]);
  assert.equal(listed.code, 0, listed.stderr);
  const found = JSON.parse(listed.stdout) as string[];
  const git = runSync("git", ["-C", ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "test"]);
  const tracked = git.stdout
    .split("\n")
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => join(ROOT, f))
    .sort();
  assert.deepEqual(found, tracked);
  assert.ok(found.some((f) => f.includes("/test/host/")));
  assert.ok(found.includes(join(ROOT, "test/runner.test.ts")));
});
