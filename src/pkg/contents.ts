// Which package ships which systemd unit, from the archive's Contents indexes. Only unit-file lines are
// kept (a few thousand of ~10 million), cached as JSON per Contents file digest.

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { decompressor } from "../common/decompress.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import type { Archive, VerifiedRelease } from "./archive.ts";

const UNIT_LINE =
  /^(?:usr\/)?lib\/systemd\/system\/([^/\s]+\.(?:service|socket|timer|path|mount|target))\s+(\S+)$/;

/** unit name -> packages shipping it */
export type UnitIndex = Map<string, Set<string>>;

/** Filters one Contents stream down to its systemd units. */
export async function unitsFromContents(lines: AsyncIterable<string>): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for await (const line of lines) {
    if (!line.includes("systemd/system/")) continue;
    const m = UNIT_LINE.exec(line);
    if (!m) continue;
    const pkgs = m[2]!.split(",").map((q) => q.slice(q.lastIndexOf("/") + 1));
    out[m[1]!] = [...new Set([...(out[m[1]!] ?? []), ...pkgs])];
  }
  return out;
}

async function unitsOfFile(
  archive: Archive,
  vr: VerifiedRelease,
  path: string,
): Promise<Record<string, string[]>> {
  const entry = vr.release.files.get(path);
  if (!entry) return {};
  const cacheFile = join(await archive.cache.dir("derived", "contents-units"), `${entry.sha256}.json`);
  try {
    return JSON.parse(await readFile(cacheFile, "utf8")) as Record<string, string[]>;
  } catch {}
  const raw = await archive.rawIndexFile(vr, path);
  const stream = createReadStream(raw).pipe(decompressor("gz", path));
  const units = await unitsFromContents(
    createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }),
  );
  await writeFileAtomic(cacheFile, JSON.stringify(units));
  return units;
}

/** Units shipped by packages of the given releases and components (amd64 and all). */
export async function unitIndex(archive: Archive, releases: VerifiedRelease[]): Promise<UnitIndex> {
  const index: UnitIndex = new Map();
  for (const vr of releases)
    for (const component of vr.repo.components)
      for (const arch of [vr.repo.architecture, "all"]) {
        const units = await unitsOfFile(archive, vr, `${component}/Contents-${arch}.gz`);
        for (const [unit, pkgs] of Object.entries(units)) {
          const set = index.get(unit) ?? new Set<string>();
          index.set(unit, set);
          for (const p of pkgs) set.add(p);
        }
      }
  return index;
}
