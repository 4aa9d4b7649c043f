// The client every part of Berth uses to read the repository: nodes (updates, the agent, live patches),
// `berth db update --source berth-advisories` and `berth repo verify`. It is tuf-js's Updater — the TUF
// client workflow (root chain, timestamp, snapshot, targets; rollback, freeze, mix-and-match, endless
// data and signature checks) — with Berth's conventions around it:
//
//   - the repository at URL serves metadata/ and targets/ (what `berth repo serve` and any static web
//     server give for a publisher's repository/ directory); a local directory works too;
//   - the trust anchor is a root.json file (on a node, /usr/lib/berth/repository/root.json); the cache
//     directory keeps the metadata verified so far (rollback protection between runs) and starts again
//     from the anchor whenever the anchor file changes;
//   - downloads are verified before they appear at their destination (temp file, then rename);
//   - every refusal is one line naming the role and the reason (refusal.ts).

import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Metadata, Root, Snapshot, Targets, Timestamp } from "@tufjs/models";
import { Updater } from "tuf-js";
import { BerthError } from "../common/errors.ts";
import { tempPathFor } from "../common/fsutil.ts";
import { sha256Hex } from "../common/hash.ts";
import { RepoFetcher, roleOfUrl } from "./fetcher.ts";
import { withDirLock } from "./lock.ts";
import { refusalOf } from "./refusal.ts";
import "./tufjs-linear.ts";
import type { BerthCustom, RepoTarget, TargetKind } from "./targets.ts";

export { RepoRefusal } from "./refusal.ts";
export type { BerthCustom, RepoTarget, TargetKind } from "./targets.ts";
export { TARGET_KINDS } from "./targets.ts";

/** Where a Berth image carries its trust anchor and the repository's address. */
export const BAKED_ROOT = "/usr/lib/berth/repository/root.json";
export const BAKED_URL = "/usr/lib/berth/repository/url";

/** Root of the client's state on a node; BERTH_REPO_STATE moves it (tests). */
export function repoStateRoot(): string {
  return process.env.BERTH_REPO_STATE || "/var/lib/berth/repository";
}

/**
 * The default cache directory for a trust anchor: one per anchor content, so a node keeps its verified
 * metadata across runs and a different anchor never shares (or poisons) it.
 */
export function defaultCacheDir(trustedRoot: string, stateRoot: string = repoStateRoot()): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(trustedRoot);
  } catch {
    throw new BerthError(`trusted root ${trustedRoot} cannot be read`);
  }
  return join(stateRoot, sha256Hex(bytes).slice(0, 16));
}

/** The repository address baked into a Berth image, if any. */
export function bakedUrl(): string | undefined {
  try {
    return readFileSync(BAKED_URL, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The base URL of a repository given as a URL or a directory: a publisher directory (with
 * repository/metadata) or a served tree (with metadata/).
 */
export function repositoryUrl(location: string): string {
  if (/^(https?|file):\/\//.test(location)) return location.replace(/\/+$/, "");
  const dir = resolve(location);
  const served = existsSync(join(dir, "repository", "metadata")) ? join(dir, "repository") : dir;
  if (!existsSync(join(served, "metadata")))
    throw new BerthError(`${location} is neither a URL nor a repository directory (no metadata/)`);
  return pathToFileURL(served).href.replace(/\/+$/, "");
}

/** What the client trusts after a refresh, for reports. */
export interface TrustedState {
  root: { version: number; expires: string; roles: Record<string, { keyids: string[]; threshold: number }> };
  timestamp: { version: number; expires: string };
  snapshot: { version: number; expires: string };
  targets: { version: number; expires: string; count: number };
}

interface TrustedSet {
  root: Metadata<Root>;
  timestamp?: Metadata<Timestamp>;
  snapshot?: Metadata<Snapshot>;
  targets?: Metadata<Targets>;
}

export interface RepoClientOptions {
  url: string;
  /** Path of the initial root.json (the trust anchor). */
  trustedRoot: string;
  cacheDir: string;
  /** Abort a request that delivers nothing for this long (default 30 s). */
  stallMs?: number;
}

export class RepoClient {
  readonly url: string;
  readonly trustedRoot: string;
  readonly cacheDir: string;
  readonly fetcher: RepoFetcher;
  private updater?: Updater;

  constructor(o: RepoClientOptions) {
    this.url = repositoryUrl(o.url);
    this.trustedRoot = o.trustedRoot;
    this.cacheDir = o.cacheDir;
    this.fetcher = new RepoFetcher({ stallMs: o.stallMs });
  }

  private get metadataDir(): string {
    return join(this.cacheDir, "metadata");
  }
  private get metadataUrl(): string {
    return `${this.url}/metadata`;
  }
  private get targetsUrl(): string {
    return `${this.url}/targets`;
  }

  /**
   * Puts the anchor into the cache when the cache was made from another anchor (or none): the cache
   * then starts again from what this node was given to trust.
   */
  private seed(): Buffer {
    let anchor: Buffer;
    try {
      anchor = readFileSync(this.trustedRoot);
    } catch {
      throw new BerthError(`trusted root ${this.trustedRoot} cannot be read`);
    }
    const id = sha256Hex(anchor);
    const idFile = join(this.cacheDir, "anchor.sha256");
    let cachedId = "";
    try {
      cachedId = readFileSync(idFile, "utf8").trim();
    } catch {}
    if (cachedId !== id || !existsSync(join(this.metadataDir, "root.json"))) this.reset(anchor, id);
    return anchor;
  }

  private reset(anchor: Buffer, id: string): void {
    rmSync(this.metadataDir, { recursive: true, force: true });
    mkdirSync(this.metadataDir, { recursive: true, mode: 0o700 });
    writeSync(join(this.metadataDir, "root.json"), anchor);
    writeSync(join(this.cacheDir, "anchor.sha256"), `${id}\n`);
  }

  private newUpdater(workDir: string): Updater {
    const make = () => {
      // tuf-js reads and persists metadata in the directory it is given; it gets a working copy of the
      // cache, committed back only as refresh() decides.
      rmSync(workDir, { recursive: true, force: true });
      cpSync(this.metadataDir, workDir, { recursive: true });
      return new Updater({
        metadataDir: workDir,
        metadataBaseUrl: this.metadataUrl,
        targetBaseUrl: this.targetsUrl,
        fetcher: this.fetcher,
      });
    };
    const anchor = this.seed();
    try {
      return make();
    } catch (first) {
      // A cached root that no longer loads (a tampered cache): start again from the anchor.
      this.reset(anchor, sha256Hex(anchor));
      try {
        return make();
      } catch {
        throw refusalOf(first, { role: "root" });
      }
    }
  }

  /**
   * Moves what tuf-js persisted in the working copy into the cache, each file atomically. A root that
   * verified is kept even when a later step fails (the TUF spec persists each root of the chain: a
   * node that saw keys rotated never goes back to the old ones); the timestamp, snapshot and targets
   * only when the whole refresh succeeded, so a refused refresh leaves them exactly as they were.
   */
  private commit(workDir: string, all: boolean): void {
    for (const f of readdirSync(workDir)) {
      if (!all && f !== "root.json") continue;
      const from = join(workDir, f);
      const to = join(this.metadataDir, f);
      const data = readFileSync(from);
      let same = false;
      try {
        same = readFileSync(to).equals(data);
      } catch {}
      if (!same) writeSync(to, data);
    }
  }

  /** TUF refresh: the root chain, then timestamp, snapshot and targets, each verified. */
  async refresh(): Promise<void> {
    // One refresh at a time per cache: two processes committing interleaved sets would each be valid
    // but could leave an older timestamp over a newer one.
    mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 });
    await withDirLock(join(this.cacheDir, ".lock"), `the repository cache ${this.cacheDir}`, () =>
      this.refreshLocked(),
    );
  }

  private async refreshLocked(): Promise<void> {
    const workDir = join(this.cacheDir, `.refresh-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      const updater = this.newUpdater(workDir);
      const before = this.fetcher.log.length;
      try {
        await updater.refresh();
      } catch (e) {
        this.updater = undefined;
        this.commit(workDir, false);
        const last = this.fetcher.log.length > before ? this.fetcher.last : undefined;
        throw refusalOf(e, {
          role: last ? roleOfUrl(last.url, this.metadataUrl) : "root",
          url: last?.url,
          maxLength: last?.maxLength,
          networkError: last?.error,
        });
      }
      this.commit(workDir, true);
      this.updater = updater;
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  }

  private async trusted(): Promise<TrustedSet> {
    if (!this.updater) await this.refresh();
    // tuf-js keeps the verified metadata in a private field and offers no listing of targets; reading it
    // is the only way to enumerate them without re-parsing unverified bytes (pinned tuf-js 6.0.2).
    return (this.updater as unknown as { trustedSet: TrustedSet }).trustedSet;
  }

  /** Every target the trusted targets metadata lists (of one kind, if given), sorted by name. */
  async targets(kind?: TargetKind): Promise<RepoTarget[]> {
    const set = await this.trusted();
    const files = set.targets?.signed.targets ?? {};
    return Object.values(files)
      .map((f) => ({
        name: f.path,
        length: f.length,
        hashes: { ...f.hashes },
        custom: (f.custom ?? {}) as BerthCustom,
      }))
      .filter((t) => !kind || t.custom.kind === kind)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async target(name: string): Promise<RepoTarget | undefined> {
    const set = await this.trusted();
    const f = set.targets?.signed.targets[name];
    return (
      f && {
        name: f.path,
        length: f.length,
        hashes: { ...f.hashes },
        custom: (f.custom ?? {}) as BerthCustom,
      }
    );
  }

  /**
   * Downloads a target to `dest`, verified against the targets metadata (length and SHA-256) before it
   * is renamed into place; a refused download leaves `dest` as it was. Returns `dest`.
   */
  async download(name: string, dest: string, onProgress?: (bytes: number) => void): Promise<string> {
    const set = await this.trusted();
    const info = set.targets?.signed.targets[name];
    if (!info) throw new BerthError(`no target named ${name} in ${this.url}`);
    await mkdir(dirname(resolve(dest)), { recursive: true });
    const tmp = tempPathFor(resolve(dest));
    this.fetcher.onBytes = onProgress;
    try {
      await this.updater!.downloadTarget(info, tmp, this.targetsUrl);
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { force: true });
      const last = this.fetcher.last;
      throw refusalOf(e, {
        role: `target ${name}`,
        url: last?.url,
        maxLength: last?.maxLength,
        networkError: last?.error,
      });
    } finally {
      this.fetcher.onBytes = undefined;
    }
    return dest;
  }

  /** Versions, expiries and keys of what is trusted now (after a refresh). */
  async state(): Promise<TrustedState> {
    const set = await this.trusted();
    const root = set.root.signed;
    return {
      root: {
        version: root.version,
        expires: root.expires,
        roles: Object.fromEntries(
          Object.entries(root.roles).map(([n, r]) => [n, { keyids: [...r.keyIDs], threshold: r.threshold }]),
        ),
      },
      timestamp: { version: set.timestamp!.signed.version, expires: set.timestamp!.signed.expires },
      snapshot: { version: set.snapshot!.signed.version, expires: set.snapshot!.signed.expires },
      targets: {
        version: set.targets!.signed.version,
        expires: set.targets!.signed.expires,
        count: Object.keys(set.targets!.signed.targets).length,
      },
    };
  }
}

/** Small state files of the cache, written temp-then-rename; a torn cache is reset from the anchor. */
function writeSync(path: string, data: string | Buffer): void {
  const tmp = tempPathFor(path);
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}
