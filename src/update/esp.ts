// The ESP on a node: the boot entries of both slots and each release's kernel and initramfs. Every
// change is a new file written, flushed and renamed into place, so a crash leaves either the old or the
// new entry, never half of one; the entry of the booted release is only ever rewritten (its sort key),
// never removed, so the current boot path survives anything `berth update` does.

import { readdirSync, readFileSync } from "node:fs";
import { mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import {
  type EntryName,
  type EntryRelease,
  ESP_LABEL,
  entryFileName,
  entryText,
  FALLBACK_SORT_KEY,
  PREFERRED_SORT_KEY,
  parseEntryFileName,
  parseEntryText,
  releaseDirOnEsp,
  type Slot,
  slotOfOptions,
} from "../os/boot-entry.ts";
import { partitions } from "./slots.ts";

export const ESP_MOUNT = "/efi";

export interface EspEntry extends EntryName {
  file: string;
  slot?: Slot;
  sortKey?: string;
  options: string;
  /** The loader boots the first entry in its order: tries left before none, then by sort key. */
  preferred: boolean;
}

/** The entries of both slots, as the loader will see them. */
export function readEntries(esp: string): EspEntry[] {
  const dir = join(esp, "loader/entries");
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  const out: EspEntry[] = [];
  for (const file of files.sort()) {
    const name = parseEntryFileName(file);
    if (!name) continue;
    const fields = parseEntryText(readFileSync(join(dir, file), "utf8"));
    const options = fields.options ?? "";
    const slot = slotOfOptions(options);
    out.push({
      ...name,
      file,
      options,
      preferred: false,
      ...(slot ? { slot } : {}),
      sortKey: fields["sort-key"],
    });
  }
  const first = bootOrder(out)[0];
  if (first) first.preferred = true;
  return out;
}

/** systemd-boot's order for Berth's entries (boot.c's boot_entry_compare, sort keys all set). */
export function bootOrder(entries: EspEntry[]): EspEntry[] {
  const exhausted = (e: EspEntry) => (e.tries?.left === 0 ? 1 : 0);
  return [...entries].sort(
    (a, b) =>
      exhausted(a) - exhausted(b) ||
      byteOrder(a.sortKey ?? "~", b.sortKey ?? "~") ||
      -compareNumbers(a.version, b.version),
  );
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function compareNumbers(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** Writes `data` to `path` through a flushed temp file and a rename (the FAT directory flushed too). */
async function writeDurable(path: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.tmp-${process.pid}`);
  const fd = await open(tmp, "w");
  try {
    await fd.writeFile(data);
    await fd.sync();
  } finally {
    await fd.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

async function syncDir(dir: string): Promise<void> {
  const fd = await open(dir, "r");
  try {
    await fd.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still ordered after the data.
  } finally {
    await fd.close();
  }
}

/** Removes the entries (and kernel files) of releases installed in `slot`. */
export async function removeSlotEntries(esp: string, slot: Slot, keepVersion?: string): Promise<string[]> {
  const removed: string[] = [];
  for (const e of readEntries(esp)) {
    if (e.slot !== slot) continue;
    await rm(join(esp, "loader/entries", e.file), { force: true });
    if (e.version !== keepVersion)
      await rm(join(esp, releaseDirOnEsp(e.version)), { recursive: true, force: true });
    removed.push(e.version);
  }
  if (removed.length) await syncDir(join(esp, "loader/entries"));
  return removed;
}

/** Kernel files of releases no entry names any more (left by an interrupted apply). */
export async function removeOrphanReleaseDirs(esp: string): Promise<void> {
  const named = new Set(readEntries(esp).map((e) => e.version));
  for (const v of await readdir(join(esp, "berth")).catch(() => [] as string[]))
    if (!named.has(v)) await rm(join(esp, "berth", v), { recursive: true, force: true });
}

export interface NewEntry {
  release: EntryRelease;
  slot: Slot;
  kernel: string;
  initrd: string;
  /** Boots the loader gives it before falling back. */
  tries: number;
}

/** Copies the release's kernel and initramfs, then writes its counting entry; returns its file name. */
export async function installEntry(esp: string, n: NewEntry): Promise<string> {
  const dir = join(esp, releaseDirOnEsp(n.release.version));
  for (const [src, name] of [
    [n.kernel, "vmlinuz"],
    [n.initrd, "initrd.img"],
  ] as const)
    await writeDurable(join(dir, name), readFileSync(src));
  const file = entryFileName({ version: n.release.version, tries: { left: n.tries, done: 0 } });
  await writeDurable(join(esp, "loader/entries", file), entryText(n.release, n.slot, true));
  return file;
}

/** Makes `slot`'s entry the one the loader boots: it gets the preferred sort key, every other the fallback. */
export async function preferSlot(esp: string, slot: Slot): Promise<void> {
  const entries = readEntries(esp);
  if (!entries.some((e) => e.slot === slot)) throw new BerthError(`slot ${slot} has no boot entry`);
  for (const e of entries) {
    const want = e.slot === slot ? PREFERRED_SORT_KEY : FALLBACK_SORT_KEY;
    if (e.sortKey === want) continue;
    const path = join(esp, "loader/entries", e.file);
    const text = readFileSync(path, "utf8").replace(/^sort-key .*$/m, `sort-key ${want}`);
    await writeDurable(path, text.includes("sort-key ") ? text : `sort-key ${want}\n${text}`);
  }
}

/** Mounts the ESP at /efi when it is not (berth-health mounts it on each boot), found by partition name. */
export async function ensureEspMounted(esp = ESP_MOUNT): Promise<string> {
  if (isMounted(esp)) return esp;
  const part = partitions().find((p) => p.partname === ESP_LABEL);
  if (!part) throw new BerthError(`no partition named ${ESP_LABEL}: is this a Berth OS disk?`);
  const r = await run("mount", ["-t", "vfat", "-o", "umask=0077,noatime,nodev,nosuid,noexec", part.dev, esp]);
  if (r.code !== 0) throw new BerthError(`cannot mount the ESP on ${esp}: ${r.stderr.trim()}`);
  return esp;
}

function isMounted(dir: string): boolean {
  try {
    return readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[4] === dir);
  } catch {
    return false;
  }
}
