// Staging: `berth repo add` copies a target's bytes into the served tree under their hash (harmless
// until signed: no metadata names them yet) and records the entry in staged.json; `publish` signs what
// is staged. A name already published with other bytes is refused unless replacing is asked for, so a
// release, an image digest or a patch never silently changes under the same name.

import { createReadStream } from "node:fs";
import { readFile, rename, rm, stat } from "node:fs/promises";
import { BerthError, UsageError } from "../common/errors.ts";
import { exists, writeFileAtomic, writeStreamAtomic } from "../common/fsutil.ts";
import { HashingStream, sha256Hex } from "../common/hash.ts";
import { pathsOf, type RepoPaths, readState, withLock } from "./repository.ts";
import { type BerthCustom, checkTargetName, isTargetKind, type NewTarget, storagePath } from "./targets.ts";

export interface StagedTarget {
  length: number;
  hashes: { sha256: string };
  custom: BerthCustom;
}

export interface Staged {
  add: Record<string, StagedTarget>;
  remove: string[];
}

export async function readStaged(paths: RepoPaths): Promise<Staged> {
  if (!(await exists(paths.staged))) return { add: {}, remove: [] };
  try {
    const s = JSON.parse(await readFile(paths.staged, "utf8")) as Staged;
    return { add: s.add ?? {}, remove: s.remove ?? [] };
  } catch (e) {
    throw new BerthError(`${paths.staged} is not valid JSON (${(e as Error).message})`);
  }
}

async function writeStaged(paths: RepoPaths, s: Staged): Promise<void> {
  await writeFileAtomic(paths.staged, `${JSON.stringify(s, null, 2)}\n`);
}

export async function clearStaged(paths: RepoPaths): Promise<void> {
  await rm(paths.staged, { force: true });
}

/** Files up to this size are hashed and copied in memory; larger ones are streamed. */
const IN_MEMORY = 16 * 1024 * 1024;

/** Copies `file` into the targets tree under its hash; returns its length and SHA-256. */
async function storeFile(
  paths: RepoPaths,
  name: string,
  file: string,
): Promise<{ sha256: string; length: number }> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    throw new BerthError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (size <= IN_MEMORY) {
    const data = await readFile(file);
    const sha256 = sha256Hex(data);
    const dest = storagePath(paths.targets, name, sha256);
    if (!(await exists(dest))) await writeFileAtomic(dest, data, 0o644);
    return { sha256, length: data.length };
  }
  // Hash while copying to a temp name, then rename to the hash-named path (one read of the file).
  const hashing = new HashingStream();
  const tmp = storagePath(paths.targets, name, `incoming-${process.pid}`);
  try {
    await writeStreamAtomic(tmp, createReadStream(file), [hashing]);
  } catch (e) {
    throw new BerthError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const sha256 = hashing.digest();
  await rename(tmp, storagePath(paths.targets, name, sha256));
  return { sha256, length: hashing.bytes };
}

export interface StageOptions {
  /** Allow a name that is already published (or staged) with other bytes. */
  replace?: boolean;
}

/** Stages targets for the next publish; returns the entries as they will be signed. */
export async function stageTargets(
  dir: string,
  targets: readonly NewTarget[],
  o: StageOptions = {},
): Promise<Record<string, StagedTarget>> {
  const paths = pathsOf(dir);
  const names = new Set<string>();
  for (const t of targets) {
    checkTargetName(t.name);
    if (names.has(t.name)) throw new UsageError(`target ${t.name} is given twice`);
    names.add(t.name);
    if (!isTargetKind(t.custom.kind)) throw new UsageError(`unknown target kind "${t.custom.kind}"`);
  }
  return withLock(paths, async () => {
    const state = await readState(dir);
    const staged = await readStaged(paths);
    const out: Record<string, StagedTarget> = {};
    // A few files at a time: copying is I/O, and the thread pool overlaps it.
    const stored = new Array<{ sha256: string; length: number }>(targets.length);
    let next = 0;
    const worker = async () => {
      while (next < targets.length) {
        const i = next++;
        stored[i] = await storeFile(paths, targets[i]!.name, targets[i]!.file);
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, targets.length) }, worker));
    for (const [i, t] of targets.entries()) {
      const { sha256, length } = stored[i]!;
      const entry: StagedTarget = { length, hashes: { sha256 }, custom: t.custom };
      const published = state.targets.signed.targets[t.name];
      const before =
        staged.add[t.name] ?? (published && { length: published.length, hashes: published.hashes });
      if (before && before.hashes.sha256 !== sha256 && !o.replace)
        throw new UsageError(
          `target ${t.name} already exists with other content; give it another name or pass --replace`,
        );
      out[t.name] = entry;
    }
    for (const [name, e] of Object.entries(out)) {
      staged.add[name] = e;
      staged.remove = staged.remove.filter((n) => n !== name);
    }
    await writeStaged(paths, staged);
    return out;
  });
}

/** Stages the removal of published targets (their files stay until pruned: old snapshots name them). */
export async function stageRemoval(dir: string, names: readonly string[]): Promise<void> {
  const paths = pathsOf(dir);
  await withLock(paths, async () => {
    const state = await readState(dir);
    const staged = await readStaged(paths);
    for (const n of names) {
      if (!state.targets.signed.targets[n] && !staged.add[n]) throw new UsageError(`no target named ${n}`);
      delete staged.add[n];
      if (state.targets.signed.targets[n] && !staged.remove.includes(n)) staged.remove.push(n);
    }
    await writeStaged(paths, staged);
  });
}
