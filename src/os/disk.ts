// The image files: the compressed read-only root (mksquashfs), an EFI system partition with systemd-boot
// (mkfs.fat + mtools), the ext4 state partition (mke2fs), and the GPT disk that holds them (sfdisk).
// All built in files, without loop devices; the disk is written sparsely.

import { createHash } from "node:crypto";
import { open, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runChecked } from "../common/exec.ts";
import type { ByteRange } from "../common/hash.ts";
import { type EntryRelease, entryFileName, entryText, LOADER_CONF, releaseDirOnEsp } from "./boot-entry.ts";
import { ROOT_LABEL, STATE_LABEL } from "./initramfs.ts";

const MiB = 1024 * 1024;
const SECTOR = 512;

/** Deterministic UUIDs for a build, so the same inputs give the same partition table. */
export function stableUuid(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((Number.parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

export function squashfsArgs(compression: "xz" | "zstd" | "gzip", sourceDateEpoch: number): string[] {
  const comp =
    compression === "xz"
      ? ["-comp", "xz", "-Xbcj", "x86"]
      : compression === "zstd"
        ? ["-comp", "zstd", "-Xcompression-level", "19"]
        : ["-comp", "gzip", "-Xcompression-level", "9"];
  return [
    ...comp,
    "-b",
    "1M",
    "-noappend",
    "-no-progress",
    "-quiet",
    "-all-time",
    String(sourceDateEpoch),
    "-mkfs-time",
    String(sourceDateEpoch),
  ];
}

export async function makeSquashfs(
  root: string,
  out: string,
  compression: "xz" | "zstd" | "gzip",
  sourceDateEpoch: number,
): Promise<void> {
  await rm(out, { force: true });
  await runChecked("mksquashfs", "mksquashfs", [root, out, ...squashfsArgs(compression, sourceDateEpoch)]);
}

export interface EspInput {
  out: string;
  sizeMiB: number;
  systemdBoot: string;
  kernel: string;
  initrd: string;
  /** The release in slot A: its kernel and initramfs go under /berth/<version>/, its entry is the default. */
  release: EntryRelease;
  seed: string;
}

export async function makeEsp(e: EspInput): Promise<void> {
  await rm(e.out, { force: true });
  const volumeId = createHash("sha256").update(e.seed).digest("hex").slice(0, 8);
  await runChecked("mkfs.fat", "mkfs.fat", [
    "-C",
    "-F",
    "32",
    "-n",
    "BERTH-ESP",
    "-i",
    volumeId,
    e.out,
    String(e.sizeMiB * 1024),
  ]);
  const m = (args: string[]) =>
    runChecked("mtools", args[0]!, ["-i", e.out, ...args.slice(1)], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
    });
  const dir = releaseDirOnEsp(e.release.version);
  await m(["mmd", "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", "::/berth", `::/${dir}`]);
  await m(["mcopy", e.systemdBoot, "::/EFI/BOOT/BOOTX64.EFI"]);
  await m(["mcopy", e.kernel, `::/${dir}/vmlinuz`]);
  await m(["mcopy", e.initrd, `::/${dir}/initrd.img`]);
  const tmpDir = join(e.out, "..");
  const loader = join(tmpDir, "loader.conf");
  const entry = join(tmpDir, "berth-entry.conf");
  await writeFile(loader, LOADER_CONF);
  // Slot A's first release is good from the start: no boot counter.
  await writeFile(entry, entryText(e.release, "a", true));
  await m(["mcopy", loader, "::/loader/loader.conf"]);
  await m(["mcopy", entry, `::/loader/entries/${entryFileName({ version: e.release.version })}`]);
  await rm(loader);
  await rm(entry);
}

/**
 * Formats the ext4 state file system directly inside the disk at `offset` (no copy, stays sparse). With
 * `contents`, the file system starts out holding that directory's tree (mke2fs -d), so the first boot
 * has no /var to copy; E2FSPROGS_FAKE_TIME pins the file system's own times.
 */
async function makeStateFs(
  disk: string,
  offset: number,
  bytes: number,
  seed: string,
  contents?: { dir: string; sourceDateEpoch: number },
): Promise<void> {
  await runChecked(
    "mke2fs",
    "mke2fs",
    [
      "-q",
      "-F",
      "-t",
      "ext4",
      "-L",
      STATE_LABEL,
      "-U",
      stableUuid(`${seed}/state`),
      "-E",
      `offset=${offset},root_owner=0:0,hash_seed=${stableUuid(`${seed}/hash`)}`,
      ...(contents ? ["-d", contents.dir] : []),
      disk,
      `${Math.floor(bytes / 1024)}k`,
    ],
    contents ? { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(contents.sourceDateEpoch) } } : {},
  );
}

/**
 * The state file system's first contents: the image's /var, with the marker that tells the initramfs
 * /var is already populated (so a first boot copies nothing), every time set to SOURCE_DATE_EPOCH.
 */
export async function stateSeed(root: string, dir: string, sourceDateEpoch: number): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await runChecked("copying /var for the state partition", "cp", ["-a", join(root, "var"), dir]);
  // The marker the initramfs looks for (initramfs.ts).
  await writeFile(join(dir, ".berth-state"), "");
  await runChecked("setting the times of the state partition's files", "find", [
    dir,
    "-exec",
    "touch",
    "-h",
    "-d",
    `@${sourceDateEpoch}`,
    "{}",
    "+",
  ]);
  return dir;
}

/** "4G", "512M" -> bytes. */
export function parseSize(size: string): number {
  const m = /^(\d+)([MG])$/.exec(size);
  if (!m) throw new Error(`bad size ${size}`);
  return Number(m[1]) * (m[2] === "G" ? 1024 * MiB : MiB);
}

export interface DiskLayout {
  esp: { start: number; size: number };
  rootA: { start: number; size: number };
  rootB: { start: number; size: number };
  state: { start: number; size: number };
  total: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Partition sizes in bytes: two root slots (A/B) big enough for the image, ESP, state. */
export function diskLayout(espBytes: number, rootBytes: number, stateBytes: number): DiskLayout {
  const slot = Math.max(alignUp(rootBytes * 1.5, 64 * MiB), 512 * MiB);
  const esp = { start: 1 * MiB, size: alignUp(espBytes, MiB) };
  const rootA = { start: esp.start + esp.size, size: slot };
  const rootB = { start: rootA.start + rootA.size, size: slot };
  const state = { start: rootB.start + rootB.size, size: alignUp(stateBytes, MiB) };
  return { esp, rootA, rootB, state, total: state.start + state.size + 1 * MiB };
}

/** Copies `src` into `disk` at `offset`, skipping all-zero blocks so the disk stays sparse. */
async function copyInto(disk: string, src: string, offset: number): Promise<void> {
  const input = await open(src, "r");
  const output = await open(disk, "r+");
  try {
    const buf = Buffer.alloc(4 * MiB);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await input.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      for (let o = 0; o < bytesRead; o += 64 * 1024) {
        const part = chunk.subarray(o, Math.min(o + 64 * 1024, bytesRead));
        if (part.some((b) => b !== 0)) await output.write(part, 0, part.length, offset + pos + o);
      }
      pos += bytesRead;
    }
  } finally {
    await input.close();
    await output.close();
  }
}

export interface DiskInput {
  out: string;
  esp: string;
  root: string;
  /** The root's dm-verity hash tree, written into slot A at `offset` after the root image. */
  verity?: { file: string; offset: number };
  stateBytes: number;
  /** A tree the state file system starts out with (the image's /var), and the time its files get. */
  stateContents?: { dir: string; sourceDateEpoch: number };
  seed: string;
}

/**
 * The ranges of a disk from makeDisk that nothing writes, so they are zero (holes): slot A after the
 * root image and its hash tree, and all of slot B. Hashing the disk feeds these from memory.
 */
export function unwrittenRanges(L: DiskLayout, slotABytes: number): ByteRange[] {
  const used = Math.ceil(slotABytes / MiB) * MiB;
  return [{ start: L.rootA.start + used, size: L.rootA.size - used + L.rootB.size }];
}

export async function makeDisk(d: DiskInput): Promise<DiskLayout & { unwritten: ByteRange[] }> {
  const [esp, root] = await Promise.all([stat(d.esp), stat(d.root)]);
  const slotBytes = d.verity ? d.verity.offset + (await stat(d.verity.file)).size : root.size;
  const L = diskLayout(esp.size, slotBytes, d.stateBytes);
  await rm(d.out, { force: true });
  await (await open(d.out, "w")).close();
  await truncate(d.out, L.total);
  const part = (p: { start: number; size: number }, type: string, name: string) =>
    `start=${p.start / SECTOR}, size=${p.size / SECTOR}, type=${type}, name="${name}", uuid=${stableUuid(`${d.seed}/${name}`)}`;
  const script = [
    "label: gpt",
    `label-id: ${stableUuid(`${d.seed}/disk`)}`,
    "first-lba: 2048",
    part(L.esp, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "berth-esp"),
    part(L.rootA, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", ROOT_LABEL),
    part(L.rootB, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", ROOT_LABEL.replace(/-a$/, "-b")),
    part(L.state, "4D21B016-B534-45C2-A9FB-5C16E091FD2D", STATE_LABEL),
    "",
  ].join("\n");
  await runChecked("sfdisk", "sfdisk", ["--no-reread", "--no-tell-kernel", "-q", d.out], { input: script });
  await copyInto(d.out, d.esp, L.esp.start);
  await copyInto(d.out, d.root, L.rootA.start);
  if (d.verity) await copyInto(d.out, d.verity.file, L.rootA.start + d.verity.offset);
  await makeStateFs(d.out, L.state.start, L.state.size, d.seed, d.stateContents);
  return { ...L, unwritten: unwrittenRanges(L, slotBytes) };
}
