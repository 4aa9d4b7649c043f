// The state partition grows to fill a disk that is larger than the image (a bigger cloud volume, a disk
// enlarged with `qemu-img resize`). Two steps, each by the tool made for it:
//  1. the partition, in the initramfs, with sfdisk, before anything on the disk is mounted (so the kernel
//     can reread the table); it then leaves a flag on the state file system;
//  2. the file system, online, once /var is mounted: berth-grow-state.service runs systemd-growfs when
//     the flag is there, so a boot that grew nothing runs nothing.
// sfdisk is not in the image: the fdisk package and its libraries would be three more packages for a
// first-boot job. It comes from the archive's .debs into the initramfs only, the way busybox does; the
// libraries the image already has are taken from the image.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { extractDeb } from "../pkg/deb.ts";
import type { PackageRecord } from "../pkg/index.ts";
import { resolve } from "../pkg/resolve.ts";
import type { BuildPlan } from "./plan.ts";

/** On the state file system: the initramfs grew the partition, the file system has yet to follow. */
export const GROW_FLAG = ".berth-grow-fs";

/** fdisk and the packages it depends on that the image does not have (their .debs feed the initramfs). */
export function sfdiskPackages(plan: BuildPlan): PackageRecord[] {
  const recOf = (name: string) => plan.index.candidate(name);
  const installed = plan.resolution.packages
    .map((p) => recOf(p.name))
    .filter((r): r is PackageRecord => !!r && !plan.profile.cut.installTimeOnly.includes(r.name));
  const r = resolve(plan.index, [{ name: "fdisk" }], { installed });
  if (r.unsatisfied.length)
    throw new BerthError(`fdisk cannot be resolved in this archive: ${r.unsatisfied[0]!.message}`);
  return r.packages.map((p) => recOf(p.name)).filter((x): x is PackageRecord => !!x);
}

/**
 * Runs `f` with the .debs unpacked into a scratch directory inside the root (its path as seen from the
 * root is passed), so the image's own dynamic loader can list what a program from them needs; the
 * scratch directory is removed afterwards.
 */
export async function withDebsInRoot<T>(
  root: string,
  debs: string[],
  f: (dirInRoot: string) => Promise<T>,
): Promise<T> {
  const scratch = ".berth-debs";
  const stage = join(root, scratch);
  await rm(stage, { recursive: true, force: true });
  try {
    for (const deb of debs) await extractDeb(deb, stage);
    return await f(`/${scratch}`);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * The initramfs step, in busybox sh: grow the state partition to the end of its disk when there is more
 * than 1 MiB after it. Runs before any partition of the disk is mounted. `find_part`, `log` and
 * `state_label` come from the init script.
 */
export const GROW_STATE_SH = `grow_state() {
  part=$(find_part "$state_label") || return 0
  name=\${part#/dev/}
  disk=$(basename "$(readlink -f "/sys/class/block/$name/..")")
  [ -e "/sys/class/block/$disk/size" ] || return 0
  end=$(( $(cat "/sys/class/block/$name/start") + $(cat "/sys/class/block/$name/size") ))
  total=$(cat "/sys/class/block/$disk/size")
  # The backup GPT takes the last 33 sectors; grow only for more than 1 MiB.
  [ $((total - 33 - end)) -gt 2048 ] || return 0
  [ -x /bin/sfdisk ] || { log "no sfdisk: the state partition keeps its size"; return 0; }
  log "growing $part to the end of /dev/$disk ($((total / 2048)) MiB)"
  # The backup GPT header moves to the new end of the disk first, then the partition takes the space.
  sfdisk -q --relocate gpt-bak-std "/dev/$disk" &&
    echo ", +" | sfdisk -q --no-tell-kernel -N "$(cat "/sys/class/block/$name/partition")" "/dev/$disk" &&
    blockdev --rereadpt "/dev/$disk" && grew_state=1 || log "could not grow $part"
}
`;

/** The unit that grows the mounted state file system after the initramfs grew its partition. */
export const GROW_STATE_UNIT = `[Unit]
Description=Berth: grow the state file system (/var) to its partition
ConditionPathExists=/var/${GROW_FLAG}
RequiresMountsFor=/var

[Service]
Type=oneshot
ExecStart=/usr/lib/systemd/systemd-growfs /var
ExecStartPost=/usr/bin/rm -f /var/${GROW_FLAG}

[Install]
WantedBy=multi-user.target
`;
