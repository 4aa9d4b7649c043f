// Kernel livepatching end to end: livepatch modules built by `berth patch kernel build` against
// Debian's trixie kernel headers, then that Debian kernel booted in QEMU (TCG) with a small initramfs
// that mounts this machine's root read-only over 9p and runs Berth's own commands inside the guest:
// load (the patched /proc/cmdline shows), replace with a cumulative patch, disable (the original
// comes back), status with the taint. Signing with a given key is checked on the built module.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { type CpioEntry, writeCpio } from "../../src/os/cpio.ts";
import { modinfo, moduleIsSigned } from "../../src/patch/klp.ts";
import { BERTH, berth, run, runSync, tempDir } from "../helpers.ts";

const PATCH = (text: string) => `#include <linux/seq_file.h>
static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
\tseq_printf(m, "%s\\n", "${text}");
\treturn 0;
}
`;

const PAUSE_PATCH = `#include <linux/sched/signal.h>
#include <linux/syscalls.h>
asmlinkage long livepatch___x64_sys_pause(const struct pt_regs *regs)
{
\twhile (!signal_pending(current)) {
\t\t__set_current_state(TASK_INTERRUPTIBLE);
\t\tschedule();
\t}
\treturn -ERESTARTNOHAND;
}
`;

describe("berth patch kernel", () => {
  const dir = tempDir("berth-patch-kernel-");
  let release = "";
  const build = (src: string, name: string, out: string, extra: string[] = []) =>
    berth([
      "patch",
      "kernel",
      "build",
      join(dir, src),
      "--kernel",
      release,
      "--name",
      name,
      "--out",
      out,
      ...extra,
    ]);

  before(async () => {
    const show = await berth(["pkg", "show", "linux-image-amd64", "--suite", "trixie", "--json", "-q"]);
    assert.equal(show.code, 0, show.stderr);
    release = /linux-image-(\S+)/.exec((JSON.parse(show.stdout) as { depends: string }[])[0]!.depends)![1]!;
    writeFileSync(join(dir, "v1.c"), PATCH("berth livepatch v1"));
    writeFileSync(join(dir, "v2.c"), PATCH("berth livepatch v2"));
    // A replacement for the pause(2) syscall, whose caller sleeps inside it: the transition must wait.
    writeFileSync(join(dir, "pause.c"), PAUSE_PATCH);
    writeFileSync(join(dir, "pauser.c"), "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n");
    const cc = runSync("gcc", ["-static", "-O2", "-o", join(dir, "pauser"), join(dir, "pauser.c")]);
    assert.equal(cc.code, 0, cc.stderr);
    for (const [src, name, extra] of [
      ["v1.c", "berth_lp1", []],
      ["v2.c", "berth_lp2", ["--replace"]],
      ["pause.c", "berth_lp_pause", []],
    ] as const) {
      const b = await build(src, name, dir, ["-q", ...extra]);
      assert.equal(b.code, 0, b.stderr);
    }
  });

  test("build: livepatch modules for the kernel, cumulative flag, and signing with a given key", async () => {
    const lp1 = readFileSync(join(dir, "berth_lp1.ko"));
    const info = modinfo(lp1);
    assert.equal(info.get("livepatch"), "Y");
    assert.equal(info.get("name"), "berth_lp1");
    assert.match(info.get("vermagic")!, new RegExp(`^${release.replace(/[.+]/g, "\\$&")} `));
    assert.equal(modinfo(readFileSync(join(dir, "berth_lp2.ko"))).get("berth_replace"), "Y");
    assert.equal(moduleIsSigned(lp1), false);
    const key = join(dir, "signing.key");
    const cert = join(dir, "signing.crt");
    const ssl = runSync("openssl", [
      "req",
      "-new",
      "-nodes",
      "-utf8",
      "-sha256",
      "-days",
      "1",
      "-batch",
      "-x509",
      "-subj",
      "/CN=berth test",
      "-keyout",
      key,
      "-out",
      cert,
    ]);
    assert.equal(ssl.code, 0, ssl.stderr);
    const signedDir = join(dir, "signed");
    const b = await build("v1.c", "berth_lp1", signedDir, ["--sign-key", key, "--sign-cert", cert, "-q"]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(moduleIsSigned(readFileSync(join(signedDir, "berth_lp1.ko"))), true);
    const bad = await build("v1.c", "Bad-Name", signedDir);
    assert.equal(bad.code, 2);
  });

  test("in a booted Debian kernel: load, replace with a cumulative patch, disable; a task asleep in the patched function is named", async () => {
    // The kernel and the 9p modules from the Debian package; busybox for the initramfs.
    const pkgs = join(dir, "pkgs");
    mkdirSync(pkgs);
    for (const p of [`linux-image-${release}`, "busybox-static"]) {
      const d = await berth(["pkg", "download", p, "--suite", "trixie", "--dest", pkgs, "-q"]);
      assert.equal(d.code, 0, d.stderr);
    }
    const debs = readdirSync(pkgs);
    const kdir = join(dir, "kernel");
    const bdir = join(dir, "busybox");
    for (const [deb, to] of [
      [debs.find((f) => f.startsWith("linux-image"))!, kdir],
      [debs.find((f) => f.startsWith("busybox"))!, bdir],
    ] as const) {
      const x = await berth(["pkg", "deb", "extract", join(pkgs, deb), to, "-q"]);
      assert.equal(x.code, 0, x.stderr);
    }
    const mods = join(kdir, "usr/lib/modules", release, "kernel");
    const order = ["fs/netfs/netfs.ko", "net/9p/9pnet.ko", "net/9p/9pnet_virtio.ko", "fs/9p/9p.ko"];
    const files: CpioEntry[] = [
      { path: "bin", type: "directory", mode: 0o755 },
      { path: "lib", type: "directory", mode: 0o755 },
      { path: "bin/busybox", type: "file", mode: 0o755, data: readFileSync(join(bdir, "usr/bin/busybox")) },
      { path: "bin/sh", type: "symlink", mode: 0o777, target: "busybox" },
    ];
    for (const m of order) {
      // Debian compresses modules with xz; busybox insmod wants them plain.
      const r = spawnSync("xz", ["-dc", join(mods, `${m}.xz`)], { maxBuffer: 1 << 28 });
      assert.equal(r.status, 0, `${m}: ${r.stderr}`);
      files.push({ path: `lib/${m.split("/").pop()}`, type: "file", mode: 0o644, data: r.stdout });
    }
    const guest = join(dir, "guest.sh");
    writeFileSync(
      guest,
      `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/run BERTH_CACHE=/run/cache TMPDIR=/run
B=${BERTH}
# Results go to the second serial port (a file on the host), away from kernel messages on the console.
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
j() { "$B" "$@" --json 2>&1 | tr -d '\\n'; echo; }
echo >&3 "CMDLINE0:$(cat /proc/cmdline)"
echo >&3 "LOAD:$(j patch kernel load ${dir}/berth_lp1.ko)"
echo >&3 "CMDLINE1:$(cat /proc/cmdline)"
echo >&3 "REPLACE:$(j patch kernel replace ${dir}/berth_lp2.ko)"
echo >&3 "CMDLINE2:$(cat /proc/cmdline)"
echo >&3 "STATUS2:$(j patch kernel status)"
echo >&3 "NOTREPLACE:$(j patch kernel replace ${dir}/berth_lp1.ko)"
echo >&3 "DISABLE:$(j patch kernel disable berth_lp2 --remove)"
echo >&3 "CMDLINE3:$(cat /proc/cmdline)"
echo >&3 "STATUS3:$(j patch kernel status)"
${dir}/pauser &
P=$!
sleep 1
echo >&3 "BLOCKED:$("$B" patch kernel load ${dir}/berth_lp_pause.ko --timeout 3 2>&1 | tr -d '\\n')"
kill $P
for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(cat /sys/kernel/livepatch/berth_lp_pause/transition)" = 0 ] && break; sleep 1; done
echo >&3 "UNBLOCKED:$(j patch kernel status)"
echo >&3 BERTH-GUEST-DONE
`,
    );
    chmodSync(guest, 0o755);
    const init = `#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /host
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in ${order.map((m) => m.split("/").pop()).join(" ")}; do $B insmod /lib/$m || echo "insmod $m failed"; done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || echo "9p mount failed"
$B mount -t proc proc /host/proc
$B mount -t sysfs sysfs /host/sys
$B mount -t devtmpfs devtmpfs /host/dev
# The host's root is read-only here; /run is the guest's scratch space (the test's files stay in /tmp).
$B mount -t tmpfs tmpfs /host/run
$B chroot /host ${guest}
$B poweroff -f
`;
    files.push({ path: "init", type: "file", mode: 0o755, data: Buffer.from(init) });
    const initrd = join(dir, "initrd.gz");
    writeFileSync(initrd, gzipSync(writeCpio(files, 0)));
    const qemu = await run("timeout", [
      "900",
      "qemu-system-x86_64",
      "-accel",
      "tcg",
      "-m",
      "2048",
      "-smp",
      "1",
      "-nographic",
      "-no-reboot",
      "-kernel",
      join(kdir, "boot", `vmlinuz-${release}`),
      "-initrd",
      initrd,
      "-append",
      "console=ttyS0 panic=-1 quiet loglevel=1 berth-original-cmdline",
      "-serial",
      "mon:stdio",
      "-serial",
      `file:${join(dir, "results.txt")}`,
      "-virtfs",
      "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    ]);
    const consoleText = qemu.stdout.replace(/\r/g, "");
    const out = readFileSync(join(dir, "results.txt"), "utf8").replace(/\r/g, "");
    const line = (k: string) =>
      new RegExp(`^${k}:(.*)$`, "m").exec(out)?.[1] ??
      assert.fail(`no ${k} line in the guest output:\n${out}\n${consoleText.slice(-3000)}`);
    const json = <T>(k: string): T => {
      const v = line(k);
      try {
        return JSON.parse(v) as T;
      } catch {
        return assert.fail(`${k}: ${v}`);
      }
    };
    assert.match(out, /BERTH-GUEST-DONE/, `${out}\n${consoleText.slice(-3000)}`);
    assert.match(line("CMDLINE0"), /berth-original-cmdline/);
    const load = json<{
      name: string;
      enabled: boolean;
      functions: string[];
      taint: { flags: string[] };
    }>("LOAD");
    assert.equal(load.name, "berth_lp1");
    assert.deepEqual(load.functions, ["vmlinux:cmdline_proc_show"]);
    assert.ok(
      load.taint.flags.some((f) => f.startsWith("K:")),
      "kernel not tainted K after a livepatch",
    );
    assert.equal(line("CMDLINE1"), "berth livepatch v1");
    assert.equal(json<{ name: string }>("REPLACE").name, "berth_lp2");
    assert.equal(line("CMDLINE2"), "berth livepatch v2");
    const status2 = json<{ patches: { name: string; enabled: boolean }[] }>("STATUS2");
    assert.deepEqual(
      status2.patches.map((p) => [p.name, p.enabled]),
      [["berth_lp2", true]],
      "the cumulative patch did not replace the first",
    );
    assert.match(line("NOTREPLACE"), /not a cumulative patch/);
    assert.match(line("CMDLINE3"), /berth-original-cmdline/);
    assert.deepEqual(json<{ patches: unknown[] }>("STATUS3").patches, []);
    // A task asleep inside the patched syscall holds the transition up, and is named.
    assert.match(
      line("BLOCKED"),
      /transition not finished after 3 s; blocked by pauser\[\d+\] in __(do|x64)_sys_pause/,
    );
    const unblocked = json<{ patches: { name: string; enabled: boolean; transition: boolean }[] }>(
      "UNBLOCKED",
    );
    assert.deepEqual(
      unblocked.patches.map((p) => [p.name, p.enabled, p.transition]),
      [["berth_lp_pause", true, false]],
      "the transition did not finish once the task left pause()",
    );
  });
});
