// A/B update benchmarks, each beside a peer measured in the same run:
//  1. Download, write and verify: what `berth update apply` does with a release's root image and hash
//     tree (TUF-verified download from a loopback repository, write into a block device, fsync, page
//     cache dropped, every byte read back and hashed) against curl + dd (conv=fsync) + blockdev
//     --flushbufs + sha256sum of the same bytes into the same device (a loop device on this host).
//  2. Reboot to good under TCG (UEFI, 1 vCPU): from `berth update apply --reboot` returning to the new
//     release blessed good, against a normal boot of the same image to its health check; the goal is
//     at most the normal boot plus 10 s.
//  3. Bytes a node downloads for a release that differs from the installed one by one package (v2 and
//     v2 plus one more package), against the full root image: Berth sends full images (no deltas).
//
// Uses the shared release fixtures (built if they are not in this run's shared directory).

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { run } from "../src/common/exec.ts";
import { sha256File } from "../src/common/hash.ts";
import type { Manifest } from "../src/os/manifest.ts";
import { guestSshArgs, startVm } from "../src/os/qemu.ts";
import { RepoClient } from "../src/repo/client.ts";
import { serveRepository } from "../src/repo/serve.ts";
import { writeSlot } from "../src/update/slots.ts";
import { releaseRepository, releaseSshKey, releaseV1, releaseV2, V2 } from "../test/shared/os-releases.ts";
import { printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const work = await mkdtemp(join(tmpdir(), "berth-bench-update-"));

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.slice(-500)}`);
  return r.stdout;
}
/**
 * The same, without blocking the event loop: the repository is served from this process, so a peer
 * command that fetches from it must not be run synchronously (curl waited forever on a server that
 * could not answer).
 */
async function shAsync(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.slice(-500)}`);
  return r.stdout;
}
const seconds = async (f: () => Promise<unknown>) => {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
};

const rows: Parameters<typeof printTable>[1] = [];
let loop = "";
try {
  const [repo, v2] = await Promise.all([releaseRepository(), releaseV2()]);
  const served = await serveRepository(join(repo.dir, "repository"));
  const m = JSON.parse(readFileSync(join(v2, "manifest.json"), "utf8")) as Manifest;
  const v = m.verity!;

  // 1. Apply's data path against curl + dd + sha256sum, into the same loop device.
  const backing = join(work, "slot.img");
  writeFileSync(backing, "");
  await truncate(backing, v.hashOffset + v.hashBytes + 64 * 1024 * 1024);
  loop = sh("losetup", ["--find", "--show", backing]).trim();
  const client = new RepoClient({
    url: served.url,
    trustedRoot: repo.trustedRoot,
    cacheDir: join(work, "client"),
  });
  const berthSeconds = await seconds(async () => {
    await client.refresh();
    const dl = join(work, "berth");
    const root = join(dl, "root.squashfs");
    const tree = join(dl, "root.verity");
    await client.download(`os/${V2}/root.squashfs`, root);
    await client.download(`os/${V2}/root.verity`, tree);
    await writeSlot(loop, [
      { file: root, offset: 0, length: v.dataBytes, sha256: await sha256File(join(v2, "root.squashfs")) },
      {
        file: tree,
        offset: v.hashOffset,
        length: v.hashBytes,
        sha256: await sha256File(join(v2, "root.verity")),
      },
    ]);
  });
  const targets = await client.targets("os-release");
  const stored = (name: string) => {
    const t = targets.find((x) => x.name === `os/${V2}/${name}`)!;
    return `${served.url}/targets/os/${V2}/${t.hashes.sha256}.${name}`;
  };
  const peerSeconds = await seconds(async () => {
    for (const [name, offset, length] of [
      ["root.squashfs", 0, v.dataBytes],
      ["root.verity", v.hashOffset, v.hashBytes],
    ] as const) {
      const file = join(work, `peer-${name}`);
      await shAsync("curl", ["-sf", "-o", file, stored(name)]);
      sh("dd", [
        `if=${file}`,
        `of=${loop}`,
        "bs=4M",
        `seek=${offset}`,
        "oflag=seek_bytes",
        "conv=fsync,notrunc",
        "status=none",
      ]);
      sh("blockdev", ["--flushbufs", loop]);
      sh("sh", [
        "-c",
        `dd if=${loop} bs=4M skip=${offset} count=${length} iflag=skip_bytes,count_bytes status=none | sha256sum`,
      ]);
    }
  });
  rows.push({
    metric: `download + write + verify ${((v.dataBytes + v.hashBytes) / 1e6).toFixed(0)} MB`,
    berth: berthSeconds,
    peer: peerSeconds,
    peerName: "curl + dd + sha256sum",
    unit: "s",
    higherIsBetter: false,
  });

  // 2. Reboot to good against a normal boot, in one VM booted through UEFI.
  const key = await releaseSshKey();
  const lines: { t: number; l: string }[] = [];
  const vm = await startVm({
    image: await releaseV1(),
    firmware: "uefi",
    reboot: true,
    onLine: (l) => lines.push({ t: performance.now(), l }),
  });
  const t0 = performance.now();
  const until = async (re: RegExp, from: number) => {
    for (;;) {
      const hit = lines.slice(from).find((x) => re.test(x.l));
      if (hit) return hit.t;
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  // Async: the guest downloads from the repository this process serves.
  const ssh = (c: string) => shAsync("ssh", guestSshArgs(vm.sshPort, key, c));
  try {
    const normal = ((await until(/berth-health: release \S+ is healthy/, 0)) - t0) / 1000;
    await until(/BERTH-CHECK: container ran/, 0);
    const guestUrl = `http://10.0.2.2:${new URL(served.url).port}/`;
    await ssh(`sudo berth update apply --repository ${guestUrl} --version ${V2}`);
    const from = lines.length;
    const r0 = performance.now();
    spawnSync("ssh", guestSshArgs(vm.sshPort, key, "sudo systemctl reboot"));
    await until(new RegExp(`berth-health: release ${V2.replace(/\./g, "\\.")} is healthy`), from);
    await until(/BERTH-CHECK: container ran/, from);
    // Good = blessed: the entry lost its counter.
    for (;;) {
      const s = JSON.parse(await ssh("sudo berth update status --json")) as {
        slots: { slot: string; state: string }[];
      };
      if (s.slots.find((x) => x.slot === "b")?.state === "good") break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const toGood = (performance.now() - r0) / 1000;
    rows.push({
      metric: "reboot to good (TCG, UEFI)",
      berth: toGood,
      peer: normal + 10,
      peerName: "normal boot + 10 s",
      unit: "s",
      higherIsBetter: false,
    });
  } finally {
    await vm.stop();
  }

  // 3. One package more than v2: what a node downloads for it.
  const doc = parseDocument(readFileSync(join(v2, "profile.yaml"), "utf8"));
  doc.addIn(["packages"], "less");
  writeFileSync(join(work, "v2b.yaml"), doc.toString());
  sh(BERTH, [
    "os",
    "build",
    join(work, "v2b.yaml"),
    "--out",
    join(work, "v2b"),
    "--no-baseline",
    "--release-version",
    "2026.12.5",
    "-q",
  ]);
  const b = JSON.parse(readFileSync(join(work, "v2b", "manifest.json"), "utf8")) as Manifest;
  const bytes = ["root.squashfs", "root.verity", "vmlinuz", "initrd.img"].reduce(
    (n, f) => n + (b.artifacts.find((a) => a.file === f)?.bytes ?? 0),
    0,
  );
  rows.push({
    metric: "bytes downloaded, one package changed",
    berth: bytes / 1e6,
    peer: b.compressedBytes / 1e6,
    peerName: "full root image",
    unit: "MB",
    higherIsBetter: false,
  });
  await served.close();
  printTable("update — apply, reboot to good, bytes for a one-package change", rows);
} finally {
  if (loop) spawnSync("losetup", ["-d", loop]);
  await rm(work, { recursive: true, force: true });
}
