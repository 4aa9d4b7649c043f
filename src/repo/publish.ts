// The publisher's operations: init (keys and version 1 of every role), publish (staged targets signed into
// new targets, snapshot and timestamp metadata) and refresh (the online roles re-signed before they
// expire). Metadata objects and signatures come from @tufjs/models; nothing of TUF is re-implemented.

import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Metadata, type MetaFile, type Root, Snapshot, TargetFile, Targets, Timestamp } from "@tufjs/models";
import { BerthError, UsageError } from "../common/errors.ts";
import { exists, writeFileAtomic } from "../common/fsutil.ts";
import { DEFAULT_EXPIRIES, durationMs, type Expiries, expiryFrom } from "./expiry.ts";
import { generateKey, type RoleName, type SigningKey, saveKey } from "./keys.ts";
import {
  keysFor,
  makeRoot,
  pathsOf,
  type RepoConfig,
  type RepoPaths,
  type RepoState,
  type RootSpec,
  readState,
  SPEC_VERSION,
  signRole,
  withLock,
  writeMetadata,
} from "./repository.ts";
import { clearStaged, readStaged } from "./stage.ts";

export interface InitOptions {
  rootKeys?: number;
  rootThreshold?: number;
  targetsKeys?: number;
  targetsThreshold?: number;
  expires?: Partial<Expiries>;
  /** Where root and targets keys go (offline media); the online keys stay in DIR/keys. */
  offlineKeys?: string;
  /** Signing time (tests make metadata that is already expired). */
  now?: Date;
}

export interface InitResult {
  root: string;
  keys: { role: RoleName; keyid: string; file: string }[];
}

function count(n: number | undefined, dflt: number, what: string): number {
  const v = n ?? dflt;
  if (!Number.isInteger(v) || v < 1 || v > 32)
    throw new UsageError(`${what} must be a whole number from 1 to 32`);
  return v;
}

/** Creates DIR with fresh keys and version 1 of root, targets (empty), snapshot and timestamp. */
export async function initRepository(dir: string, o: InitOptions = {}): Promise<InitResult> {
  const paths = pathsOf(dir);
  if (await exists(paths.config)) throw new UsageError(`${dir} is already a Berth repository`);
  if ((await exists(dir)) && readdirSync(dir).length)
    throw new UsageError(`${dir} exists and is not empty; init wants a new or empty directory`);
  const nRoot = count(o.rootKeys, 3, "--root-keys");
  const tRoot = count(o.rootThreshold, Math.min(2, nRoot), "--root-threshold");
  const nTargets = count(o.targetsKeys, 1, "--targets-keys");
  const tTargets = count(o.targetsThreshold, 1, "--targets-threshold");
  if (tRoot > nRoot) throw new UsageError(`a root threshold of ${tRoot} needs at least ${tRoot} root keys`);
  if (tTargets > nTargets)
    throw new UsageError(`a targets threshold of ${tTargets} needs at least ${tTargets} targets keys`);
  const config: RepoConfig = { format: 1, expires: { ...DEFAULT_EXPIRIES, ...o.expires } };
  mkdirSync(paths.metadata, { recursive: true });
  mkdirSync(paths.targets, { recursive: true });

  const plan: [RoleName, number, number][] = [
    ["root", nRoot, tRoot],
    ["targets", nTargets, tTargets],
    ["snapshot", 1, 1],
    ["timestamp", 1, 1],
  ];
  const keys = new Map<string, SigningKey>();
  const written: InitResult["keys"] = [];
  const spec: RootSpec = {
    version: 1,
    expires: expiryFrom(config.expires.root, o.now),
    keys: {},
    roles: {
      root: { keyids: [], threshold: 1 },
      targets: { keyids: [], threshold: 1 },
      snapshot: { keyids: [], threshold: 1 },
      timestamp: { keyids: [], threshold: 1 },
    },
  };
  for (const [role, n, threshold] of plan) {
    for (let i = 0; i < n; i++) {
      const k = generateKey(role);
      const where = o.offlineKeys && (role === "root" || role === "targets") ? o.offlineKeys : paths.keys;
      written.push({ role, keyid: k.keyid, file: await saveKey(where, k) });
      keys.set(k.keyid, k);
      spec.keys[k.keyid] = k.key;
      spec.roles[role].keyids.push(k.keyid);
    }
    spec.roles[role].threshold = threshold;
  }
  const root = makeRoot(spec);
  const where = [paths.keys, ...(o.offlineKeys ? [o.offlineKeys] : [])];
  const rootMd = new Metadata(root);
  signRole(rootMd, "root", root, keys, where);
  await writeMetadata(paths, "1.root.json", rootMd);
  await writeMetadata(paths, "root.json", rootMd);
  const targets = new Targets({
    version: 1,
    specVersion: SPEC_VERSION,
    expires: expiryFrom(config.expires.targets, o.now),
  });
  await writeChain(
    { paths, config, root: rootMd, version: { snapshot: 0, timestamp: 0 } },
    keys,
    where,
    { targets },
    o.now,
  );
  await writeFileAtomic(paths.config, `${JSON.stringify(config, null, 2)}\n`);
  return { root: join(paths.metadata, "1.root.json"), keys: written };
}

export interface ChainBase {
  paths: RepoPaths;
  config: RepoConfig;
  root: Metadata<Root>;
  version: { snapshot: number; timestamp: number };
  /** The snapshot's record of targets.json, when targets do not change. */
  targetsMeta?: MetaFile;
  /** The timestamp's record of the snapshot, when the snapshot does not change. */
  snapshotMeta?: MetaFile;
}

export interface ChainResult {
  targetsVersion?: number;
  snapshotVersion?: number;
  timestampVersion: number;
}

/**
 * Signs and writes, in this order, new targets (when given), a new snapshot (when targets changed or
 * asked for) and always a new timestamp; each is written before the file that names it.
 */
export async function writeChain(
  base: ChainBase,
  keys: Map<string, SigningKey>,
  where: readonly string[],
  change: { targets?: Targets; snapshot?: boolean },
  now?: Date,
): Promise<ChainResult> {
  const { paths, config } = base;
  const root = base.root.signed;
  const out: ChainResult = { timestampVersion: base.version.timestamp + 1 };
  let targetsMeta = base.targetsMeta;
  if (change.targets) {
    const md = new Metadata(change.targets);
    signRole(md, "targets", root, keys, where);
    targetsMeta = await writeMetadata(paths, `${change.targets.version}.targets.json`, md);
    out.targetsVersion = change.targets.version;
  }
  let snapshotMeta = base.snapshotMeta;
  if (change.targets || change.snapshot || !snapshotMeta) {
    if (!targetsMeta) throw new BerthError("no targets metadata to record in the snapshot");
    const snapshot = new Snapshot({
      version: base.version.snapshot + 1,
      specVersion: SPEC_VERSION,
      expires: expiryFrom(config.expires.snapshot, now),
      meta: { "targets.json": targetsMeta },
    });
    const md = new Metadata(snapshot);
    signRole(md, "snapshot", root, keys, where);
    snapshotMeta = await writeMetadata(paths, `${snapshot.version}.snapshot.json`, md);
    out.snapshotVersion = snapshot.version;
  }
  const timestamp = new Timestamp({
    version: out.timestampVersion,
    specVersion: SPEC_VERSION,
    expires: expiryFrom(config.expires.timestamp, now),
    snapshotMeta,
  });
  const md = new Metadata(timestamp);
  signRole(md, "timestamp", root, keys, where);
  await writeMetadata(paths, "timestamp.json", md);
  return out;
}

export function chainBase(s: RepoState): ChainBase {
  return {
    paths: s.paths,
    config: s.config,
    root: s.root,
    version: { snapshot: s.snapshot.signed.version, timestamp: s.timestamp.signed.version },
    targetsMeta: s.snapshot.signed.meta["targets.json"],
    snapshotMeta: s.timestamp.signed.snapshotMeta,
  };
}

export interface PublishOptions {
  keyDirs?: readonly string[];
  expires?: Partial<Expiries>;
  now?: Date;
}

export interface PublishResult extends ChainResult {
  added: string[];
  removed: string[];
  targets: number;
}

/** Signs the staged targets into targets version N+1, then a new snapshot and timestamp. */
export async function publish(dir: string, o: PublishOptions = {}): Promise<PublishResult> {
  const paths = pathsOf(dir);
  return withLock(paths, async () => {
    const state = await readState(dir);
    state.config.expires = { ...state.config.expires, ...o.expires };
    const staged = await readStaged(paths);
    const { dirs, keys } = keysFor(paths, o.keyDirs);
    const files: Record<string, TargetFile> = { ...state.targets.signed.targets };
    for (const name of staged.remove) delete files[name];
    for (const [name, t] of Object.entries(staged.add))
      files[name] = new TargetFile({
        path: name,
        length: t.length,
        hashes: t.hashes,
        unrecognizedFields: { custom: t.custom as unknown as Record<string, never> },
      });
    const targets = new Targets({
      version: state.targets.signed.version + 1,
      specVersion: SPEC_VERSION,
      expires: expiryFrom(state.config.expires.targets, o.now),
      targets: files,
    });
    const chain = await writeChain(chainBase(state), keys, dirs, { targets }, o.now);
    await clearStaged(paths);
    return {
      ...chain,
      added: Object.keys(staged.add),
      removed: staged.remove,
      targets: Object.keys(files).length,
    };
  });
}

export interface RefreshOptions {
  keyDirs?: readonly string[];
  /** Re-sign the snapshot too, whatever its expiry. */
  snapshot?: boolean;
  now?: Date;
}

export interface RefreshResult extends ChainResult {
  /** Roles that expire soon and need an offline key to renew (publish, or rotate for root). */
  expiringSoon: { role: RoleName; expires: string }[];
}

/**
 * Re-signs the timestamp (version N+1, new expiry) with the online key; the snapshot too when asked or
 * when it would expire within two timestamp periods. Targets and root need offline keys: they are
 * only reported when they expire within a week.
 */
export async function refresh(dir: string, o: RefreshOptions = {}): Promise<RefreshResult> {
  const paths = pathsOf(dir);
  return withLock(paths, async () => {
    const state = await readState(dir);
    const now = o.now ?? new Date();
    const { dirs, keys } = keysFor(paths, o.keyDirs);
    const soon = now.getTime() + 2 * durationMs(state.config.expires.timestamp, now);
    const snapshot = o.snapshot || Date.parse(state.snapshot.signed.expires) < soon;
    const chain = await writeChain(chainBase(state), keys, dirs, { snapshot }, now);
    const week = now.getTime() + 7 * 86400_000;
    const expiringSoon = (
      [
        ["root", state.root.signed.expires],
        ["targets", state.targets.signed.expires],
      ] as [RoleName, string][]
    )
      .filter(([, e]) => Date.parse(e) < week)
      .map(([role, expires]) => ({ role, expires }));
    return { ...chain, expiringSoon };
  });
}
