// Berth's initramfs: busybox (from Debian's busybox-static) and a short init that mounts the read-only
// root image by partition label, puts the writable state partition on /var, overlays /etc onto it, and
// switches to systemd. Built reproducibly as a gzip-compressed cpio archive.

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { BerthError } from "../cli/errors.ts";
import { compressionOfName, decompressToBuffer } from "../common/decompress.ts";
import { readDebFile } from "../pkg/deb.ts";
import { type CpioEntry, writeCpio } from "./cpio.ts";

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
fail() { echo "berth-initramfs: FATAL: $*"; echo "dropping to a shell"; exec sh; }

for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko" || log "could not load $m"; done

root_label=${ROOT_LABEL}
state_label=${STATE_LABEL}
init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    berth.root=*) root_label=\${arg#berth.root=} ;;
    berth.state=*) state_label=\${arg#berth.state=} ;;
    init=*) init=\${arg#init=} ;;
    berth.debug) set -x ;;
  esac
done

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
mkdir -p /sysroot /state
mount -t ${rootFsType} -o ro "$root" /sysroot || fail "cannot mount $root ($root_label)"

if state=$(find_part "$state_label"); then
  mount -t ext4 -o rw,noatime "$state" /state || fail "cannot mount $state ($state_label)"
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
mount --move /state /sysroot/var || fail "cannot move /var into place"
mount -t overlay overlay -o lowerdir=/sysroot/etc,upperdir=/sysroot/var/lib/berth/etc/upper,workdir=/sysroot/var/lib/berth/etc/work /sysroot/etc \\
  || fail "cannot overlay /etc"
for m in dev proc sys; do mount --move /$m /sysroot/$m; done
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
}

export async function buildInitramfs(i: InitramfsInput): Promise<Buffer> {
  const busybox = await readDebFile(i.busyboxDeb, "usr/bin/busybox");
  if (!busybox) throw new BerthError(`${i.busyboxDeb} has no usr/bin/busybox`);
  // Disk drivers too, for kernels that build them as modules (Debian's generic kernel; the cloud
  // kernel has NVMe built in).
  const modules = await initramfsModules(i.root, i.kernelVersion, [i.rootFsType, "overlay"], STORAGE_DRIVERS);
  const entries: CpioEntry[] = [];
  for (const d of ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "sysroot", "state", "tmp"])
    entries.push({ path: d, type: "directory", mode: 0o755 });
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
  return gzipSync(writeCpio(entries, i.sourceDateEpoch), { level: 9 });
}
