// Client for a Debian archive: signed Release metadata, hash-checked Packages indexes and .deb files,
// all kept in Berth's content-addressed cache so a second run downloads only what changed.

import { createReadStream } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { deserialize, serialize } from "node:v8";
import { ContentCache } from "../common/cache.ts";
import { compressionOfName, decompressor } from "../common/decompress.ts";
import { BerthError } from "../common/errors.ts";
import { exists, tempPathFor, writeFileAtomic, writeStreamAtomic } from "../common/fsutil.ts";
import { HashingStream, sha256Hex } from "../common/hash.ts";
import { HttpNotFound, httpGet, httpGetBuffer } from "../common/http.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import { verifyClearsigned, verifyDetached } from "./gpg.ts";
import { INDEX_FIELDS, PackageIndex, type PackageRecord, type ParsedPackages } from "./index.ts";
import { checkRelease, parseRelease, type Release, type ReleaseFile } from "./release.ts";
import type { Repository } from "./sources.ts";

export interface VerifiedRelease {
  repo: Repository;
  release: Release;
  signers: string[];
}

export interface ArchiveOptions {
  cache?: ContentCache;
  progress?: Progress;
  /** Use cached Release metadata without asking the mirror (no network). */
  offline?: boolean;
  /** Parallel downloads of .deb files. */
  concurrency?: number;
}

interface HttpMeta {
  etag?: string;
  lastModified?: string;
}

const INDEX_COMPRESSIONS = [".xz", ".gz", ""];

/** Bumped when ParsedPackages or PackageRecord changes shape: old cache files are then ignored. */
const PARSED_FORMAT = 1;

export class Archive {
  readonly cache: ContentCache;
  private readonly progress: Progress;
  private readonly offline: boolean;
  private readonly concurrency: number;

  constructor(o: ArchiveOptions = {}) {
    this.cache = o.cache ?? new ContentCache();
    this.progress = o.progress ?? silentProgress;
    this.offline = o.offline ?? process.env.BERTH_OFFLINE === "1";
    this.concurrency = o.concurrency ?? 6;
  }

  private distUrl(repo: Repository, path: string): string {
    return `${repo.uri}/dists/${repo.suite}/${path}`;
  }

  /**
   * Fetches and verifies InRelease (or Release + Release.gpg). The verified bytes are cached per URL and
   * refreshed with a conditional request, so an unchanged suite costs one round trip.
   */
  async release(repo: Repository): Promise<VerifiedRelease> {
    const url = this.distUrl(repo, "InRelease");
    const dir = await this.cache.dir("metadata");
    const key = sha256Hex(url);
    const dataPath = join(dir, key);
    const metaPath = join(dir, `${key}.json`);
    let cached: Buffer | undefined;
    let meta: HttpMeta = {};
    try {
      cached = await readFile(dataPath);
      meta = JSON.parse(await readFile(metaPath, "utf8")) as HttpMeta;
    } catch {
      cached = undefined;
    }

    let data: Buffer | undefined;
    if (this.offline) {
      if (!cached) throw new BerthError(`offline, and no cached metadata for ${url}`);
      data = cached;
    } else {
      try {
        const res = await httpGet(url, cached ? meta : {});
        if (res.notModified && cached) data = cached;
        else {
          const chunks: Buffer[] = [];
          for await (const c of res.stream) chunks.push(c as Buffer);
          data = Buffer.concat(chunks);
          meta = { etag: res.etag, lastModified: res.lastModified };
        }
      } catch (e) {
        if (!(e instanceof HttpNotFound)) throw e;
        return this.detachedRelease(repo);
      }
    }
    const verified = await verifyClearsigned(data, repo.keyring, url);
    const release = parseRelease(verified.text);
    checkRelease(release, repo.suite);
    if (data !== cached) {
      await writeFileAtomic(dataPath, data);
      await writeFileAtomic(metaPath, JSON.stringify(meta));
    }
    return { repo, release, signers: verified.signers };
  }

  /** Older mirrors without InRelease: Release plus a detached Release.gpg. */
  private async detachedRelease(repo: Repository): Promise<VerifiedRelease> {
    const releaseUrl = this.distUrl(repo, "Release");
    const [text, sig] = await Promise.all([
      httpGetBuffer(releaseUrl),
      httpGetBuffer(this.distUrl(repo, "Release.gpg")),
    ]);
    const dir = await this.cache.dir("metadata", "tmp");
    const tp = join(dir, `${process.pid}-Release`);
    const ts = `${tp}.gpg`;
    try {
      await writeFile(tp, text);
      await writeFile(ts, sig);
      const signers = await verifyDetached(tp, ts, repo.keyring, releaseUrl);
      const release = parseRelease(text.toString("utf8"));
      checkRelease(release, repo.suite);
      return { repo, release, signers };
    } finally {
      await rm(tp, { force: true });
      await rm(ts, { force: true });
    }
  }

  /**
   * The uncompressed Packages index of one component, verified against the Release hashes, as a path
   * into the cache.
   */
  async packagesIndex(vr: VerifiedRelease, component: string): Promise<string> {
    return this.indexFile(vr, `${component}/binary-${vr.repo.architecture}/Packages`);
  }

  /**
   * Any index file the Release lists (Packages, Contents-amd64, ...), uncompressed and verified against
   * the Release hashes, as a path into the cache. `base` is the path without compression suffix.
   */
  async indexFile(vr: VerifiedRelease, base: string): Promise<string> {
    const plain = vr.release.files.get(base);
    if (plain && (await this.cache.has(plain.sha256))) return this.cache.blobPath(plain.sha256);
    for (const ext of INDEX_COMPRESSIONS) {
      const entry = vr.release.files.get(base + ext);
      if (!entry) continue;
      if (!plain && ext !== "") {
        const cached = join(this.cache.root, "indexes", `${entry.sha256}.plain`);
        if (await exists(cached)) return cached;
      }
      if (this.offline) throw new BerthError(`offline, and ${base} of ${vr.repo.suite} is not cached`);
      return this.fetchIndex(vr, entry, plain);
    }
    throw new BerthError(
      `${vr.repo.suite} has no ${base} index (components: ${vr.release.components.join(", ")})`,
    );
  }

  /**
   * A file the Release lists, exactly as published (compressed), verified and stored by its SHA-256.
   * For large indexes that are filtered while streaming rather than kept uncompressed.
   */
  async rawIndexFile(vr: VerifiedRelease, path: string): Promise<string> {
    const entry = vr.release.files.get(path);
    if (!entry) throw new BerthError(`${vr.repo.suite} has no ${path}`);
    const target = this.cache.blobPath(entry.sha256);
    if (await this.cache.has(entry.sha256)) return target;
    if (this.offline) throw new BerthError(`offline, and ${path} of ${vr.repo.suite} is not cached`);
    const { url, res } = await this.getIndexBody(vr, entry);
    const task = this.progress.task(`${vr.repo.suite} ${path}`, entry.size, "bytes");
    const h = new HashingStream();
    h.on("data", (c: Buffer) => task.advance(c.length));
    try {
      await writeStreamAtomic(target, res.stream, [h], () => {
        const got = h.digest();
        if (got !== entry.sha256 || h.bytes !== entry.size)
          throw new BerthError(`hash mismatch for ${url}: Release says sha256 ${entry.sha256}, got ${got}`);
      });
    } finally {
      task.done();
    }
    return target;
  }

  /**
   * Opens an index file for download: by hash where the suite offers it (those URLs never change
   * while the mirror updates), else, or when a mirror lacks the by-hash copy, by name. Either way the
   * content is checked against the Release hash afterwards.
   */
  private async getIndexBody(
    vr: VerifiedRelease,
    entry: ReleaseFile,
  ): Promise<{ url: string; res: Awaited<ReturnType<typeof httpGet>> }> {
    if (vr.release.acquireByHash) {
      const dir = entry.path.slice(0, entry.path.lastIndexOf("/"));
      const url = this.distUrl(vr.repo, `${dir}/by-hash/SHA256/${entry.sha256}`);
      try {
        return { url, res: await httpGet(url) };
      } catch (e) {
        if (!(e instanceof HttpNotFound)) throw e;
      }
    }
    const url = this.distUrl(vr.repo, entry.path);
    return { url, res: await httpGet(url) };
  }

  private async fetchIndex(
    vr: VerifiedRelease,
    entry: ReleaseFile,
    plain: ReleaseFile | undefined,
  ): Promise<string> {
    const { url, res } = await this.getIndexBody(vr, entry);
    const task = this.progress.task(`${vr.repo.suite} ${entry.path}`, entry.size, "bytes");
    const raw = new HashingStream();
    raw.on("data", (c: Buffer) => task.advance(c.length));
    const target = plain
      ? this.cache.blobPath(plain.sha256)
      : join(await this.cache.dir("indexes"), `${entry.sha256}.plain`);
    // The compressed file is verified in full before a decompressor ever sees it.
    const compressed = `${tempPathFor(target)}.download`;
    try {
      await writeStreamAtomic(compressed, res.stream, [raw], () => {
        const got = raw.digest();
        if (got !== entry.sha256 || raw.bytes !== entry.size)
          throw new BerthError(
            `hash mismatch for ${url}: Release says sha256 ${entry.sha256} (${entry.size} bytes), got ${got} (${raw.bytes} bytes)`,
          );
      });
      const out = new HashingStream();
      await writeStreamAtomic(
        target,
        createReadStream(compressed),
        [decompressor(compressionOfName(entry.path), entry.path), out],
        () => {
          if (plain && out.digest() !== plain.sha256)
            throw new BerthError(
              `hash mismatch for uncompressed ${plain.path}: Release says ${plain.sha256}`,
            );
        },
      );
    } finally {
      task.done();
      await rm(compressed, { force: true });
    }
    return target;
  }

  /** Loads the Packages indexes of several repositories into one index. */
  async loadIndex(
    repos: Repository[],
    architecture = repos[0]?.architecture ?? "amd64",
  ): Promise<PackageIndex> {
    const index = new PackageIndex(architecture);
    const releases = await Promise.all(repos.map((r) => this.release(r)));
    for (const vr of releases) {
      for (const component of vr.repo.components) {
        const path = await this.packagesIndex(vr, component);
        index.addParsed(await this.parsedPackages(index, path, `${vr.repo.suite}/${component}`, vr.repo.uri));
      }
    }
    return index;
  }

  /**
   * A Packages file parsed, from the cache when it was parsed before: parsing trixie's 60,000 stanzas
   * is most of a warm build's planning time, and a verified index never changes under its digest (the
   * cache path names it). A cache file that does not deserialize is parsed again and replaced.
   */
  private async parsedPackages(
    index: PackageIndex,
    path: string,
    origin: string,
    baseUri: string,
  ): Promise<ParsedPackages> {
    const key = sha256Hex(
      JSON.stringify([PARSED_FORMAT, basename(path), origin, baseUri, index.architecture, [...INDEX_FIELDS]]),
    );
    const file = join(await this.cache.dir("derived", "packages-parsed"), `${key}.v8`);
    try {
      const p = deserialize(await readFile(file)) as ParsedPackages;
      if (Array.isArray(p?.names) && Array.isArray(p?.records)) return p;
    } catch {}
    const parsed = await index.parsePackagesFile(path, origin, baseUri);
    await writeFileAtomic(file, serialize(parsed)).catch(() => {}); // a read-only cache only costs time
    return parsed;
  }

  /** Downloads one .deb (or finds it in the cache) and checks its size and SHA-256. */
  async fetchDeb(rec: PackageRecord): Promise<string> {
    if (!rec.filename || !rec.sha256 || !rec.baseUri)
      throw new BerthError(
        `${rec.name} ${rec.version}: the index gives no Filename/SHA256 to download it from`,
      );
    const target = this.cache.blobPath(rec.sha256);
    if (await this.cache.has(rec.sha256)) return target;
    if (this.offline) throw new BerthError(`offline, and ${rec.filename} is not cached`);
    const url = `${rec.baseUri}/${rec.filename}`;
    const res = await httpGet(url);
    const h = new HashingStream();
    await writeStreamAtomic(target, res.stream, [h], () => {
      const got = h.digest();
      if (got !== rec.sha256 || (rec.size !== undefined && h.bytes !== rec.size))
        throw new BerthError(
          `hash mismatch for ${url}: index says sha256 ${rec.sha256} (${rec.size} bytes), got ${got} (${h.bytes} bytes)`,
        );
    });
    return target;
  }

  /** Downloads many .deb files in parallel; returns their cache paths in the same order. */
  async fetchDebs(recs: readonly PackageRecord[]): Promise<string[]> {
    const total = recs.reduce((s, r) => s + (r.size ?? 0), 0);
    const task = this.progress.task(`downloading ${recs.length} packages`, total, "bytes");
    const out: string[] = new Array(recs.length);
    let next = 0;
    const worker = async () => {
      while (next < recs.length) {
        const i = next++;
        out[i] = await this.fetchDeb(recs[i]!);
        task.advance(recs[i]!.size ?? 0);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.concurrency, recs.length) }, worker));
    } finally {
      task.done();
    }
    return out;
  }
}
