// Berth's download cache. Content is stored by SHA-256 (blobs/sha256/<hex>), so anything the archive
// names by hash (indexes, .deb files) is fetched once and shared by every command and every build.

import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { exists } from "./fsutil.ts";

export const DEFAULT_CACHE_DIR = "/var/cache/berth";

export function cacheRoot(): string {
  return process.env.BERTH_CACHE || DEFAULT_CACHE_DIR;
}

export class ContentCache {
  readonly root: string;
  constructor(root: string = cacheRoot()) {
    this.root = root;
  }

  blobPath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a SHA-256 digest: ${sha256}`);
    return join(this.root, "blobs", "sha256", sha256.slice(0, 2), sha256);
  }

  async has(sha256: string): Promise<boolean> {
    return exists(this.blobPath(sha256));
  }

  /** A directory for non-content-addressed state of one kind (http metadata, databases). */
  async dir(...parts: string[]): Promise<string> {
    const d = join(this.root, ...parts);
    await mkdir(d, { recursive: true });
    return d;
  }
}

/** Keeps the `keep` newest files of `dir` whose names end with `suffix` (derived artefacts, not blobs). */
export async function pruneNewest(dir: string, suffix: string, keep: number): Promise<void> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith(suffix));
  if (files.length <= keep) return;
  const dated = await Promise.all(
    files.map(async (f) => ({
      f,
      t: await stat(join(dir, f)).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    })),
  );
  for (const { f } of dated.sort((a, b) => b.t - a.t).slice(keep)) await rm(join(dir, f), { force: true });
}
