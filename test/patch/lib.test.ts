// berth patch lib on real processes: C programs and versions of shared libraries compiled by the test.
// Only changed functions are redirected (the plan says which and how); a library with state keeps its
// counter, table, mutex and handed-out pointer across v1 -> v2 -> v1; lazy binding and full RELRO;
// functions too small for a jump (short jump into padding, or the callers' GOT entries); v1 -> v2 -> v3
// and back with the library's bytes restored and the patch memory unmapped; a busy multi-threaded
// process through 200 apply/rollback cycles; a process in a Docker container patched from the host;
// and every refusal.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PtraceHelper } from "../../src/patch/helper.ts";
import { applyPatch, planProcess, rollbackPatch } from "../../src/patch/live.ts";
import { mappedCode, readMaps } from "../../src/patch/proc.ts";
import { berth, isOneLineError, ROOT, run, runSync, tempDir } from "../helpers.ts";

const FIXTURES = join(ROOT, "test/fixtures/patch");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Plan {
  pid: number;
  state: string;
  identical: number;
  copied: number;
  redirected: { name: string; method: string }[];
  refusals: string[];
}

describe("berth patch lib", () => {
  const dir = tempDir("berth-patch-lib-");
  const state = join(dir, "state");
  const children: ChildProcess[] = [];

  const cc = (args: string[]) => {
    const r = runSync("gcc", args);
    assert.equal(r.code, 0, r.stderr);
  };

  before(() => {
    for (const f of ["demo.c", "prog.c", "tinyprog.c", "state.c", "stateprog.c", "waitprog.c"])
      copyFileSync(join(FIXTURES, f), join(dir, f));
    writeFileSync(join(dir, "demo.map"), "DEMO_1.0 { global: demo_*; local: *; };\n");
    writeFileSync(join(dir, "demo2.map"), "DEMO_2.0 { global: demo_*; local: *; };\n");
    writeFileSync(
      join(dir, "missing.c"),
      'int demo_version(void) { return 9; }\nconst char *demo_greet(void) { return "x"; }\n',
    );
    const shared = (
      out: string,
      extra: string[],
      src = "demo.c",
      map = "demo.map",
      soname = "libdemo.so.1",
    ) =>
      cc([
        "-O2",
        "-fPIC",
        "-shared",
        ...extra,
        ...(map ? [`-Wl,--version-script=${join(dir, map)}`] : []),
        `-Wl,-soname,${soname}`,
        "-o",
        join(dir, out),
        join(dir, src),
        "-pthread",
      ]);
    for (const v of [1, 2, 3]) shared(`libdemo-v${v}.so`, [`-DV=${v}`]);
    shared("libdemo-badver.so", ["-DV=2"], "demo.c", "demo2.map");
    shared("libdemo-missing.so", [], "missing.c");
    for (const v of [1, 2]) {
      shared(`libdemo-pad-v${v}.so`, [`-DV=${v}`, "-DTINY"]);
      // Packed functions leave no alignment padding: a small function can only be reached through GOTs.
      shared(`libdemo-packed-v${v}.so`, [`-DV=${v}`, "-DTINY", "-falign-functions=1"]);
      shared(`libstate-v${v}.so`, [`-DV=${v}`], "state.c", "", "libstate.so.1");
      shared(`libdemo-wait-v${v}.so`, [`-DV=${v}`, "-DWAIT"]);
    }
    for (const [sub, lib] of [
      ["lib", "libdemo-v1.so"],
      ["pad", "libdemo-pad-v1.so"],
      ["packed", "libdemo-packed-v1.so"],
      ["wait", "libdemo-wait-v1.so"],
    ] as const) {
      mkdirSync(join(dir, sub));
      copyFileSync(join(dir, lib), join(dir, sub, "libdemo.so.1"));
    }
    mkdirSync(join(dir, "state-lib"));
    copyFileSync(join(dir, "libstate-v1.so"), join(dir, "state-lib/libstate.so.1"));
    const prog = (out: string, src: string, libdir: string, lib: string, link: string[]) =>
      cc([
        "-O2",
        "-o",
        join(dir, out),
        join(dir, src),
        join(dir, libdir, lib),
        `-Wl,-rpath,${join(dir, libdir)}`,
        ...link,
        "-pthread",
      ]);
    prog("prog-lazy", "prog.c", "lib", "libdemo.so.1", ["-Wl,-z,lazy"]);
    prog("prog-now", "prog.c", "lib", "libdemo.so.1", ["-Wl,-z,relro,-z,now"]);
    prog("tiny-pad", "tinyprog.c", "pad", "libdemo.so.1", []);
    prog("tiny-packed", "tinyprog.c", "packed", "libdemo.so.1", []);
    prog("stateprog", "stateprog.c", "state-lib", "libstate.so.1", []);
    prog("waitprog", "waitprog.c", "wait", "libdemo.so.1", []);
  });

  before(() => {
    h = new PtraceHelper();
  });

  after(() => {
    h.close();
    for (const c of children) c.kill("SIGKILL");
    runSync("docker", ["rm", "-f", "berth-patch-ctr"]);
    runSync("docker", ["rmi", "-f", "berth-patch-test:1"]);
  });

  /** Starts a target; returns its PID and a reader of its latest output line. */
  function start(prog: string, threads: number | string = 0) {
    const out = join(dir, `${prog}-${children.length}.out`);
    const child = spawn(join(dir, prog), [String(threads)], {
      stdio: ["ignore", openSync(out, "w"), "ignore"],
    });
    children.push(child);
    const last = () => readFileSync(out, "utf8").trim().split("\n").pop() ?? "";
    return { pid: child.pid!, child, last, out };
  }

  async function expectLine(last: () => string, want: string | RegExp): Promise<string> {
    for (let i = 0; i < 150; i++) {
      const l = last();
      if (typeof want === "string" ? l === want : want.test(l)) return l;
      await sleep(20);
    }
    assert.match(last(), typeof want === "string" ? new RegExp(`^${want}$`) : want);
    return last();
  }

  const libArgs = (cmd: string, pid: number, lib: string, extra: string[] = []) => [
    "patch",
    "lib",
    cmd,
    "--new",
    join(dir, lib),
    "--pid",
    String(pid),
    "--state",
    state,
    ...extra,
  ];
  // Most steps call the library in this process (one Node start instead of dozens); the CLI is run as a
  // user would where its own behaviour is checked (plan output, refusals, exit codes, one-line errors).
  let h: PtraceHelper;
  const ok = async (work: () => Promise<unknown>) => {
    try {
      await work();
      return { code: 0, stderr: "" };
    } catch (e) {
      return { code: 1, stderr: (e as Error).message };
    }
  };
  const apply = (pid: number, lib: string) =>
    ok(() => applyPatch(h, pid, { newPath: join(dir, lib), stateDir: state }));
  const plan = (pid: number, lib: string): Promise<Plan> =>
    planProcess(pid, join(dir, lib), { stateDir: state });
  const rollback = (pid: number) => ok(() => rollbackPatch(h, pid, { stateDir: state }));

  /** The bytes of the library's code in the process, through /proc/PID/mem. */
  const text = (pid: number, path: string) => mappedCode(pid, path).toString("hex");
  /** Mappings of patch images (the new builds staged under the state directory). */
  const images = (pid: number) => readMaps(pid).filter((m) => m.path.includes(`${state}/libs/`));
  /** The executable ones, by the permissions field (the patcher's own maps parser): searching the whole
   * line for an "x" also matched the temp directory's random name, and a kept constants page failed. */
  const imageCode = (pid: number) => images(pid).filter((m) => m.perms.includes("x"));

  test("the CLI: plan redirects only the changed functions, apply switches, status, rollback", async () => {
    const t = start("prog-lazy");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const planned = await berth([...libArgs("plan", t.pid, "libdemo-v2.so"), "--json"]);
    assert.equal(planned.code, 0, planned.stderr);
    const p = (JSON.parse(planned.stdout) as { plans: Plan[] }).plans[0]!;
    assert.equal(p.state, "ready");
    assert.deepEqual(p.redirected.map((r) => r.name).sort(), ["demo_add", "demo_greet", "demo_version"]);
    assert.ok(p.redirected.every((r) => r.method === "jump at entry"));
    assert.ok(p.identical > 0, "the C runtime's functions are the same in both builds");
    // Nothing was touched: no image, the same code.
    assert.deepEqual(images(t.pid), []);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const a = await berth([...libArgs("apply", t.pid, "libdemo-v2.so"), "--json"]);
    assert.equal(a.code, 0, a.stderr);
    const summary = JSON.parse(a.stdout) as {
      patched: { pid: number; functions: number; redirected: number }[];
    };
    assert.deepEqual(
      summary.patched.map((x) => [x.pid, x.functions, x.redirected]),
      [[t.pid, 3, 3]],
    );
    // The function pointer taken before the patch follows too (it points at the old entry).
    await expectLine(t.last, "2 greet-v2 greet-v2 2000");
    const status = JSON.parse(
      (await berth(["patch", "lib", "status", "--json", "--state", state])).stdout,
    ) as {
      pid: number;
      layers: unknown[];
    }[];
    assert.deepEqual(
      status.map((x) => [x.pid, x.layers.length]),
      [[t.pid, 1]],
    );
    const rb = await berth(["patch", "lib", "rollback", "--pid", String(t.pid), "--state", state, "--json"]);
    assert.equal(rb.code, 0, rb.stderr);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    t.child.kill("SIGKILL");
  });

  test("a library with state: counter, table, mutex and handed-out pointer continue across v1 -> v2 -> v1", async () => {
    const t = start("stateprog");
    const before1 = await expectLine(t.last, /^v1 \d+ \d+ owned \d+$/);
    const p = await plan(t.pid, "libstate-v2.so");
    // The internal function scale() and the exported state_version() changed; the state's owners did not.
    assert.equal(p.redirected.length, 2, JSON.stringify(p.redirected));
    assert.ok(p.redirected.some((r) => r.name === "state_version"));
    assert.ok(p.redirected.some((r) => r.name.startsWith("internal function")));
    const a = await apply(t.pid, "libstate-v2.so");
    assert.equal(a.code, 0, a.stderr);
    const line2 = await expectLine(t.last, /^v2 \d+ \d+ owned \d+$/);
    const [, n1] = before1.split(" ");
    const [, n2, scaled2, , p2] = line2.split(" ");
    // The counter went on from where it was (a second copy of the library would have started at 1),
    // the table holds v2's scale (x3), and the pointer handed out by v1 still counts.
    assert.ok(Number(n2) > Number(n1), `${n2} after ${n1}`);
    assert.equal(Number(scaled2), Number(n2) * 3);
    assert.equal(p2, n2);
    const r = await rollback(t.pid);
    assert.equal(r.code, 0, r.stderr);
    const line3 = await expectLine(t.last, /^v1 \d+ \d+ owned \d+$/);
    const [, n3, scaled3] = line3.split(" ");
    assert.ok(Number(n3) > Number(n2));
    assert.equal(Number(scaled3), Number(n3) * 2);
    assert.equal(t.child.exitCode, null);
    t.child.kill("SIGKILL");
  });

  test("full RELRO: v1 -> v2 -> v3 and back, the library's code restored byte for byte, patch memory unmapped", async () => {
    const t = start("prog-now");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const path = join(dir, "lib/libdemo.so.1");
    const original = text(t.pid, path);
    for (const [lib, want] of [
      ["libdemo-v2.so", "2 greet-v2 greet-v2 2000"],
      ["libdemo-v3.so", "3 greet-v3 greet-v3 3000"],
    ] as const) {
      const r = await apply(t.pid, lib);
      assert.equal(r.code, 0, r.stderr);
      await expectLine(t.last, want);
    }
    assert.ok(imageCode(t.pid).some((m) => m.path.includes("libdemo-v3.so")));
    assert.equal((await rollback(t.pid)).code, 0);
    await expectLine(t.last, "2 greet-v2 greet-v2 2000");
    assert.ok(!imageCode(t.pid).some((m) => m.path.includes("libdemo-v3.so")), "v3's code is still mapped");
    assert.equal((await rollback(t.pid)).code, 0);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    assert.equal(text(t.pid, path), original, "the old library's code differs after rolling everything back");
    // Only read-only pages holding constants the patched code introduced may stay (never code).
    assert.deepEqual(imageCode(t.pid), []);
    const none = await rollback(t.pid);
    assert.equal(none.code, 1);
    t.child.kill("SIGKILL");
  });

  test("functions too small for a jump: a short jump into the padding, or the callers' GOT entries", async () => {
    for (const [prog, lib, method] of [
      ["tiny-pad", "libdemo-pad-v2.so", "short jump into padding + jump"],
      ["tiny-packed", "libdemo-packed-v2.so", "GOT entries of the callers"],
    ] as const) {
      const t = start(prog);
      await expectLine(t.last, "11");
      const p = await plan(t.pid, lib);
      assert.equal(p.state, "ready", p.refusals.join("; "));
      assert.equal(p.redirected.find((r) => r.name === "demo_two")?.method, method);
      // The one-byte demo_tiny is the same in both builds: it needs no jump at all.
      assert.ok(!p.redirected.some((r) => r.name === "demo_tiny"));
      const a = await apply(t.pid, lib);
      assert.equal(a.code, 0, a.stderr);
      await expectLine(t.last, "12");
      assert.equal((await rollback(t.pid)).code, 0);
      await expectLine(t.last, "11");
      t.child.kill("SIGKILL");
    }
  });

  test("the switch waits while a thread has a frame in a function being replaced, and names it", async () => {
    const fifo = join(dir, "fifo");
    assert.equal(runSync("mkfifo", [fifo]).code, 0);
    const t = start("waitprog", fifo);
    await expectLine(t.last, "1");
    // The waiting thread is in open(2), called from demo_wait: demo_wait is on its stack, under libc.
    const r = await ok(() =>
      applyPatch(h, t.pid, { newPath: join(dir, "libdemo-wait-v2.so"), stateDir: state, attempts: 3 }),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /keeps a thread inside the code to switch \(thread \d+ in demo_wait\)/);
    assert.deepEqual(images(t.pid), [], "patch memory left behind by a refused switch");
    await sleep(100);
    assert.equal(t.last(), "1");
    // Once the thread has left demo_wait (it returns v1's answer), the switch goes through.
    writeFileSync(fifo, "x");
    await expectLine(t.last, /^(waited 11|1)$/);
    for (let i = 0; i < 50 && !readFileSync(t.out, "utf8").includes("waited 11"); i++) await sleep(20);
    const a = await apply(t.pid, "libdemo-wait-v2.so");
    assert.equal(a.code, 0, a.stderr);
    await expectLine(t.last, "2");
    assert.equal((await rollback(t.pid)).code, 0);
    await expectLine(t.last, "1");
    t.child.kill("SIGKILL");
  });

  test("a busy multi-threaded process survives 200 apply/rollback cycles", async () => {
    const t = start("prog-now", 3);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const pauses: number[] = [];
    for (let i = 0; i < 200; i++) {
      pauses.push(
        (await applyPatch(h, t.pid, { newPath: join(dir, "libdemo-v2.so"), stateDir: state })).pauseNs,
      );
      pauses.push((await rollbackPatch(h, t.pid, { stateDir: state })).pauseNs);
    }
    assert.equal(t.child.exitCode, null, "the target died");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    assert.deepEqual(imageCode(t.pid), [], "patch code left mapped");
    pauses.sort((a, b) => a - b);
    process.stderr.write(
      `# pause over ${pauses.length} operations: p50 ${(pauses[pauses.length >> 1]! / 1e6).toFixed(2)} ms, p99 ${(pauses[Math.floor(pauses.length * 0.99)]! / 1e6).toFixed(2)} ms\n`,
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
    assert.equal(a.code, 0, a.stderr);
    await expectLine(last, "2 greet-v2 greet-v2 2000");
    // The new build was staged inside the container's own root, where the process could open it.
    assert.match(
      readFileSync(`/proc/${pid}/maps`, "utf8"),
      /\/tmp\/berth-patch\/[0-9a-f]{16}-libdemo-v2\.so/,
    );
    assert.equal((await rollback(pid)).code, 0);
    await expectLine(last, "1 greet-v1 greet-v1 1000");
  });

  test("refusals: a missing export, another symbol version, a target that exits, no root, bad usage", async () => {
    const t = start("prog-lazy");
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");
    const before1 = text(t.pid, join(dir, "lib/libdemo.so.1"));
    const missing = await berth(libArgs("apply", t.pid, "libdemo-missing.so"));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /demo_add is exported by the old build and missing from the new one/);
    const ver = await berth(libArgs("apply", t.pid, "libdemo-badver.so"));
    assert.equal(ver.code, 1);
    assert.match(ver.stderr, /version DEMO_1\.0 in the old build and DEMO_2\.0 in the new/);
    const planned = await berth([...libArgs("plan", t.pid, "libdemo-badver.so")]);
    assert.equal(planned.code, 1);
    assert.match(planned.stdout, /refused/);
    // Refused before anything was written: the same code, no patch memory.
    assert.equal(text(t.pid, join(dir, "lib/libdemo.so.1")), before1);
    assert.deepEqual(images(t.pid), []);
    await expectLine(t.last, "1 greet-v1 greet-v1 1000");

    // The target is killed after its image is mapped, before the switch: nothing is recorded.
    const exits = await berth(libArgs("apply", t.pid, "libdemo-v2.so"), {
      env: { BERTH_PATCH_KILL_TARGET: "1" },
    });
    assert.equal(exits.code, 1);
    assert.ok(isOneLineError(exits.stderr.trim().split("\n").pop()!), exits.stderr);
    const status = JSON.parse(
      (await berth(["patch", "lib", "status", "--json", "--state", state])).stdout,
    ) as {
      pid: number;
    }[];
    assert.ok(!status.some((s) => s.pid === t.pid), "a dead process kept a journal");

    // Berth itself is killed after the journal, before the switch: the process runs on unchanged, and
    // rollback takes the layer back by unmapping its memory.
    const victim = start("prog-lazy");
    await expectLine(victim.last, "1 greet-v1 greet-v1 1000");
    const killed = await berth(libArgs("apply", victim.pid, "libdemo-v2.so"), {
      env: { BERTH_PATCH_KILL_BERTH: "1" },
    });
    assert.notEqual(killed.code, 0);
    assert.ok(images(victim.pid).length > 0, "the image was not mapped before the kill");
    await expectLine(victim.last, "1 greet-v1 greet-v1 1000");
    const back = await berth(["patch", "lib", "rollback", "--pid", String(victim.pid), "--state", state]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(imageCode(victim.pid), []);
    await expectLine(victim.last, "1 greet-v1 greet-v1 1000");
    victim.child.kill("SIGKILL");

    const other = start("prog-lazy");
    await expectLine(other.last, "1 greet-v1 greet-v1 1000");
    // An unprivileged user that can still read the checkout (a clone may sit in a 0700 temp directory).
    const asNobody = [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--inh-caps=+dac_read_search",
      "--ambient-caps=+dac_read_search",
      join(ROOT, "bin/berth"),
    ];
    const nobody = await run("setpriv", [...asNobody, ...libArgs("apply", other.pid, "libdemo-v2.so")]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /needs root/);
    const usage = await berth(
      libArgs("apply", other.pid, "libdemo-v2.so").filter((x) => x !== "--pid" && x !== String(other.pid)),
    );
    assert.equal(usage.code, 2);
    assert.ok(isOneLineError(usage.stderr), usage.stderr);
    const both = await berth([
      ...libArgs("apply", other.pid, "libdemo-v2.so"),
      "--from-deb",
      join(dir, "x.deb"),
    ]);
    assert.equal(both.code, 2);
    assert.ok(isOneLineError(both.stderr), both.stderr);
    const notElf = await berth(libArgs("apply", other.pid, "demo.c"));
    assert.equal(notElf.code, 1);
    assert.ok(isOneLineError(notElf.stderr), notElf.stderr);
    await expectLine(other.last, "1 greet-v1 greet-v1 1000");
    other.child.kill("SIGKILL");
  });
});
