// Reading tar streams (tar-stream does the format) and extracting them without ever writing outside the
// target: no absolute or ".." entry names, no relative symlink that climbs out, nothing written through
// a symlink, hard links only to regular files already extracted, and limits against tar bombs.

import { constants } from "node:fs";
import { link, lstat, mkdir, open, rm, symlink, utimes } from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { BerthError } from "./errors.ts";

export type TarEntryType =
  | "file"
  | "directory"
  | "symlink"
  | "link"
  | "character-device"
  | "block-device"
  | "fifo";

export interface TarEntryInfo {
  /** Normalised relative path (no leading "./" or "/"); "" for the archive root entry. */
  path: string;
  type: TarEntryType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname?: string;
}

export class UnsafeArchiveError extends BerthError {}

/** Normalises an entry name; refuses absolute names and any ".." component. */
export function safeEntryPath(name: string): string {
  if (name.startsWith("/")) throw new UnsafeArchiveError(`refusing absolute path in archive: ${name}`);
  if (name.includes("\0")) throw new UnsafeArchiveError("refusing a path with a NUL byte in archive");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafeArchiveError(`refusing path with "..": ${name}`);
  return parts.join("/");
}

function normaliseType(t: string | null | undefined): TarEntryType | undefined {
  switch (t) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
    case "symlink":
    case "link":
    case "character-device":
    case "block-device":
    case "fifo":
      return t;
    default:
      return undefined;
  }
}

export interface WalkLimits {
  /** Most entries to accept. */
  maxEntries?: number;
  /** Most bytes of file content to accept in total. */
  maxBytes?: number;
}

const DEFAULT_LIMITS: Required<WalkLimits> = { maxEntries: 2_000_000, maxBytes: 64 * 1024 ** 3 };

/**
 * Calls `onEntry` for each entry of a tar stream, in order. The handler must consume `body`
 * (or leave it; it is drained automatically). Paths are checked with safeEntryPath unless `raw`.
 */
export async function walkTar(
  source: Readable,
  onEntry: (info: TarEntryInfo, body: Readable) => Promise<void> | void,
  opts: WalkLimits & { raw?: boolean; what?: string } = {},
): Promise<void> {
  const limits = { ...DEFAULT_LIMITS, ...opts };
  const extract = tar.extract();
  const feeding = pipeline(source, extract).catch((e: Error) => {
    extract.destroy(e);
  });
  let entries = 0;
  let bytes = 0;
  const what = opts.what ?? "tar archive";
  try {
    for await (const entry of extract) {
      const h = entry.header;
      entries++;
      if (entries > limits.maxEntries)
        throw new UnsafeArchiveError(`${what} has more than ${limits.maxEntries} entries`);
      bytes += h.size ?? 0;
      if (bytes > limits.maxBytes)
        throw new UnsafeArchiveError(`${what} holds more than ${limits.maxBytes} bytes`);
      const type = normaliseType(h.type);
      if (!type) {
        entry.resume();
        continue;
      }
      const info: TarEntryInfo = {
        path: opts.raw ? h.name : safeEntryPath(h.name),
        type,
        size: h.size ?? 0,
        mode: h.mode ?? 0,
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        mtime: h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0,
      };
      if (h.linkname) info.linkname = h.linkname;
      await onEntry(info, entry as unknown as Readable);
      entry.resume();
    }
  } catch (e) {
    extract.destroy();
    source.destroy();
    if (e instanceof BerthError) throw e;
    throw new BerthError(`corrupt ${what}: ${(e as Error).message}`);
  }
  await feeding;
}

/** Lists a tar stream. */
export async function listTar(
  source: Readable,
  opts: WalkLimits & { what?: string } = {},
): Promise<TarEntryInfo[]> {
  const out: TarEntryInfo[] = [];
  await walkTar(source, (info) => void out.push(info), opts);
  return out;
}

/** Reads one file's content out of a tar stream; undefined when absent. */
export async function readTarFile(
  source: Readable,
  path: string,
  opts: { what?: string; limit?: number } = {},
): Promise<Buffer | undefined> {
  const want = safeEntryPath(path);
  const limit = opts.limit ?? 256 * 1024 * 1024;
  let found: Buffer | undefined;
  await walkTar(
    source,
    async (info, body) => {
      if (found || info.path !== want || info.type !== "file") return;
      if (info.size > limit)
        throw new BerthError(`${path} is ${info.size} bytes, over the ${limit}-byte limit`);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      found = Buffer.concat(chunks);
    },
    { what: opts.what },
  );
  return found;
}

export interface ExtractOptions extends WalkLimits {
  what?: string;
  /** Restore file modification times from the archive (default true). */
  keepTimes?: boolean;
}

export interface ExtractResult {
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  /** Device nodes and FIFOs, which are not created. */
  skipped: string[];
}

/** Fails if any existing component of `rel`'s parent inside `root` is a symlink; creates missing ones. */
async function ensureParentInside(root: string, rel: string): Promise<void> {
  const parts = rel.split("/").slice(0, -1);
  let cur = root;
  for (const p of parts) {
    cur = join(cur, p);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) {
      await mkdir(cur);
      continue;
    }
    if (st.isSymbolicLink())
      throw new UnsafeArchiveError(
        `refusing to write ${rel} through the symlink ${cur.slice(root.length + 1)}`,
      );
    if (!st.isDirectory())
      throw new UnsafeArchiveError(`cannot write ${rel}: ${cur.slice(root.length + 1)} is not a directory`);
  }
}

/** Where a relative symlink at `rel` pointing to `target` leads, relative to the root; throws if outside. */
export function checkSymlinkTarget(rel: string, target: string): void {
  if (target === "") throw new UnsafeArchiveError(`refusing symlink ${rel} with an empty target`);
  if (target.startsWith("/")) return; // interpreted inside the root when the tree is used as a root file system
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
  if (resolved === ".." || resolved.startsWith("../"))
    throw new UnsafeArchiveError(`refusing symlink ${rel} -> ${target}: it leads outside the target`);
}

/** Extracts a tar stream into `dest` (created if needed). */
export async function extractTar(
  source: Readable,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  await mkdir(dest, { recursive: true });
  const result: ExtractResult = { files: 0, directories: 0, symlinks: 0, hardlinks: 0, skipped: [] };
  const times: [string, number][] = [];
  await walkTar(
    source,
    async (info, body) => {
      const rel = info.path;
      if (rel === "") return; // the "./" entry is dest itself
      await ensureParentInside(dest, rel);
      const target = join(dest, rel);
      const existing = await lstat(target).catch(() => undefined);
      const mode = info.mode & 0o777;
      switch (info.type) {
        case "directory":
          if (existing && !existing.isDirectory()) await rm(target, { force: true });
          if (!existing?.isDirectory()) await mkdir(target, { mode: mode | 0o700 });
          result.directories++;
          break;
        case "file": {
          if (existing?.isDirectory())
            throw new UnsafeArchiveError(`${rel} is a directory; refusing to replace it with a file`);
          if (existing) await rm(target);
          const fh = await open(
            target,
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            mode,
          );
          try {
            for await (const chunk of body) await fh.write(chunk as Buffer);
            await fh.chmod(mode);
          } finally {
            await fh.close();
          }
          result.files++;
          break;
        }
        case "symlink": {
          const linkTarget = info.linkname ?? "";
          checkSymlinkTarget(rel, linkTarget);
          if (existing?.isDirectory())
            throw new UnsafeArchiveError(`${rel} is a directory; refusing to replace it with a symlink`);
          if (existing) await rm(target);
          await symlink(linkTarget, target);
          result.symlinks++;
          return; // symlink times are not restored
        }
        case "link": {
          const from = safeEntryPath(info.linkname ?? "");
          await ensureParentInside(dest, from);
          const src = join(dest, from);
          const st = await lstat(src).catch(() => undefined);
          if (!st?.isFile())
            throw new UnsafeArchiveError(
              `hard link ${rel} -> ${info.linkname}: target is not a regular file in the archive`,
            );
          if (existing) await rm(target);
          await link(src, target);
          result.hardlinks++;
          return;
        }
        default:
          result.skipped.push(rel);
          return;
      }
      if (opts.keepTimes !== false) times.push([target, info.mtime]);
    },
    opts,
  );
  // Directory times last: creating entries inside a directory changes its mtime.
  for (const [p, t] of times.reverse()) await utimes(p, t, t).catch(() => {});
  return result;
}
