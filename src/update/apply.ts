// `berth update check | apply | rollback` on a node.
//
// apply, in an order that keeps the current boot path intact whatever happens:
//   1. refresh the TUF metadata and choose the release (releases.ts);
//   2. download the root image, hash tree, kernel and initramfs through the TUF client into /var: each
//      is verified against the signed length and SHA-256 before it exists under its name, so a tampered
//      file is refused before anything on the disk changes;
//   3. drop the inactive slot's boot entry (its old release is overwritten next) and note the write;
//   4. write root image and tree into the inactive slot, flush, read every byte back (slots.ts);
//   5. copy kernel and initramfs to the ESP and write the new entry with boot counting (+TRIES-0),
//      preferred; the running release's entry stays as the fallback;
//   6. load the container images the release pins into the engine; record the attempt.
// An apply killed anywhere before 5 leaves the running release the only bootable entry (or both, before
// 3); the next apply starts from the beginning.

import { createReadStream, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { docker } from "../common/docker.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import { type EntryRelease, otherSlot, type Slot } from "../os/boot-entry.ts";
import type { RepoClient } from "../repo/client.ts";
import type { OsReleaseCustom } from "../repo/kinds/os-release.ts";
import {
  ensureEspMounted,
  installEntry,
  preferSlot,
  readEntries,
  removeOrphanReleaseDirs,
  removeSlotEntries,
} from "./esp.ts";
import { type NodeConfig, nodeRepository, readNodeConfig, runningRelease } from "./node.ts";
import { type Choice, chooseRelease, listReleases } from "./releases.ts";
import { bootedFrom, slotPartition, writeSlot } from "./slots.ts";
import { readBad, readSlotWrite, stateDir, writeAttempt, writeBad, writeSlotWrite } from "./state.ts";
import { slotStatuses } from "./status.ts";
import { nodeSeed } from "./waves.ts";

export interface CheckOptions {
  repository?: string;
  version?: string;
  maxVersion?: string;
  ignoreWaves?: boolean;
  allowDowngrade?: boolean;
  retryBad?: boolean;
  now?: Date;
}

export interface CheckResult extends Choice {
  current: string;
  repository: string;
  seed: number;
}

interface Booted {
  slot: Slot;
  release: string;
}

function booted(): Booted {
  const b = bootedFrom(readFileSync("/proc/cmdline", "utf8"));
  const release = b.release ?? runningRelease().version;
  if (!b.slot)
    throw new BerthError(
      "the kernel command line names no Berth root slot (berth.root=): not booted from a slot",
    );
  return { slot: b.slot, release };
}

async function choose(client: RepoClient, cur: Booted, o: CheckOptions, config: NodeConfig): Promise<Choice> {
  await client.refresh();
  return chooseRelease({
    releases: await listReleases(client),
    current: cur.release,
    bad: readBad(),
    seed: await nodeSeed(),
    now: o.now,
    version: o.version ?? config.pin,
    maxVersion: o.maxVersion ?? config.maxVersion,
    ignoreWaves: o.ignoreWaves,
    allowDowngrade: o.allowDowngrade,
    retryBad: o.retryBad,
  });
}

/** `berth update check`: refreshes the metadata and says what apply would install now. */
export async function checkUpdate(o: CheckOptions = {}): Promise<CheckResult> {
  const cur = booted();
  const config = readNodeConfig();
  const repo = nodeRepository({ repository: o.repository, config });
  const choice = await choose(repo.client, cur, o, config);
  return { ...choice, current: cur.release, repository: repo.url, seed: await nodeSeed() };
}

export interface ApplyOptions extends CheckOptions {
  progress?: Progress;
  /** Boots the new release gets before the node falls back (default: the release's own). */
  tries?: number;
}

export interface ApplyResult {
  /** Nothing to do (up to date, or held by waves): the choice says why. */
  installed: boolean;
  choice: Choice;
  version?: string;
  slot?: Slot;
  entry?: string;
  /** The release was already in the other slot: only the boot order changed. */
  reused?: boolean;
  images: string[];
}

const DOWNLOAD_DIR = () => join(stateDir(), "download");

function fileOf(c: OsReleaseCustom, name: string): { target: string; length: number; sha256: string } {
  const f = c.files?.[name];
  if (!f) throw new BerthError(`release ${c.version} has no ${name} in its metadata`);
  return f;
}

export async function applyUpdate(o: ApplyOptions = {}): Promise<ApplyResult> {
  const progress = o.progress ?? silentProgress;
  if (process.getuid?.() !== 0) throw new UsageError("berth update apply needs root (it writes a disk slot)");
  const cur = booted();
  const config = readNodeConfig();
  const repo = nodeRepository({ repository: o.repository, config });
  const choice = await choose(repo.client, cur, o, config);
  const r = choice.release;
  if (!r) return { installed: false, choice, images: [] };
  const verity = r.custom.verity;
  if (!verity)
    throw new BerthError(`release ${r.version} carries no dm-verity root hash; it cannot go in a slot`);
  const target = otherSlot(cur.slot);
  const esp = await ensureEspMounted();

  // The release may already sit, good, in the other slot (after a rollback): make it the one to boot.
  const there = slotStatuses(readEntries(esp), cur.slot, readBad(), readSlotWrite()).find(
    (s) => s.slot === target,
  );
  if (there?.release === r.version && there.state === "good") {
    await preferSlot(esp, target);
    await recordAttempt(r.version, target, cur.release);
    return { installed: true, choice, version: r.version, slot: target, reused: true, images: [] };
  }

  const part = slotPartition(target);
  const root = fileOf(r.custom, "root.squashfs");
  const tree = fileOf(r.custom, "root.verity");
  if (verity.hashOffset + tree.length > part.bytes)
    throw new BerthError(
      `release ${r.version} needs ${verity.hashOffset + tree.length} bytes; slot ${target} (${part.dev}) has ${part.bytes}`,
    );
  if (verity.hashOffset < root.length)
    throw new BerthError(`release ${r.version}: its hash tree would overlap the root image`);

  // 2. Verified downloads, before anything on the disk changes: a refused file leaves the node as it was.
  const downloads = join(DOWNLOAD_DIR(), r.version);
  await rm(DOWNLOAD_DIR(), { recursive: true, force: true });
  await mkdir(downloads, { recursive: true });
  const names = ["root.squashfs", "root.verity", "vmlinuz", "initrd.img"];
  const total = names.reduce((n, f) => n + fileOf(r.custom, f).length, 0);
  const dl = progress.task(`downloading ${r.version}`, total, "bytes");
  try {
    for (const name of names)
      await repo.client.download(fileOf(r.custom, name).target, join(downloads, name), (n) => dl.advance(n));
  } catch (e) {
    await rm(DOWNLOAD_DIR(), { recursive: true, force: true });
    throw e;
  } finally {
    dl.done();
  }

  // 3. The inactive slot stops being bootable before a byte of it changes.
  await removeSlotEntries(esp, target);
  await removeOrphanReleaseDirs(esp);
  await writeSlotWrite({ slot: target, version: r.version, started: new Date().toISOString() });

  // 4. The slot, read back.
  const wr = progress.task(`writing slot ${target}`, 2 * (root.length + tree.length), "bytes");
  try {
    await writeSlot(
      part.dev,
      [
        { file: join(downloads, "root.squashfs"), offset: 0, length: root.length, sha256: root.sha256 },
        {
          file: join(downloads, "root.verity"),
          offset: verity.hashOffset,
          length: tree.length,
          sha256: tree.sha256,
        },
      ],
      (n) => wr.advance(n),
    );
  } finally {
    wr.done();
  }

  // 5. Boot entry: new and preferred; the running release's entry becomes the fallback.
  const release: EntryRelease = {
    version: r.version,
    verity: { rootHash: verity.rootHash, hashOffset: verity.hashOffset },
    bootOptions: r.custom.update?.bootOptions ?? runningRelease().bootOptions,
  };
  const entry = await installEntry(esp, {
    release,
    slot: target,
    kernel: join(downloads, "vmlinuz"),
    initrd: join(downloads, "initrd.img"),
    tries: o.tries ?? r.custom.update?.tries ?? 3,
  });
  await preferSlot(esp, target);
  await rm(join(stateDir(), "writing"), { force: true });

  // 6. Pinned images into the engine, so they are there when the new release starts its containers.
  const images = await loadPinnedImages(repo.client, r.custom.update?.images ?? [], downloads, progress);
  if (o.retryBad) await writeBad(readBad().filter((v) => v !== r.version));
  await recordAttempt(r.version, target, cur.release);
  await rm(DOWNLOAD_DIR(), { recursive: true, force: true });
  return { installed: true, choice, version: r.version, slot: target, entry, images };
}

function recordAttempt(version: string, slot: Slot, from: string): Promise<void> {
  return writeAttempt({ version, slot, from, started: new Date().toISOString() });
}

/** Downloads the image targets a release pins (by manifest digest) and loads them into Docker. */
async function loadPinnedImages(
  client: RepoClient,
  digests: string[],
  dir: string,
  progress: Progress,
): Promise<string[]> {
  if (!digests.length) return [];
  const images = await client.targets("image");
  const loaded: string[] = [];
  for (const digest of digests) {
    const t = images.find((x) => x.custom.member === "image" && x.custom.digest === digest);
    if (!t) throw new BerthError(`the release pins image ${digest}, which the repository does not list`);
    const file = join(dir, `image-${digest.slice(7, 23)}.tar`);
    progress.note(`loading image ${t.custom.repository ?? ""}@${digest.slice(0, 19)}`);
    await client.download(t.name, file);
    loaded.push(...(await docker.loadImage(createReadStream(file))));
    await rm(file, { force: true });
  }
  return loaded;
}

export interface RollbackResult {
  from: string;
  to: string;
  slot: Slot;
}

/** `berth update rollback`: the other slot's release boots next. */
export async function rollbackUpdate(o: { force?: boolean } = {}): Promise<RollbackResult> {
  if (process.getuid?.() !== 0)
    throw new UsageError("berth update rollback needs root (it changes the boot entries)");
  const cur = booted();
  const esp = await ensureEspMounted();
  const other = slotStatuses(readEntries(esp), cur.slot, readBad(), readSlotWrite()).find(
    (s) => s.slot === otherSlot(cur.slot),
  )!;
  if (!other.release)
    throw new BerthError(`slot ${other.slot} holds no release to roll back to (${other.state})`);
  if (other.state === "bad" && !o.force)
    throw new UsageError(
      `slot ${other.slot} holds ${other.release}, which is bad; add --force to boot it anyway`,
    );
  await preferSlot(esp, other.slot);
  return { from: cur.release, to: other.release, slot: other.slot };
}

/** Reboots the node (the new entry or the rollback takes effect). */
export async function reboot(): Promise<void> {
  const r = await run("systemctl", ["reboot"]);
  if (r.code !== 0) throw new BerthError(`systemctl reboot: ${r.stderr.trim()}`);
}
