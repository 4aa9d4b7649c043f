// Patch packages: a fixed shared library published as a livepatch-lib target and applied to a running
// process with `berth patch lib apply --from-repo`, through the TUF client and the usual patch path.
// The same patch with one byte changed on the mirror is refused and nothing is applied; a process that
// maps another build of the library is refused by build id (readelf is the oracle for the ids the
// target records). The library and program are compiled here.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { berth, isOneLineError, runSync, tempDir } from "../helpers.ts";
import {
  freshTestRepository,
  mirrorWithChangedTarget,
  serveTestRepository,
  type TestRepository,
  testClient,
} from "../shared/repo.ts";

const LIB = `#include <stdio.h>
#define STR2(x) #x
#define STR(x) STR2(x)
int fix_version(void) { return V; }
const char *fix_greet(void) { return "greet-v" STR(V); }
`;
const PROG = `#include <stdio.h>
#include <unistd.h>
int fix_version(void); const char *fix_greet(void);
int main(void) { for (;;) { printf("%d %s\\n", fix_version(), fix_greet()); fflush(stdout); usleep(20000); } }
`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("berth patch lib apply --from-repo", () => {
  const dir = tempDir("berth-repo-livepatch-");
  const state = join(dir, "patch-state");
  const env = { BERTH_REPO_STATE: join(dir, "repo-state") };
  const children: ChildProcess[] = [];
  let repo: TestRepository;
  let served: ServedRepository;
  let name: string;

  const cc = (args: string[]) => {
    const r = runSync("gcc", args);
    assert.equal(r.code, 0, r.stderr);
  };
  const buildId = (file: string) =>
    /Build ID: ([0-9a-f]+)/.exec(runSync("readelf", ["-n", file]).stdout)?.[1];

  before(async () => {
    writeFileSync(join(dir, "fix.c"), LIB);
    writeFileSync(join(dir, "prog.c"), PROG);
    for (const v of [1, 2, 3])
      cc([
        "-O2",
        "-fPIC",
        "-shared",
        `-DV=${v}`,
        "-Wl,--build-id",
        "-Wl,-soname,libfix.so.1",
        "-o",
        join(dir, `libfix-v${v}.so`),
        join(dir, "fix.c"),
      ]);
    for (const [sub, v] of [
      ["lib", 1],
      ["lib3", 3],
    ] as const) {
      mkdirSync(join(dir, sub));
      cpSync(join(dir, `libfix-v${v}.so`), join(dir, sub, "libfix.so.1"));
      cc([
        "-O2",
        "-o",
        join(dir, `prog-${sub}`),
        join(dir, "prog.c"),
        join(dir, sub, "libfix.so.1"),
        `-Wl,-rpath,${join(dir, sub)}`,
      ]);
    }
    repo = await freshTestRepository();
    const r = await berth([
      "repo",
      "add",
      repo.dir,
      "livepatch-lib",
      join(dir, "libfix-v2.so"),
      "--replaces",
      join(dir, "lib/libfix.so.1"),
      "--publish",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    name = Object.keys(JSON.parse(r.stdout).staged)[0]!;
    served = await serveTestRepository(repo.dir);
  });
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await served?.close();
  });

  function start(prog: string) {
    const out = join(dir, `${prog}-${children.length}.out`);
    const child = spawn(join(dir, prog), [], { stdio: ["ignore", openSync(out, "w"), "ignore"] });
    children.push(child);
    return { pid: child.pid!, last: () => readFileSync(out, "utf8").trim().split("\n").pop() ?? "" };
  }
  async function expectLine(last: () => string, want: string): Promise<void> {
    for (let i = 0; i < 150 && last() !== want; i++) await sleep(20);
    assert.equal(last(), want);
  }
  const apply = (url: string, pid: number) =>
    berth(
      [
        "patch",
        "lib",
        "apply",
        "--from-repo",
        url,
        name,
        "--trusted-root",
        repo.trustedRoot,
        "--pid",
        String(pid),
        "--state",
        state,
        "--json",
      ],
      { env },
    );
  const patched = async (pid: number) =>
    (
      JSON.parse((await berth(["patch", "lib", "status", "--json", "--state", state])).stdout) as {
        pid: number;
      }[]
    ).some((j) => j.pid === pid);

  test("the target records the library it replaces: soname and build ids as readelf reads them", async () => {
    const t = await testClient(served.url, repo.trustedRoot).target(name);
    assert.ok(t);
    assert.equal(t.custom.kind, "livepatch-lib");
    assert.equal(t.custom.library, "libfix.so.1");
    const replaces = t.custom.replaces as { soname: string; buildId?: string; symbols: number };
    assert.equal(replaces.soname, "libfix.so.1");
    assert.equal(replaces.symbols, 2);
    assert.ok(buildId(join(dir, "libfix-v1.so")), "gcc made no build id");
    assert.equal(replaces.buildId, buildId(join(dir, "libfix-v1.so")));
    assert.equal(t.custom.buildId, buildId(join(dir, "libfix-v2.so")));
    assert.equal(name, `livepatch/lib/libfix.so.1/${replaces.buildId}/libfix-v2.so`);
  });

  test("the same patch with one byte changed on the mirror is refused, and nothing is applied", async () => {
    const p = start("prog-lib");
    await expectLine(p.last, "1 greet-v1");
    const tree = await mirrorWithChangedTarget(repo, name, dir);
    const mirror = await serveTestRepository(tree);
    try {
      const r = await apply(mirror.url, p.pid);
      assert.equal(r.code, 1);
      assert.ok(isOneLineError(r.stderr), r.stderr);
      assert.match(
        r.stderr,
        /^berth: target livepatch\/lib\/libfix\.so\.1\/\S+ refused: its SHA-256 is not the one the targets metadata records/,
      );
    } finally {
      await mirror.close();
    }
    await sleep(200);
    assert.equal(p.last(), "1 greet-v1");
    assert.equal(await patched(p.pid), false);
  });

  test("a library patch published in the repository is applied to a running process", async () => {
    const p = start("prog-lib");
    await expectLine(p.last, "1 greet-v1");
    const r = await apply(served.url, p.pid);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(
      (JSON.parse(r.stdout) as { patched: { pid: number }[] }).patched.map((d) => d.pid),
      [p.pid],
    );
    await expectLine(p.last, "2 greet-v2");
    assert.equal(await patched(p.pid), true);
  });

  test("a process that maps another build of the library is refused by build id", async () => {
    const p = start("prog-lib3");
    await expectLine(p.last, "3 greet-v3");
    const r = await apply(served.url, p.pid);
    // (the exit status with --json is the patch command's own affair; the refusal is in the summary)
    const failed = (JSON.parse(r.stdout) as { refused: { pid: number; reason: string }[] }).refused;
    assert.deepEqual(
      failed.map((f) => f.pid),
      [p.pid],
    );
    assert.match(
      failed[0]!.reason,
      new RegExp(
        `build id ${buildId(join(dir, "libfix-v3.so"))}; the patch is for ${buildId(join(dir, "libfix-v1.so"))}`,
      ),
    );
    await sleep(200);
    assert.equal(p.last(), "3 greet-v3");
    assert.equal(await patched(p.pid), false);
  });
});
