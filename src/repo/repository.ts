// A Berth repository on the publisher's disk, and the signed state in it. The directory holds:
//
//   berth-repo.json         settings (expiry durations)
//   keys/<role>/<keyid>.json signing keys, 0600 (move keys/root and keys/targets to offline media and
//                           pass --keys DIR to the commands that need them)
//   staged.json             targets added since the last publish, not yet signed
//   repository/             what is served, plain static files:
//     metadata/N.root.json, root.json, N.targets.json, N.snapshot.json, timestamp.json
//     targets/<dir>/<sha256>.<name>   (TUF consistent snapshots: a target file is named by its hash)
//
// Every change runs under a lock in the directory, and metadata is written temp-then-rename with
// timestamp.json last, so a client reading at any moment sees a complete, consistent set.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Key,
  Metadata,
  MetadataKind,
  MetaFile,
  Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from "@tufjs/models";
import { BerthError, UsageError } from "../common/errors.ts";
import { exists, writeFileAtomic } from "../common/fsutil.ts";
import { sha256Hex } from "../common/hash.ts";
import { DEFAULT_EXPIRIES, type Expiries } from "./expiry.ts";
import { loadKeys, type RoleName, type SigningKey, signerOf } from "./keys.ts";
import { withDirLock } from "./lock.ts";
import "./tufjs-linear.ts";

export const SPEC_VERSION = "1.0.31";

export interface RepoPaths {
  dir: string;
  config: string;
  keys: string;
  staged: string;
  lock: string;
  /** The served tree. */
  repository: string;
  metadata: string;
  targets: string;
}

export function pathsOf(dir: string): RepoPaths {
  const repository = join(dir, "repository");
  return {
    dir,
    config: join(dir, "berth-repo.json"),
    keys: join(dir, "keys"),
    staged: join(dir, "staged.json"),
    lock: join(dir, ".lock"),
    repository,
    metadata: join(repository, "metadata"),
    targets: join(repository, "targets"),
  };
}

export interface RepoConfig {
  format: 1;
  expires: Expiries;
}

export interface RepoState {
  paths: RepoPaths;
  config: RepoConfig;
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new BerthError(`${what}: ${path} is missing`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BerthError(`${what}: ${path} is not valid JSON (${(e as Error).message})`);
  }
}

function readMeta<T extends MetadataKind>(path: string, kind: T) {
  const data = readJson(path, `${kind} metadata`) as Parameters<typeof Metadata.fromJSON>[1];
  try {
    // The overloads of fromJSON pick the type from the kind; one call site serves all four.
    return Metadata.fromJSON(kind as MetadataKind.Root, data) as unknown as Metadata<
      T extends MetadataKind.Root
        ? Root
        : T extends MetadataKind.Targets
          ? Targets
          : T extends MetadataKind.Snapshot
            ? Snapshot
            : Timestamp
    >;
  } catch (e) {
    throw new BerthError(`${kind} metadata: ${path} is malformed (${(e as Error).message})`);
  }
}

/** The highest N with metadata/N.root.json. */
export function latestRootVersion(metadataDir: string): number {
  let best = 0;
  for (const f of readdirSync(metadataDir)) {
    const m = /^(\d+)\.root\.json$/.exec(f);
    if (m) best = Math.max(best, Number(m[1]));
  }
  return best;
}

export async function isRepository(dir: string): Promise<boolean> {
  return exists(pathsOf(dir).config);
}

/** Reads the publisher directory's settings and its current signed metadata. */
export async function readState(dir: string): Promise<RepoState> {
  const paths = pathsOf(dir);
  if (!(await exists(paths.config)))
    throw new UsageError(
      `${dir} is not a Berth repository (no berth-repo.json; make one with berth repo init)`,
    );
  const config = readJson(paths.config, "repository settings") as RepoConfig;
  config.expires = { ...DEFAULT_EXPIRIES, ...config.expires };
  const rootVersion = latestRootVersion(paths.metadata);
  if (!rootVersion) throw new BerthError(`${dir}: no N.root.json in ${paths.metadata}`);
  const root = readMeta(join(paths.metadata, `${rootVersion}.root.json`), MetadataKind.Root);
  const timestamp = readMeta(join(paths.metadata, "timestamp.json"), MetadataKind.Timestamp);
  const snapshot = readMeta(
    join(paths.metadata, `${timestamp.signed.snapshotMeta.version}.snapshot.json`),
    MetadataKind.Snapshot,
  );
  const targetsMeta = snapshot.signed.meta["targets.json"];
  if (!targetsMeta) throw new BerthError(`${dir}: the snapshot lists no targets.json`);
  const targets = readMeta(join(paths.metadata, `${targetsMeta.version}.targets.json`), MetadataKind.Targets);
  return { paths, config, root, targets, snapshot, timestamp };
}

export interface RootSpec {
  version: number;
  expires: string;
  keys: Record<string, Key>;
  roles: Record<RoleName, { keyids: string[]; threshold: number }>;
}

/**
 * Root's signed part from keys and role thresholds. Built through Root.fromJSON because
 * @tufjs/models does not export its Role class; the JSON form is TUF's own.
 */
export function makeRoot(spec: RootSpec): Root {
  return Root.fromJSON({
    _type: "root",
    spec_version: SPEC_VERSION,
    version: spec.version,
    expires: spec.expires,
    consistent_snapshot: true,
    keys: Object.fromEntries(Object.entries(spec.keys).map(([id, k]) => [id, k.toJSON()])),
    roles: spec.roles,
  });
}

/** The bytes a metadata file is written as (compact JSON: the timestamp is fetched on every refresh). */
export function metadataBytes(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(md.toJSON()));
}

/** Writes metadata/NAME atomically; returns the MetaFile that describes it (for snapshot/timestamp). */
export async function writeMetadata(
  paths: RepoPaths,
  name: string,
  md: Metadata<Root | Targets | Snapshot | Timestamp>,
): Promise<MetaFile> {
  const bytes = metadataBytes(md);
  await writeFileAtomic(join(paths.metadata, name), bytes, 0o644);
  return new MetaFile({
    version: md.signed.version,
    length: bytes.length,
    hashes: { sha256: sha256Hex(bytes) },
  });
}

/**
 * Signs `md` for `role` with every key `root` lists for it that is among `keys`; fails when fewer than
 * the role's threshold are at hand (the message says where keys were looked for).
 */
export function signRole(
  md: Metadata<Root | Targets | Snapshot | Timestamp>,
  role: RoleName,
  root: Root,
  keys: Map<string, SigningKey>,
  where: readonly string[],
  append = false,
): void {
  const r = root.roles[role];
  if (!r) throw new BerthError(`root lists no ${role} role`);
  const have = r.keyIDs.map((id) => keys.get(id)).filter((k): k is SigningKey => !!k);
  if (have.length < r.threshold)
    throw new BerthError(
      `${role}: ${have.length} of the ${r.threshold} signing keys it needs are at hand (looked in ${where.join(", ")}; pass --keys DIR for offline keys)`,
    );
  if (!append) md.signatures = {};
  for (const k of have) md.sign(signerOf(k), true);
}

/** The key directories to look in: the ones given and the repository's own keys/. */
export function keyDirsOf(paths: RepoPaths, given: readonly string[] | undefined): string[] {
  // The repository's own keys/ (the online keys) always; offline media besides.
  return [...new Set([...(given ?? []), paths.keys])];
}

export function keysFor(paths: RepoPaths, given: readonly string[] | undefined) {
  const dirs = keyDirsOf(paths, given);
  return { dirs, keys: loadKeys(dirs) };
}

/** Runs `fn` holding the repository's lock, so two publishers never interleave their writes. */
export function withLock<T>(paths: RepoPaths, fn: () => Promise<T>): Promise<T> {
  return withDirLock(paths.lock, paths.dir, fn);
}
