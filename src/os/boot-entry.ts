// Boot loader entries for the two root slots: one systemd-boot Type #1 entry per installed release, its
// kernel and initramfs under /berth/<version>/ on the ESP. Boot counting lives in the entry's file name
// (berth-<version>+LEFT-DONE.conf, systemd's boot assessment): systemd-boot counts a try down before it
// boots the entry, systemd-bless-boot drops the counter once the health check passed, and an entry with
// no tries left sorts last, so the loader falls back to the other slot by itself.
//
// Which entry boots is the loader's sort order, not an EFI variable: entries with tries left sort before
// exhausted ones, then by sort-key. The entry Berth wants booted carries sort-key "berth-1", the
// fallback "berth-2"; a rollback or a new release swaps them. Pure functions, used by the build (slot A's
// first entry) and by `berth update` on the node.

export type Slot = "a" | "b";
export const SLOTS: readonly Slot[] = ["a", "b"];

/** GPT partition name of each root slot; the initramfs finds the root by it (berth.root=). */
export function slotLabel(slot: Slot): string {
  return `berth-root-${slot}`;
}

export function otherSlot(slot: Slot): Slot {
  return slot === "a" ? "b" : "a";
}

export const ESP_LABEL = "berth-esp";
export const PREFERRED_SORT_KEY = "berth-1";
export const FALLBACK_SORT_KEY = "berth-2";

/** What an entry needs to know about a release. */
export interface EntryRelease {
  version: string;
  /** dm-verity root hash (hex) and where the hash tree starts in the slot (bytes). */
  verity?: { rootHash: string; hashOffset: number };
  /** The profile's kernel command-line words (console=..., panic=...). */
  bootOptions: string[];
}

/** The kernel command line of a release booted from `slot`. */
export function entryOptions(r: EntryRelease, slot: Slot): string {
  return [
    `berth.root=${slotLabel(slot)}`,
    `berth.release=${r.version}`,
    ...(r.verity
      ? [`berth.verity.roothash=${r.verity.rootHash}`, `berth.verity.hashoffset=${r.verity.hashOffset}`]
      : []),
    // Berth mounts the ESP itself (berth-update-boot); the read-only root has no place for gpt-auto's.
    "systemd.gpt_auto=0",
    ...r.bootOptions,
  ].join(" ");
}

/** Where a release's kernel and initramfs live on the ESP (no leading slash). */
export function releaseDirOnEsp(version: string): string {
  return `berth/${version}`;
}

export interface EntryName {
  version: string;
  /** Boot counting: tries left and done; absent for an entry that is not being assessed (good). */
  tries?: { left: number; done: number };
}

export function entryFileName(e: EntryName): string {
  return `berth-${e.version}${e.tries ? `+${e.tries.left}-${e.tries.done}` : ""}.conf`;
}

const ENTRY = /^berth-(\d{4}\.\d{1,2}\.\d+)(?:\+(\d+)(?:-(\d+))?)?\.conf$/;

/** Parses an entry file name as systemd-boot does ("-DONE" may be missing, meaning 0). */
export function parseEntryFileName(name: string): EntryName | undefined {
  const m = ENTRY.exec(name);
  if (!m) return undefined;
  return {
    version: m[1]!,
    ...(m[2] !== undefined ? { tries: { left: Number(m[2]), done: Number(m[3] ?? 0) } } : {}),
  };
}

export function entryText(r: EntryRelease, slot: Slot, preferred: boolean): string {
  const dir = releaseDirOnEsp(r.version);
  return [
    `title Berth OS ${r.version} (slot ${slot})`,
    `sort-key ${preferred ? PREFERRED_SORT_KEY : FALLBACK_SORT_KEY}`,
    `version ${r.version}`,
    `linux /${dir}/vmlinuz`,
    `initrd /${dir}/initrd.img`,
    `options ${entryOptions(r, slot)}`,
    "",
  ].join("\n");
}

/** The fields of an entry's text ("key value" lines). */
export function parseEntryText(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([a-z-]+)\s+(.*?)\s*$/.exec(line);
    if (m && !line.trimStart().startsWith("#")) out[m[1]!] = m[2]!;
  }
  return out;
}

/** The slot an entry boots, from its berth.root= option. */
export function slotOfOptions(options: string): Slot | undefined {
  const m = /(?:^|\s)berth\.root=berth-root-([ab])(?:\s|$)/.exec(options);
  return m ? (m[1] as Slot) : undefined;
}

/** The loader configuration: no menu, the first entry in sort order boots. */
export const LOADER_CONF = "timeout 0\nconsole-mode keep\n";
