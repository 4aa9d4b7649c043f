// Berth's initramfs: busybox (from Debian's busybox-static) and a short init that mounts the read-only
// root image by partition label, puts the writable state partition on /var, overlays /etc onto it, and
// switches to systemd. Built reproducibly as a gzip-compressed cpio archive.

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";
import { pruneNewest } from "../common/cache.ts";
import { compressionOfName, decompressToBuffer } from "../common/decompress.ts";
import { BerthError } from "../common/errors.ts";
import { runChecked } from "../common/exec.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { sha256Hex } from "../common/hash.ts";
import { readDebFile } from "../pkg/deb.ts";
import { type CpioEntry, writeCpio } from "./cpio.ts";
import { GROW_FLAG, GROW_STATE_SH } from "./grow-state.ts";

export const ROOT_LABEL = "berth-root-a";

/** Block drivers a VM or cloud host may boot from, loaded when the kernel has them as modules. */
export const STORAGE_DRIVERS = [
  "nvme",
  "virtio_pci",
  "virtio_blk",
  "virtio_scsi",
  "sd_mod",
  "ahci",
  "crc32c_generic",
  "crc32c_intel",
  "ext4",
];
export const STATE_LABEL = "berth-state";

export function initScript(rootFsType: string): string {
  return `#!/bin/busybox sh
# Berth initramfs: root image read-only, state partition on /var, /etc overlaid onto /var.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { echo "berth-initramfs: $*" > /dev/kmsg 2>/dev/null || echo "berth-initramfs: $*"; }
# A boot that cannot go on reboots, so the boot loader's try counter runs down and the other slot boots
# (berth.debug gives a shell instead).
fail() {
  echo "berth-initramfs: FATAL: $*"
  if grep -qw berth.debug /proc/cmdline; then echo "dropping to a shell"; exec sh; fi
  echo "berth-initramfs: rebooting in 5 s"
  sleep 5
  reboot -f
}

for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko" || log "could not load $m"; done

root_label=${ROOT_LABEL}
state_label=${STATE_LABEL}
init=/sbin/init
roothash=
hashoffset=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    berth.root=*) root_label=\${arg#berth.root=} ;;
    berth.verity.roothash=*) roothash=\${arg#berth.verity.roothash=} ;;
    berth.verity.hashoffset=*) hashoffset=\${arg#berth.verity.hashoffset=} ;;
    berth.state=*) state_label=\${arg#berth.state=} ;;
    init=*) init=\${arg#init=} ;;
    berth.debug) set -x ;;
  esac
done

# A hang before systemd takes over is caught too: with a watchdog device, arm it here and leave it armed
# (killed without the magic close); systemd feeds it from then on (RuntimeWatchdogSec).
wdpid=
if [ -e /dev/watchdog ]; then
  watchdog -F -T 180 -t 5 /dev/watchdog &
  wdpid=$!
fi

find_part() {
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$u"; then
      d=$(sed -n 's/^DEVNAME=//p' "$u")
      echo "/dev/$d"
      return 0
    fi
  done
  return 1
}

i=0
while ! root=$(find_part "$root_label"); do
  i=$((i + 1))
  [ $i -gt 300 ] && fail "no partition labelled $root_label"
  sleep 0.1
done
${GROW_STATE_SH}grew_state=
grow_state
mkdir -p /sysroot /state /run
if [ -n "$roothash" ]; then
  # dm-verity: every block of the slot is checked against the root hash from the signed release
  # metadata; a changed byte makes the read fail, so a tampered slot does not mount.
  DM_DISABLE_UDEV=1 veritysetup open "$root" berth-root "$root" "$roothash" --hash-offset="$hashoffset" \\
    || fail "dm-verity refused $root ($root_label)"
  root=/dev/mapper/berth-root
fi
mount -t ${rootFsType} -o ro "$root" /sysroot || fail "cannot mount $root ($root_label)"

if state=$(find_part "$state_label"); then
  mount -t ext4 -o rw,noatime "$state" /state || fail "cannot mount $state ($state_label)"
  [ -z "$grew_state" ] || touch /state/${GROW_FLAG}
else
  log "no $state_label partition: state is kept in memory and lost at shutdown"
  mount -t tmpfs -o mode=0755 tmpfs /state
fi
if [ ! -e /state/.berth-state ]; then
  log "first boot: populating /var from the image"
  cp -a /sysroot/var/. /state/ || fail "cannot populate /var"
  touch /state/.berth-state
fi
mkdir -p /state/lib/berth/etc/upper /state/lib/berth/etc/work
# The package database describes the booted image, not the state: after an update /var keeps the
# node's data, but /var/lib/dpkg must be the new release's (read-only, from the image).
mkdir -p /image-dpkg /state/lib/dpkg
mount --bind /sysroot/var/lib/dpkg /image-dpkg || fail "cannot bind the image's package database"
mount --move /state /sysroot/var || fail "cannot move /var into place"
mount --move /image-dpkg /sysroot/var/lib/dpkg || fail "cannot put the image's package database in place"
mount -t overlay overlay -o lowerdir=/sysroot/etc,upperdir=/sysroot/var/lib/berth/etc/upper,workdir=/sysroot/var/lib/berth/etc/work /sysroot/etc \\
  || fail "cannot overlay /etc"
for m in dev proc sys; do mount --move /$m /sysroot/$m; done
[ -z "$wdpid" ] || kill -9 "$wdpid"
exec switch_root /sysroot "$init"
`;
}

/**
 * Modules the initramfs loads, dependencies first (from modules.dep): `wanted` must exist (as a module
 * or built in); `optional` ones are taken when the kernel has them as modules.
 */
export async function initramfsModules(
  root: string,
  kernelVersion: string,
  wanted: string[],
  optional: string[] = [],
): Promise<{ name: string; path: string }[]> {
  const depFile = join(root, "usr/lib/modules", kernelVersion, "modules.dep");
  const deps = new Map<string, string[]>();
  for (const line of (await readFile(depFile, "utf8")).split("\n")) {
    const [mod, rest] = line.split(":");
    if (mod) deps.set(mod, (rest ?? "").trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map(
    [...deps.keys()].map((p) => [p.slice(p.lastIndexOf("/") + 1).replace(/\.ko(\.xz|\.zst|\.gz)?$/, ""), p]),
  );
  const order: string[] = [];
  const visit = (path: string) => {
    if (order.includes(path)) return;
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const w of optional) {
    const path = byName.get(w);
    if (path) visit(path);
  }
  for (const w of wanted) {
    const path = byName.get(w);
    if (path) visit(path);
    else {
      const builtin = await readFile(
        join(root, "usr/lib/modules", kernelVersion, "modules.builtin"),
        "utf8",
      ).catch(() => "");
      if (!builtin.split("\n").some((l) => l.endsWith(`/${w}.ko`)))
        throw new BerthError(`kernel ${kernelVersion} has no module ${w}, built in or loadable`);
    }
  }
  return order.map((p) => ({
    name: p.slice(p.lastIndexOf("/") + 1).replace(/\.ko(\.xz|\.zst|\.gz)?$/, ""),
    path: join(root, "usr/lib/modules", kernelVersion, p),
  }));
}

/** busybox insmod takes plain modules; Debian ships them compressed (the signature is kept inside). */
function decompressModule(path: string): Promise<Buffer> {
  return decompressToBuffer(createReadStream(path), compressionOfName(path), path);
}

export interface InitramfsInput {
  busyboxDeb: string;
  root: string;
  kernelVersion: string;
  rootFsType: "squashfs" | "erofs";
  sourceDateEpoch: number;
  /** Open the root slot with dm-verity: veritysetup and its libraries from the root, and dm-verity.ko. */
  verity?: boolean;
  /** More programs for the initramfs, as [path, content] (sfdisk and its libraries, grow-state.ts). */
  programs?: [string, Buffer][];
  /** Keep compressed archives here by the digest of their content (a warm rebuild reuses them). */
  cacheDir?: string;
}

/** Modules for a watchdog the machine may have (QEMU's i6300esb), armed until systemd takes over. */
export const WATCHDOG_DRIVERS = ["i6300esb"];

/**
 * The virtual NIC's driver, loaded here rather than by udev's coldplug in the root: under TCG the
 * coldplug reached virtio-net 16 s after systemd-networkd was up (eth0 appeared at 53.6 s, DHCP took
 * 0.4 s after it), and network-online.target, which docker.service waits for, waited with it.
 */
export const NETWORK_DRIVERS = ["virtio_net"];

/**
 * A program of the root with the shared libraries it loads, as the root's own dynamic loader lists
 * them (ld.so --list, what ldd does), for the initramfs: [path in the initramfs, content].
 * `libraryPath` (inside the root) is searched first, for libraries the image itself lacks.
 */
export async function programWithLibraries(
  root: string,
  program: string,
  libraryPath?: string,
): Promise<[string, Buffer][]> {
  const r = await runChecked(`listing the libraries of ${program}`, "chroot", [
    root,
    "/usr/lib64/ld-linux-x86-64.so.2",
    ...(libraryPath ? ["--library-path", libraryPath] : []),
    "--list",
    program,
  ]);
  const files: [string, Buffer][] = [[`bin/${basename(program)}`, await readFile(join(root, program))]];
  for (const line of r.stdout.split("\n")) {
    const lib = /=>\s+(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (!lib) continue;
    // The initramfs has no merged /usr: libraries in /lib/x86_64-linux-gnu, the loader where ELF
    // interpreters name it.
    const dest = lib.includes("ld-linux")
      ? "lib64/ld-linux-x86-64.so.2"
      : `lib/x86_64-linux-gnu/${basename(lib)}`;
    files.push([dest, await readFile(join(root, lib))]);
  }
  return files;
}

export async function buildInitramfs(i: InitramfsInput): Promise<Buffer> {
  const busybox = await readDebFile(i.busyboxDeb, "usr/bin/busybox");
  if (!busybox) throw new BerthError(`${i.busyboxDeb} has no usr/bin/busybox`);
  // Disk drivers too, for kernels that build them as modules (Debian's generic kernel; the cloud
  // kernel has NVMe built in).
  const modules = await initramfsModules(
    i.root,
    i.kernelVersion,
    [i.rootFsType, "overlay", ...(i.verity ? ["dm-verity"] : [])],
    [...STORAGE_DRIVERS, ...WATCHDOG_DRIVERS, ...NETWORK_DRIVERS],
  );
  const programs = i.verity ? await programWithLibraries(i.root, "/usr/sbin/veritysetup") : [];
  // The same library may come with two programs: the first copy stands.
  for (const [path, data] of i.programs ?? [])
    if (!programs.some(([p]) => p === path)) programs.push([path, data]);
  const entries: CpioEntry[] = [];
  const dirs = ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "sysroot", "state", "tmp"];
  if (programs.length) dirs.push("lib/x86_64-linux-gnu", "lib64");
  for (const d of dirs) entries.push({ path: d, type: "directory", mode: 0o755 });
  for (const [path, data] of programs) entries.push({ path, type: "file", mode: 0o755, data });
  entries.push({ path: "bin/busybox", type: "file", mode: 0o755, data: busybox });
  entries.push({ path: "bin/sh", type: "symlink", mode: 0o777, target: "busybox" });
  entries.push({ path: "init", type: "file", mode: 0o755, data: Buffer.from(initScript(i.rootFsType)) });
  entries.push({
    path: "etc/modules",
    type: "file",
    mode: 0o644,
    data: Buffer.from(`${modules.map((m) => m.name).join("\n")}\n`),
  });
  for (const m of modules)
    entries.push({
      path: `lib/modules/${m.name}.ko`,
      type: "file",
      mode: 0o644,
      data: await decompressModule(m.path),
    });
  const cpio = writeCpio(entries, i.sourceDateEpoch);
  if (!i.cacheDir) return gzipSync(cpio, { level: 9 });
  // gzip -9 of the archive is most of this step; the same archive compresses to the same bytes.
  const cached = join(i.cacheDir, `${sha256Hex(cpio)}.cpio.gz`);
  try {
    return await readFile(cached);
  } catch {}
  const gz = gzipSync(cpio, { level: 9 });
  await writeFileAtomic(cached, gz).catch(() => {}); // a cache that cannot be written only costs time
  await pruneNewest(i.cacheDir, ".cpio.gz", 8);
  return gz;
}
