// Key rotation. Every rotation is a new root, N+1.root.json, signed by a threshold of the old root keys
// (so a client that trusts N accepts it) and by a threshold of the new root's own root keys (so N+1 stands
// on its own for N+2). Rotating a key of targets, snapshot or timestamp then re-signs that role and the
// ones below it with the new keys. Old key files move to <keys>/retired/.

import { dirname } from "node:path";
import { Metadata, Targets } from "@tufjs/models";
import { UsageError } from "../common/errors.ts";
import { type Expiries, expiryFrom } from "./expiry.ts";
import { generateKey, type RoleName, retireKey, type SigningKey, saveKey } from "./keys.ts";
import { type ChainResult, chainBase, writeChain } from "./publish.ts";
import {
  keysFor,
  makeRoot,
  pathsOf,
  type RootSpec,
  readState,
  SPEC_VERSION,
  signRole,
  withLock,
  writeMetadata,
} from "./repository.ts";

export interface RotateOptions {
  role: RoleName;
  /** How many keys the role gets (default: as many as it has). */
  count?: number;
  /** How many must sign (default: as many as now, at most `count`). */
  threshold?: number;
  /** Where to look for the current keys (default DIR/keys). */
  keyDirs?: readonly string[];
  /** Where the new keys go (default: beside the role's current keys). */
  newKeys?: string;
  expires?: Partial<Expiries>;
  now?: Date;
}

export interface RotateResult {
  role: RoleName;
  rootVersion: number;
  added: string[];
  retired: string[];
  threshold: number;
  chain?: ChainResult;
}

export async function rotate(dir: string, o: RotateOptions): Promise<RotateResult> {
  const paths = pathsOf(dir);
  return withLock(paths, async () => {
    const state = await readState(dir);
    const expires = { ...state.config.expires, ...o.expires };
    const { dirs, keys } = keysFor(paths, o.keyDirs);
    const old = state.root.signed;
    const oldRole = old.roles[o.role]!;
    const count = o.count ?? oldRole.keyIDs.length;
    const threshold = o.threshold ?? Math.min(oldRole.threshold, count);
    if (!Number.isInteger(count) || count < 1 || count > 32)
      throw new UsageError("--count must be from 1 to 32");
    if (!Number.isInteger(threshold) || threshold < 1 || threshold > count)
      throw new UsageError(`--threshold must be from 1 to the number of keys (${count})`);
    // Check the old root keys are at hand before making anything.
    const probe = new Metadata(old);
    signRole(probe, "root", old, keys, dirs);

    const current = oldRole.keyIDs.map((id) => keys.get(id)).filter((k): k is SigningKey => !!k);
    const where = o.newKeys ?? (current[0]?.file ? dirname(dirname(current[0].file)) : paths.keys);
    const fresh: SigningKey[] = [];
    for (let i = 0; i < count; i++) {
      const k = generateKey(o.role);
      await saveKey(where, k);
      fresh.push(k);
    }
    const roles = Object.fromEntries(
      Object.entries(old.roles).map(([n, r]) => [n, { keyids: [...r.keyIDs], threshold: r.threshold }]),
    ) as RootSpec["roles"];
    roles[o.role] = { keyids: fresh.map((k) => k.keyid), threshold };
    const used = new Set(Object.values(roles).flatMap((r) => r.keyids));
    const spec: RootSpec = {
      version: old.version + 1,
      expires: expiryFrom(expires.root, o.now),
      keys: {},
      roles,
    };
    for (const id of used) spec.keys[id] = old.keys[id] ?? fresh.find((k) => k.keyid === id)!.key;
    const root = makeRoot(spec);
    const md = new Metadata(root);
    const all = new Map(keys);
    for (const k of fresh) all.set(k.keyid, k);
    signRole(md, "root", old, all, dirs);
    signRole(md, "root", root, all, [...dirs, where], true);
    await writeMetadata(paths, `${root.version}.root.json`, md);
    await writeMetadata(paths, "root.json", md);

    let chain: ChainResult | undefined;
    if (o.role !== "root") {
      const base = { ...chainBase(state), root: md };
      base.config = { ...base.config, expires };
      const t = state.targets.signed;
      chain = await writeChain(
        base,
        all,
        [...dirs, where],
        o.role === "targets"
          ? {
              targets: new Targets({
                version: t.version + 1,
                specVersion: SPEC_VERSION,
                expires: expiryFrom(expires.targets, o.now),
                targets: { ...t.targets },
              }),
            }
          : { snapshot: o.role === "snapshot" },
        o.now,
      );
    }
    for (const k of current) retireKey(k);
    return {
      role: o.role,
      rootVersion: root.version,
      added: fresh.map((k) => k.keyid),
      retired: current.map((k) => k.keyid),
      threshold,
      chain,
    };
  });
}
