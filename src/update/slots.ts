// The root slots on a node's disk: found by GPT partition name in /sys/class/block (what the initramfs
// does too), the booted one from the kernel command line, and the writer that puts a release's root
// image and dm-verity hash tree into the inactive slot and reads them back to check every byte.

import { createHash } from "node:crypto";
import { createReadStream, readdirSync, readFileSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { type Slot, slotLabel } from "../os/boot-entry.ts";

export interface Partition {
  /** Kernel name, e.g. nvme0n1p3. */
  name: string;
  dev: string;
  partname: string;
  bytes: number;
}

/** Partitions with a GPT name, from a sysfs block directory. */
export function partitions(sysBlock = "/sys/class/block", devDir = "/dev"): Partition[] {
  const out: Partition[] = [];
  let names: string[];
  try {
    names = readdirSync(sysBlock);
  } catch {
    return [];
  }
  for (const name of names) {
    try {
      const uevent = readFileSync(join(sysBlock, name, "uevent"), "utf8");
      const partname = /^PARTNAME=(.*)$/m.exec(uevent)?.[1];
      const devname = /^DEVNAME=(.*)$/m.exec(uevent)?.[1] ?? name;
      if (!partname) continue;
      const sectors = Number(readFileSync(join(sysBlock, name, "size"), "utf8").trim());
      out.push({ name, dev: join(devDir, devname), partname, bytes: sectors * 512 });
    } catch {}
  }
  return out;
}

export function slotPartition(slot: Slot, parts: Partition[] = partitions()): Partition {
  const p = parts.find((x) => x.partname === slotLabel(slot));
  if (!p) throw new BerthError(`no partition named ${slotLabel(slot)}: is this a Berth OS disk?`);
  return p;
}

/** The booted slot and release, from the kernel command line the boot entry gave. */
export function bootedFrom(cmdline: string): { slot?: Slot; release?: string } {
  const words = cmdline.trim().split(/\s+/);
  const root = words.find((w) => w.startsWith("berth.root="))?.slice("berth.root=".length);
  const release = words.find((w) => w.startsWith("berth.release="))?.slice("berth.release=".length);
  const slot = root === slotLabel("a") ? "a" : root === slotLabel("b") ? "b" : undefined;
  return { ...(slot ? { slot } : {}), ...(release ? { release } : {}) };
}

export interface SlotPart {
  /** The verified download to write. */
  file: string;
  /** Where it goes in the slot. */
  offset: number;
  length: number;
  /** SHA-256 from the signed metadata. */
  sha256: string;
}

const CHUNK = 4 * 1024 * 1024;

/**
 * Writes each part into the slot device at its offset, flushes it to the disk, drops the device's page
 * cache and reads every byte back: the SHA-256 of what the disk holds must be the signed one.
 */
export async function writeSlot(
  device: string,
  parts: SlotPart[],
  onBytes?: (n: number) => void,
): Promise<void> {
  const fd = await open(device, "r+");
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (const p of parts) {
      const src = await open(p.file, "r");
      try {
        let pos = 0;
        for (;;) {
          const { bytesRead } = await src.read(buf, 0, CHUNK, pos);
          if (bytesRead === 0) break;
          let done = 0;
          while (done < bytesRead) {
            const { bytesWritten } = await fd.write(buf, done, bytesRead - done, p.offset + pos + done);
            done += bytesWritten;
          }
          pos += bytesRead;
          onBytes?.(bytesRead);
        }
        if (pos !== p.length)
          throw new BerthError(`${p.file} is ${pos} bytes, the metadata says ${p.length}`);
      } finally {
        await src.close();
      }
    }
    await fd.sync();
  } finally {
    await fd.close();
  }
  // The read-back must come from the disk, not from the page cache the writes just filled.
  if ((await stat(device)).isBlockDevice()) {
    const flushed = await run("blockdev", ["--flushbufs", device]);
    if (flushed.code !== 0) throw new BerthError(`blockdev --flushbufs ${device}: ${flushed.stderr.trim()}`);
  }
  for (const p of parts) {
    const got = await hashRegion(device, p.offset, p.length, onBytes);
    if (got !== p.sha256)
      throw new BerthError(
        `${device}: the bytes read back at ${p.offset} (sha256 ${got.slice(0, 16)}…) are not the release's (${p.sha256.slice(0, 16)}…)`,
      );
  }
}

/** SHA-256 of `length` bytes of a file or device from `offset`. */
export async function hashRegion(
  path: string,
  offset: number,
  length: number,
  onBytes?: (n: number) => void,
): Promise<string> {
  const h = createHash("sha256");
  if (length === 0) return h.digest("hex");
  const stream = createReadStream(path, { start: offset, end: offset + length - 1, highWaterMark: CHUNK });
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    onBytes?.((chunk as Buffer).length);
  }
  return h.digest("hex");
}
