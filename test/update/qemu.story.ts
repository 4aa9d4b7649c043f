// The A/B update story on one Berth node under QEMU (UEFI firmware, systemd-boot, TCG), release by
// release from a signed loopback repository the guest reaches at 10.0.2.2 (test/shared/os-releases.ts,
// test/update/releases.ts). The guest's own tools are the oracles: /usr/lib/berth/release, dpkg-query,
// sysctl, docker inspect, bootctl, and the serial console, where the initramfs, berth-update-boot and
// berth-health say what each boot did. The steps run in order on the same disk, as a node lives:
//   v1 -> v2 (state, containers and /etc carried; v2's difference visible; blessed good)
//   v3 fails its health check -> back on v2 by itself, v3 bad, its /etc migration undone
//   v4 cannot mount a root -> its tries run out, back on v2 by itself
//   a tampered root image is refused before the slot is touched
//   an apply killed in the slot write leaves v2 the only entry; a second apply completes
//   a byte flipped in the written slot -> dm-verity refuses it, back on v2 by itself
//   waves: one node's seed is in the open wave, the other's is held until the next
// Eight boots under TCG: about 20 minutes.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cp } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BackgroundVm, guestSshArgs, startVm } from "../../src/os/qemu.ts";
import { type ServedRepository, serveRepository } from "../../src/repo/serve.ts";
import type { UpdateStatus } from "../../src/update/status.ts";
import { berth, run, tempDir } from "../helpers.ts";
import {
  releaseRepository,
  releaseSshKey,
  releaseV1,
  releaseV2,
  V1,
  V2,
  V2_EXTRA_PACKAGE,
  V2_MIGRATION,
  V2_SYSCTL,
} from "../shared/os-releases.ts";
import { buildV3, deriveRelease, V3, V3_MIGRATION, V4, V5 } from "./releases.ts";

const MINUTE = 60_000;
const re = (s: string) => new RegExp(s.replace(/\./g, "\\."));
const healthy = (v: string) => re(`berth-health: release ${v} is healthy`);

describe("berth update on a Berth node under QEMU (UEFI, TCG)", () => {
  let vm: BackgroundVm;
  let key: string;
  let served: ServedRepository;
  let repo: string;
  let guestUrl: string;
  const dir = tempDir("berth-update-qemu-");
  const lines: string[] = [];

  const ssh = (command: string, timeout = 900) =>
    run("timeout", [String(timeout), "ssh", ...guestSshArgs(vm.sshPort, key, command)]);
  const sudoOk = async (command: string, timeout = 900) => {
    const r = await ssh(`sudo sh -c '${command.replace(/'/g, `'\\''`)}'`, timeout);
    assert.equal(r.code, 0, `${command}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const status = async () => JSON.parse(await sudoOk("berth update status --json")) as UpdateStatus;
  /** The first console line matching `pattern` printed after line `from`. */
  const lineAfter = async (from: number, pattern: RegExp, ms = 15 * MINUTE): Promise<number> => {
    const t0 = Date.now();
    for (;;) {
      const i = lines.findIndex((l, n) => n >= from && pattern.test(l));
      if (i >= 0) return i;
      if (Date.now() - t0 > ms)
        throw new Error(
          `no console line ${pattern} within ${ms / 1000} s; last: ${lines.slice(-8).join(" | ")}`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  /**
   * Runs a command that reboots the guest, and returns once `pattern` shows on the console. ssh is not
   * used again before that: QEMU's user network stalls the guest while a forwarded connection waits for
   * a listener that is not up yet.
   */
  const rebootWith = async (command: string, pattern: RegExp, ms = 15 * MINUTE) => {
    const from = lines.length;
    const r = ssh(`sudo ${command}`, 900);
    const at = await lineAfter(from, pattern, ms);
    await r;
    return { from, at };
  };
  const slot = (s: UpdateStatus, which: "a" | "b") => s.slots.find((x) => x.slot === which)!;
  /** Polls until systemd-bless-boot has dropped the counter (it runs after boot-complete.target). */
  const goodOn = async (which: "a" | "b") => {
    for (let i = 0; ; i++) {
      const s = await status();
      if (slot(s, which).state === "good") return s;
      if (i > 60) assert.fail(`slot ${which} is not good: ${JSON.stringify(s.slots)}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  /** Kernels started since console line `from` (the kernel's banner). */
  const boots = (from: number) => lines.slice(from).filter((l) => /Linux version \d/.test(l)).length;
  const partition = (name: string) =>
    `$(for d in /sys/class/block/*; do grep -qx PARTNAME=${name} $d/uevent && echo /dev/\${d##*/}; done)`;

  before(async () => {
    const [k, v1, v2, v3, published] = await Promise.all([
      releaseSshKey(),
      releaseV1(),
      releaseV2(),
      buildV3(),
      releaseRepository(),
    ]);
    key = k;
    // A repository of this file's own: the shared one with v3, v4 and v5 added (same keys, so the
    // images trust it), served on a port of its own.
    repo = join(dir, "repo");
    await cp(published.dir, repo, { recursive: true });
    const v4 = await deriveRelease(dir, V4, { breakInitramfs: true });
    const v5 = await deriveRelease(dir, V5, {});
    const now = Date.now();
    const waves = [
      `--wave=${new Date(now - 3600_000).toISOString()}=10`,
      `--wave=${new Date(now + 30 * 86400_000).toISOString()}=100`,
    ];
    for (const [out, extra] of [
      [v3, []],
      [v4, []],
      [v5, waves],
    ] as const) {
      const r = await berth(["repo", "add", repo, "os-release", out, ...extra, "-q"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const p = await berth(["repo", "publish", repo, "-q"]);
    assert.equal(p.code, 0, p.stderr);
    served = await serveRepository(join(repo, "repository"), "127.0.0.1", 0);
    guestUrl = `http://10.0.2.2:${new URL(served.url).port}/`;
    vm = await startVm({ image: v1, firmware: "uefi", reboot: true, onLine: (l) => lines.push(l) });
    await lineAfter(0, healthy(V1));
    // The node's own setting for the address (it outlives updates in the /etc upper layer).
    await sudoOk(`mkdir -p /etc/berth && echo REPOSITORY=${guestUrl} > /etc/berth/update.conf`);
    assert.match(readFileSync(join(v2, "manifest.json"), "utf8"), re(V2));
  });
  after(async () => {
    await vm?.stop();
    await served?.close();
  });

  test("v1 -> v2: /var, a restart-always container and /etc carry over; v2's difference shows; good", async () => {
    const s1 = await status();
    assert.equal(s1.booted.release, V1);
    assert.equal(slot(s1, "b").state, "empty");
    await sudoOk("echo kept-across-updates > /var/lib/story.txt; echo mine > /etc/story.conf");
    await sudoOk("docker run -d --name keeper --restart always berth/busybox:latest sleep 1000000");
    assert.notEqual((await ssh("command -v tree")).code, 0, "v1 has no tree");
    const check = JSON.parse(await sudoOk("berth update check --json")) as { available: boolean };
    assert.ok(check.available, "a newer release is available");

    await rebootWith(`berth update apply --version ${V2} --reboot`, healthy(V2));
    assert.match(await sudoOk("cat /usr/lib/berth/release"), re(`BERTH_RELEASE=${V2}`));
    assert.match(await sudoOk(`dpkg-query -W -f='\${Status}' ${V2_EXTRA_PACKAGE}`), /install ok installed/);
    assert.equal((await sudoOk(`sysctl -n ${V2_SYSCTL.key}`)).trim(), V2_SYSCTL.value);
    assert.equal((await sudoOk("cat /var/lib/story.txt")).trim(), "kept-across-updates");
    assert.equal((await sudoOk("cat /etc/story.conf")).trim(), "mine");
    assert.match(await sudoOk("cat /etc/docker/daemon.json"), /"max-size": "20m"/, V2_MIGRATION);
    for (let i = 0; ; i++) {
      const state = (await sudoOk("docker inspect -f '{{.State.Running}}' keeper")).trim();
      if (state === "true") break;
      if (i > 30) assert.fail(`the restart-always container is not running again: ${state}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    const s2 = await goodOn("b");
    assert.deepEqual(s2.booted, { slot: "b", release: V2 });
    assert.equal(slot(s2, "a").release, V1);
    assert.equal(slot(s2, "a").state, "good");
    assert.equal(s2.lastAttempt?.version, V2);
    assert.equal(s2.lastAttempt?.result, "good");
  });

  test("v3 fails its health check: one boot, then back on v2 by itself, v3 bad and its migration undone", async () => {
    const { from } = await rebootWith(
      `berth update apply --version ${V3} --reboot`,
      healthy(V2),
      25 * MINUTE,
    );
    const seen = lines.slice(from).join("\n");
    assert.match(seen, re(`berth-update: migration ${V3_MIGRATION} applied`));
    assert.match(seen, re(`berth-health: release ${V3} failed its health check`));
    assert.match(seen, re(`berth-update: migration ${V3_MIGRATION} undone`));
    assert.equal(boots(from), 2, "v3 booted once, then v2");
    const s = await status();
    assert.deepEqual(s.booted, { slot: "b", release: V2 });
    assert.equal(slot(s, "a").release, V3);
    assert.equal(slot(s, "a").state, "bad");
    assert.ok(s.bad.includes(V3), JSON.stringify(s.bad));
    assert.equal(s.lastAttempt?.result, "bad");
    assert.doesNotMatch(await sudoOk("cat /etc/motd 2>/dev/null || true"), re(`Berth ${V3}`));
    const again = await ssh(`sudo berth update apply --version ${V3}`);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /bad|failed/);
  });

  test("v4 cannot mount a root: its tries run out and the node is back on v2 by itself", async () => {
    const { from } = await rebootWith(
      `berth update apply --version ${V4} --reboot`,
      healthy(V2),
      25 * MINUTE,
    );
    const seen = lines.slice(from).join("\n");
    assert.match(seen, /Kernel panic|berth-initramfs: FATAL/);
    assert.equal(boots(from), 4, "v4 used its three tries, then v2 booted");
    assert.match(seen, re(`berth-update: release ${V4} did not come up; back on ${V2}, ${V4} marked bad`));
    const s = await status();
    assert.deepEqual(s.booted, { slot: "b", release: V2 });
    assert.equal(slot(s, "a").state, "bad");
    assert.ok(s.bad.includes(V4) && s.bad.includes(V3), JSON.stringify(s.bad));
    // Neither is offered again: the newest choice skips both.
    const check = JSON.parse(await sudoOk("berth update check --ignore-waves --json")) as {
      version?: string;
      skipped: { version: string; why: string }[];
    };
    assert.equal(check.version, V5);
    assert.ok(
      check.skipped.some((x) => x.version === V4 && /bad/.test(x.why)),
      JSON.stringify(check.skipped),
    );
  });

  test("a tampered root image in the repository is refused before anything is written to the slot", async () => {
    const slotHash = () => sudoOk(`head -c 64M ${partition("berth-root-a")} | sha256sum`);
    const before = await slotHash();
    const entries = await sudoOk("ls /efi/loader/entries");
    const stored = join(repo, "repository/targets/os", V1);
    const file = join(stored, readdirSync(stored).find((f) => f.endsWith(".root.squashfs"))!);
    const original = readFileSync(file);
    const bad = Buffer.from(original);
    bad[bad.length >> 1]! ^= 0xff;
    writeFileSync(file, bad);
    try {
      const r = await ssh(`sudo berth update apply --version ${V1} --allow-downgrade`);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /root\.squashfs/);
    } finally {
      writeFileSync(file, original);
    }
    assert.equal(await slotHash(), before, "the slot was not touched");
    assert.equal(await sudoOk("ls /efi/loader/entries"), entries);
  });

  test("an apply killed in the slot write leaves v2 the only boot entry; a second apply completes", async () => {
    await sudoOk(
      `berth update apply --version ${V1} --allow-downgrade >/run/apply.log 2>&1 & echo $! > /run/apply.pid`,
    );
    // Kill it once the slot write has begun (the write is noted before the first byte).
    for (let i = 0; ; i++) {
      const r = await ssh("sudo test -e /var/lib/berth/update/writing");
      if (r.code === 0) break;
      if (i > 300) assert.fail(`the slot write did not start: ${await sudoOk("cat /run/apply.log")}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await new Promise((r) => setTimeout(r, 1500));
    await sudoOk("kill -9 $(cat /run/apply.pid)");
    const s = await status();
    assert.equal(slot(s, "a").state, "incomplete");
    assert.equal(slot(s, "b").next, true);
    // systemd's own view of what the loader will boot.
    const list = await sudoOk("bootctl list --no-pager");
    assert.match(list, re(`id: berth-${V2}.conf`));
    assert.doesNotMatch(list, /id: berth-2026\.12\.[134]/);

    await sudoOk(`berth update apply --version ${V1} --allow-downgrade --tries 1`);
    const done = await status();
    assert.equal(slot(done, "a").release, V1);
    assert.equal(slot(done, "a").state, "trying");
    assert.equal(slot(done, "a").next, true);
  });

  test("a byte flipped in the written slot: dm-verity refuses it and the node is back on v2 by itself", async () => {
    // Byte 100 of the slot is in its first 4 KiB block, which holds the squashfs superblock: every mount
    // reads it, and dm-verity checks the block as a whole.
    await sudoOk(
      `dev=${partition("berth-root-a")}; b=$(dd if=$dev bs=1 skip=100 count=1 status=none | od -An -tu1); ` +
        `printf "\\\\$(printf %o $(( (b + 1) % 256 )))" | dd of=$dev bs=1 seek=100 conv=notrunc,fsync status=none`,
    );
    const { from } = await rebootWith("systemctl reboot", healthy(V2), 25 * MINUTE);
    const seen = lines.slice(from).join("\n");
    assert.match(seen, /berth-initramfs: FATAL|device-mapper: verity/);
    assert.match(seen, re(`berth-update: release ${V1} did not come up; back on ${V2}, ${V1} marked bad`));
    const s = await status();
    assert.deepEqual(s.booted, { slot: "b", release: V2 });
    assert.equal(slot(s, "a").state, "bad");
    const back = await ssh("sudo berth update rollback");
    assert.notEqual(back.code, 0, "rolling back onto a bad release needs --force");
  });

  test("waves: the node whose seed the open wave covers takes v5, the other is held until its wave", async () => {
    const check = async (seed: number) => {
      await sudoOk(`echo ${seed} > /var/lib/berth/update/seed`);
      return JSON.parse(await sudoOk("berth update check --json")) as {
        seed: number;
        available: boolean;
        version?: string;
        skipped: { version: string; why: string; opensAt?: string }[];
      };
    };
    // 10% of 2048 seeds: 0..204 are in the first wave.
    const early = await check(7);
    assert.equal(early.seed, 7);
    assert.equal(early.version, V5);
    const late = await check(2000);
    assert.equal(late.seed, 2000);
    assert.equal(late.available, false);
    const held = late.skipped.find((x) => x.version === V5);
    assert.ok(held?.opensAt, JSON.stringify(late.skipped));
    assert.ok(Date.parse(held.opensAt) > Date.now());
    const ignored = JSON.parse(await sudoOk("berth update check --ignore-waves --json")) as {
      version?: string;
    };
    assert.equal(ignored.version, V5);
  });
});
