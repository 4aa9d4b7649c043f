// berth patch lib on real processes: C programs and three versions of a shared library compiled by the
// test. Single- and multi-threaded targets, lazy binding and full RELRO, a function pointer taken before
// the patch, v1 -> v2 -> v3 and back, 1,000 apply/rollback cycles on a busy multi-threaded process, a
// process in a Docker container patched from the host, and every refusal.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PtraceHelper } from "../../src/patch/helper.ts";
import { patchLib, rollbackLib } from "../../src/patch/lib.ts";
import { berth, isOneLineError, ROOT, run, runSync, tempDir } from "../helpers.ts";

const FIXTURES = join(ROOT, "test/fixtures/patch");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("berth patch lib", () => {
  const dir = tempDir("berth-patch-lib-");
  const state = join(dir, "state");
  const children: ChildProcess[] = [];

  const cc = (args: string[]) => {
    const r = runSync("gcc", args);
    assert.equal(r.code, 0, r.stderr);
  };

  before(() => {
    copyFileSync(join(FIXTURES, "demo.c"), join(dir, "demo.c"));
    copyFileSync(join(FIXTURES, "prog.c"), join(dir, "prog.c"));
    writeFileSync(join(dir, "demo.map"), "DEMO_1.0 { global: demo_*; local: *; };\n");
    writeFileSync(join(dir, "demo2.map"), "DEMO_2.0 { global: demo_*; local: *; };\n");
    writeFileSync(
      join(dir, "missing.c"),
      'int demo_version(void) { return 9; }\nconst char *demo_greet(void) { return "x"; }\n',
    );
    const shared = (out: string, extra: string[], src = "demo.c", map = "demo.map") =>
      cc([
        "-O2",
        "-fPIC",
        "-shared",
        ...extra,
        `-Wl,--version-script=${join(dir, map)}`,
        "-Wl,-soname,libdemo.so.1",
        "-o",
        join(dir, out),
        join(dir, src),
      ]);
    for (const v of [1, 2, 3]) shared(`libdemo-v${v}.so`, [`-DV=${v}`]);
    shared("libdemo-badver.so", ["-DV=2"], "demo.c", "demo2.map");
    shared("libdemo-missing.so", [], "missing.c");
    shared("libdemo-tiny-v1.so", ["-DV=1", "-DTINY"]);
    shared("libdemo-tiny-v2.so", ["-DV=2", "-DTINY"]);
    mkdirSync(join(dir, "lib"));
    mkdirSync(join(dir, "tiny"));
    copyFileSync(join(dir, "libdemo-v1.so"), join(dir, "lib/libdemo.so.1"));
    copyFileSync(join(dir, "libdemo-tiny-v1.so"), join(dir, "tiny/libdemo.so.1"));
    const prog = (out: string, libdir: string, link: string[]) =>
      cc([
        "-O2",
        "-o",
        join(dir, out),
        join(dir, "prog.c"),
        join(dir, libdir, "libdemo.so.1"),
        `-Wl,-rpath,${join(dir, libdir)}`,
        ...link,
        "-pthread",
      ]);
    prog("prog-lazy", "lib", ["-Wl,-z,lazy"]);
    prog("prog-now", "lib", ["-Wl,-z,relro,-z,now"]);
    prog("prog-tiny", "tiny", []);
  });

  after(() => {
    for (const c of children) c.kill("SIGKILL");
    runSync("docker", ["rm", "-f", "berth-patch-ctr"]);
    runSync("docker", ["rmi", "-f", "berth-patch-test:1"]);
  });

  /** Starts a target; returns its PID and a reader of its latest output line. */
  function start(prog: string, threads = 0) {
    const out = join(dir, `${prog}-${children.length}.out`);
    const child = spawn(join(dir, prog), [String(threads)], {
      stdio: ["ignore", openSync(out, "w"), "ignore"],
    });
    children.push(child);
    const last = () => readFileSync(out, "utf8").trim().split("\n").pop() ?? "";
    return { pid: child.pid!, child, last };
  }

  async function expectLine(last: () => string, want: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (last() === want) return;
      await sleep(20);
    }
    assert.equal(last(), want);
  }

  const applyArgs = (pid: number, lib: string) => [
    "patch",
    "lib",
    "apply",
    "--lib",
    "libdemo",
    "--new",
    join(dir, lib),
    "--pid",
    String(pid),
    "--state",
    state,
  ];
  const apply = (pid: number, lib: string, extra: string[] = []) =>
    berth([...applyArgs(pid, lib), "--json", ...extra]);
  const applyText = (pid: number, lib: string, env?: NodeJS.ProcessEnv) =>
    berth(applyArgs(pid, lib), { env });
  const rollback = (pid: number) =>
    berth(["patch", "lib", "rollback", "--pid", String(pid), "--state", state, "--json"]);

  test("lazy binding, single thread: the output switches without a restart, and rollback restores it", async () => {
    const t = start("prog-lazy");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const r = await apply(t.pid, "libdemo-v2.so");
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { done: { writes: number; functions: number }[] };
    assert.equal(out.done[0]!.functions, 3);
    // The function pointer taken before the patch follows too (it points at the old entry).
    await expectLine(t.last, "2 greet-v2 greet-v2 2000");
    const status = JSON.parse(
      (await berth(["patch", "lib", "status", "--json", "--state", state])).stdout,
    ) as { pid: number; layers: unknown[] }[];
    assert.deepEqual(
      status.map((s) => [s.pid, s.layers.length]),
      [[t.pid, 1]],
    );
    const rb = await rollback(t.pid);
    assert.equal(rb.code, 0, rb.stderr);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    t.child.kill("SIGKILL");
  });

  test("full RELRO with GOT rewriting: v1 -> v2 -> v3 and back, step by step, bytes restored exactly", async () => {
    const t = start("prog-now");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const text = (p: number) => {
      const m = readFileSync(`/proc/${p}/maps`, "utf8")
        .split("\n")
        .find((l) => l.includes(`${dir}/lib/libdemo.so.1`) && l.includes("r-xp"))!;
      const [a, b] = m
        .split(" ")[0]!
        .split("-")
        .map((x) => BigInt(`0x${x}`));
      const fd = openSync(`/proc/${p}/mem`, "r");
      const buf = Buffer.alloc(Number(b! - a!));
      readSync(fd, buf, 0, buf.length, a!);
      closeSync(fd);
      return buf.toString("hex");
    };
    const original = text(t.pid);
    for (const [lib, want] of [
      ["libdemo-v2.so", "2 greet-v2 greet-v2 2000"],
      ["libdemo-v3.so", "3 greet-v3 greet-v3 3000"],
    ] as const) {
      const r = await apply(t.pid, lib, ["--got"]);
      assert.equal(r.code, 0, r.stderr);
      await expectLine(t.last, want);
    }
    assert.equal((await rollback(t.pid)).code, 0);
    await expectLine(t.last, "2 greet-v2 greet-v2 2000");
    assert.equal((await rollback(t.pid)).code, 0);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    assert.equal(text(t.pid), original, "the old library's code differs after rolling everything back");
    const none = await rollback(t.pid);
    assert.equal(none.code, 1);
    t.child.kill("SIGKILL");
  });

  test("a busy multi-threaded process survives 1,000 apply/rollback cycles", async () => {
    const t = start("prog-now", 3);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const h = new PtraceHelper();
    const pauses: number[] = [];
    try {
      for (let i = 0; i < 1000; i++) {
        pauses.push(
          (await patchLib(h, t.pid, { lib: "libdemo", newPath: join(dir, "libdemo-v2.so"), stateDir: state }))
            .pauseNs,
        );
        pauses.push((await rollbackLib(h, t.pid, { stateDir: state })).pauseNs);
      }
    } finally {
      h.close();
    }
    assert.equal(t.child.exitCode, null, "the target died");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    pauses.sort((a, b) => a - b);
    process.stderr.write(
      `# pause over 2000 operations: p50 ${(pauses[1000]! / 1e6).toFixed(2)} ms, p99 ${(pauses[1980]! / 1e6).toFixed(2)} ms\n`,
    );
    t.child.kill("SIGKILL");
  });

  test("a process inside a Docker container, patched from the host", async () => {
    // A minimal glibc image from this machine's own Debian files: the loader, libc, the program, v1.
    const img = join(dir, "img");
    for (const d of ["app", "tmp", "lib64", "lib/x86_64-linux-gnu"])
      mkdirSync(join(img, d), { recursive: true });
    copyFileSync("/lib64/ld-linux-x86-64.so.2", join(img, "lib64/ld-linux-x86-64.so.2"));
    copyFileSync("/lib/x86_64-linux-gnu/libc.so.6", join(img, "lib/x86_64-linux-gnu/libc.so.6"));
    cc([
      "-O2",
      "-o",
      join(img, "app/prog"),
      join(dir, "prog.c"),
      join(dir, "lib/libdemo.so.1"),
      "-Wl,-rpath,/app",
      "-pthread",
    ]);
    copyFileSync(join(dir, "libdemo-v1.so"), join(img, "app/libdemo.so.1"));
    const imp = await run("bash", [
      "-c",
      `chmod 1777 ${img}/tmp && tar -C ${img} -c . | docker import - berth-patch-test:1`,
    ]);
    assert.equal(imp.code, 0, imp.stderr);
    const r = await run("docker", [
      "run",
      "-d",
      "--name",
      "berth-patch-ctr",
      "berth-patch-test:1",
      "/app/prog",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(
      runSync("docker", ["inspect", "-f", "{{.State.Pid}}", "berth-patch-ctr"]).stdout.trim(),
    );
    const last = () => runSync("docker", ["logs", "--tail", "1", "berth-patch-ctr"]).stdout.trim();
    await expectLine(last, "1 greet-v1 greet-v1 1000");
    const a = await apply(pid, "libdemo-v2.so");
    assert.equal(a.code, 0, a.stdout + a.stderr);
    await expectLine(last, "2 greet-v2 greet-v2 2000");
    assert.match(
      readFileSync(`/proc/${pid}/maps`, "utf8"),
      /\/tmp\/berth-patch\/[0-9a-f]{16}-libdemo-v2\.so/,
    );
    assert.equal((await rollback(pid)).code, 0);
    await expectLine(last, "1 greet-v1 greet-v1 1000");
  });

  test("refusals: a missing symbol, another symbol version, a function too small, a target that exits, no root", async () => {
    const t = start("prog-lazy");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const missing = await applyText(t.pid, "libdemo-missing.so");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /demo_add missing from the new library/);
    const ver = await applyText(t.pid, "libdemo-badver.so");
    assert.equal(ver.code, 1);
    assert.match(ver.stderr, /version DEMO_1\.0 in the old library, DEMO_2\.0 in the new/);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");

    const tiny = start("prog-tiny");
    await expectLine(tiny.last, "1 greet-v1 greet-v1 1000");
    const small = await applyText(tiny.pid, "libdemo-tiny-v2.so");
    assert.equal(small.code, 1);
    assert.match(small.stderr, /demo_tiny too small for a jump \(1 bytes, 5 needed\)/);

    // The target is killed between loading the library and writing the jumps: nothing is recorded.
    const exits = await applyText(t.pid, "libdemo-v2.so", { BERTH_PATCH_KILL_TARGET: "1" });
    assert.equal(exits.code, 1);
    assert.ok(isOneLineError(exits.stderr.trim().split("\n").pop()!), exits.stderr);
    const status = JSON.parse(
      (await berth(["patch", "lib", "status", "--json", "--state", state])).stdout,
    ) as { pid: number }[];
    assert.ok(!status.some((s) => s.pid === t.pid), "a dead process kept a journal");

    // An unprivileged user that can still read the checkout (a clone may sit in a 0700 temp directory).
    const asNobody = [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--inh-caps=+dac_read_search",
      "--ambient-caps=+dac_read_search",
      join(ROOT, "bin/berth"),
    ];
    const nobody = await run("setpriv", [...asNobody, ...applyArgs(tiny.pid, "libdemo-v2.so")]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /needs root/);
    const usage = await berth(
      applyArgs(tiny.pid, "libdemo-v2.so").filter((x) => x !== "--pid" && x !== String(tiny.pid)),
    );
    assert.equal(usage.code, 2);
    assert.ok(isOneLineError(usage.stderr), usage.stderr);
    tiny.child.kill("SIGKILL");
  });
});
