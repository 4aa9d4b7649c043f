// Two more real Debian libraries in long-running processes. Expat, the case the issue found: a python3
// process parses the same document in a loop with pyexpat on the older build from the archive; the
// newer build either applies and rolls back with the loop's output unchanged, or the plan refuses it
// naming the layout change before anything is written; either way no signal kills the process. And a
// library with a pending update on this machine (libxml2: the installed build against the archive's
// newer one), applied to a C program that parses and serialises a document in a loop, and rolled back.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { openSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { mappedCode } from "../../src/patch/proc.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import { berth, isOneLineError, ROOT, runSync, tempDir } from "../helpers.ts";
import { archiveBuilds, libIn } from "./debian.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const EXPAT_LOOP = `
import hashlib, sys, time, xml.parsers.expat
doc = b"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY e 'entity text'>]><r a='1'>" + b"".join(b"<i n='%d'>t&amp;&e;</i>" % i for i in range(200)) + b"</r>"
while True:
    out = []
    p = xml.parsers.expat.ParserCreate()
    p.StartElementHandler = lambda n, a: out.append("s" + n + repr(sorted(a.items())))
    p.EndElementHandler = lambda n: out.append("e" + n)
    p.CharacterDataHandler = lambda d: out.append("c" + d)
    p.Parse(doc, True)
    print(hashlib.sha256("|".join(out).encode()).hexdigest()[:16], len(out), flush=True)
    time.sleep(0.05)
`;

interface Plan {
  state: string;
  copied: number;
  identical: number;
  redirected: unknown[];
  refusals: string[];
}

describe("live upgrades of expat and libxml2", () => {
  const dir = tempDir("berth-patch-real-");
  const state = join(dir, "state");
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill("SIGKILL");
  });

  function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
    const out = join(dir, `out-${children.length}`);
    const child = spawn(cmd, args, { env, stdio: ["ignore", openSync(out, "w"), "inherit"] });
    children.push(child);
    const lines = () => readFileSync(out, "utf8").trim().split("\n").filter(Boolean);
    return { child, pid: child.pid!, lines };
  }
  async function lines(t: ReturnType<typeof start>, n: number): Promise<string[]> {
    for (let i = 0; i < 300 && t.lines().length < n; i++) await sleep(100);
    assert.ok(t.lines().length >= n, `the process printed ${t.lines().length} lines`);
    return t.lines();
  }
  /** Waits for new output and checks every line since `from` is `want`. */
  async function steady(t: ReturnType<typeof start>, from: number, want: string) {
    const got = (await lines(t, from + 5)).slice(from);
    assert.deepEqual([...new Set(got)], [want]);
    assert.equal(t.child.exitCode, null, "the process exited");
    assert.equal(t.child.signalCode, null, "a signal killed the process");
  }
  const codeBytes = mappedCode;
  const plan = async (newLib: string, pid: number) => {
    const r = await berth([
      "patch",
      "lib",
      "plan",
      "--new",
      newLib,
      "--pid",
      String(pid),
      "--state",
      state,
      "--json",
    ]);
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    return (JSON.parse(r.stdout) as { plans: Plan[] }).plans[0]!;
  };

  test("expat: the update applies and rolls back with the same output, or the plan refuses it naming the layout change", async () => {
    const [neu, old] = await archiveBuilds("libexpat1");
    assert.ok(neu && old, "the archive serves fewer than two builds of libexpat1");
    const oldLib = realpathSync(libIn(old, "libexpat.so.1"));
    writeFileSync(join(dir, "loop.py"), EXPAT_LOOP);
    // Debian's python3 links pyexpat to the shared libexpat; LD_LIBRARY_PATH puts the older build under it.
    const t = start("/usr/bin/python3", [join(dir, "loop.py")], {
      ...process.env,
      LD_LIBRARY_PATH: dirname(oldLib),
    });
    const first = (await lines(t, 3)).at(-1)!;
    assert.ok(
      readFileSync(`/proc/${t.pid}/maps`, "utf8").includes(oldLib),
      "python3 does not map the older libexpat",
    );
    const before = codeBytes(t.pid, oldLib);
    const p = await plan(libIn(neu, "libexpat.so.1"), t.pid);
    const apply = await berth([
      "patch",
      "lib",
      "apply",
      "--new",
      libIn(neu, "libexpat.so.1"),
      "--pid",
      String(t.pid),
      "--state",
      state,
    ]);
    if (p.state === "refused") {
      assert.ok(
        p.refusals.some((r) => /structure|resized|layout/.test(r)),
        `the refusal names no layout change: ${p.refusals.join("; ")}`,
      );
      assert.equal(apply.code, 1);
      assert.ok(isOneLineError(apply.stderr.trim().split("\n").pop()!), apply.stderr);
      assert.match(apply.stderr, /structure/);
      // Nothing was written: the same code, no patch memory, the same output.
      assert.ok(codeBytes(t.pid, oldLib).equals(before));
      assert.doesNotMatch(readFileSync(`/proc/${t.pid}/maps`, "utf8"), new RegExp(`${state}/libs/`));
      await steady(t, t.lines().length, first);
    } else {
      assert.equal(p.state, "ready");
      assert.equal(apply.code, 0, apply.stderr);
      await steady(t, t.lines().length, first);
      const rb = await berth(["patch", "lib", "rollback", "--pid", String(t.pid), "--state", state]);
      assert.equal(rb.code, 0, rb.stderr);
      await steady(t, t.lines().length, first);
      assert.ok(codeBytes(t.pid, oldLib).equals(before));
    }
  });

  test("libxml2 with a pending update: the installed build is upgraded in a running process and back", async () => {
    const installed = runSync("dpkg-query", ["-W", "-f", "${Version}", "libxml2"]).stdout.trim();
    assert.ok(installed, "libxml2 is not installed");
    const builds = await archiveBuilds("libxml2");
    const pending = builds.find((b) => compareVersions(b.version, installed) > 0);
    // Without a pending update, the archive's two newest builds stand in (the older one loaded by path).
    const neu = pending ?? builds[0]!;
    const oldLib = realpathSync(
      pending ? "/usr/lib/x86_64-linux-gnu/libxml2.so.2" : libIn(builds[1]!, "libxml2.so.2"),
    );
    const cc = runSync("gcc", [
      "-O2",
      "-o",
      join(dir, "xmlloop"),
      join(ROOT, "test/fixtures/patch/xmlloop.c"),
      "-ldl",
    ]);
    assert.equal(cc.code, 0, cc.stderr);
    const t = start(join(dir, "xmlloop"), [oldLib]);
    const first = (await lines(t, 3)).at(-1)!;
    const newLib = libIn(neu, "libxml2.so.2");
    const p = await plan(newLib, t.pid);
    assert.equal(p.state, "ready", p.refusals.join("; "));
    assert.ok(p.copied > 0 && p.redirected.length > 0, "the update changes no function");
    process.stderr.write(
      `# libxml2 ${pending ? installed : builds[1]!.version} -> ${neu.version}: ${p.copied} functions copied, ${p.identical} identical\n`,
    );
    const a = await berth([
      "patch",
      "lib",
      "apply",
      "--new",
      newLib,
      "--pid",
      String(t.pid),
      "--state",
      state,
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.match(
      readFileSync(`/proc/${t.pid}/maps`, "utf8"),
      new RegExp(`${state}/libs/[0-9a-f]{16}-libxml2`),
    );
    await steady(t, t.lines().length, first);
    const rb = await berth(["patch", "lib", "rollback", "--pid", String(t.pid), "--state", state]);
    assert.equal(rb.code, 0, rb.stderr);
    await steady(t, t.lines().length, first);
  });
});
