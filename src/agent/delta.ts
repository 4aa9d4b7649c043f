// What a node reports, and reports as the difference from its previous report (pure functions).
// Lists (packages, containers) change by entry; every other section is sent again only when it changed.

import type {
  Container,
  HardenState,
  Kernel,
  LivePatch,
  OsInfo,
  Package,
  Report,
  UpdateStatus,
} from "../server/api-schemas.ts";

/** Everything the agent knows about its node at one moment. */
export interface Snapshot {
  hostname: string;
  release: string | null;
  os?: OsInfo;
  kernels: Kernel[];
  packages: Package[];
  containers: Container[];
  harden: HardenState | null;
  patches: LivePatch[];
  update: UpdateStatus;
}

export const packageKey = (p: Package): string => `${p.name}:${p.architecture}`;
const containerKey = (c: Container): string => c.id;

const same = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/** Two flat records (a package, a container) with the same fields: cheaper than JSON for each entry. */
function sameEntry<T extends object>(a: T, b: T): boolean {
  if (a === b) return true;
  const ka = Object.keys(a) as (keyof T)[];
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

export function fullReport(seq: number, s: Snapshot, time = new Date()): Report {
  const r: Report = {
    seq,
    base: 0,
    full: true,
    time: time.toISOString(),
    hostname: s.hostname,
    release: s.release,
    kernels: s.kernels,
    packages: { set: s.packages },
    containers: { set: s.containers },
    harden: s.harden,
    patches: s.patches,
    update: s.update,
  };
  if (s.os) r.os = s.os;
  return r;
}

function listDelta<T>(
  before: T[],
  after: T[],
  key: (x: T) => string,
): { add?: T[]; remove?: string[] } | undefined {
  const old = new Map(before.map((x) => [key(x), x]));
  const now = new Map(after.map((x) => [key(x), x]));
  const add = after.filter((x) => {
    const o = old.get(key(x));
    return !o || !sameEntry(o as object, x as object);
  });
  const remove = [...old.keys()].filter((k) => !now.has(k));
  if (!add.length && !remove.length) return undefined;
  return { ...(add.length ? { add } : {}), ...(remove.length ? { remove } : {}) };
}

/**
 * The report that turns `prev` into `next`. With nothing changed it carries no sections: a check-in.
 * A change of release (os) needs a full report, since every package is matched for the release.
 */
export function deltaReport(seq: number, prev: Snapshot, next: Snapshot, time = new Date()): Report {
  if (!same(prev.os, next.os)) return fullReport(seq, next, time);
  const r: Report = { seq, base: seq - 1, full: false, time: time.toISOString() };
  if (prev.hostname !== next.hostname) r.hostname = next.hostname;
  if (prev.release !== next.release) r.release = next.release;
  if (!same(prev.kernels, next.kernels)) r.kernels = next.kernels;
  const pk = listDelta(prev.packages, next.packages, packageKey);
  if (pk) r.packages = pk;
  const ct = listDelta(prev.containers, next.containers, containerKey);
  if (ct) r.containers = ct;
  if (!same(prev.harden, next.harden)) r.harden = next.harden;
  if (!same(prev.patches, next.patches)) r.patches = next.patches;
  if (!same(prev.update, next.update)) r.update = next.update;
  return r;
}

/** Applies a report to a snapshot, as the server does (used to check deltas round-trip). */
export function applyToSnapshot(prev: Snapshot | undefined, r: Report): Snapshot {
  const base: Snapshot =
    r.full || !prev
      ? {
          hostname: "",
          release: null,
          kernels: [],
          packages: [],
          containers: [],
          harden: null,
          patches: [],
          update: { state: "idle", booted: null, slots: [], lastAttempt: null },
        }
      : structuredClone(prev);
  const list = <T>(
    cur: T[],
    d: { set?: T[]; add?: T[]; remove?: string[] } | undefined,
    key: (x: T) => string,
  ) => {
    if (!d) return cur;
    if (d.set) return d.set;
    const gone = new Set([...(d.remove ?? []), ...(d.add ?? []).map(key)]);
    return [...cur.filter((x) => !gone.has(key(x))), ...(d.add ?? [])];
  };
  if (r.hostname !== undefined) base.hostname = r.hostname;
  if (r.release !== undefined) base.release = r.release;
  if (r.os !== undefined) base.os = r.os;
  if (r.kernels !== undefined) base.kernels = r.kernels;
  base.packages = list(base.packages, r.packages, packageKey);
  base.containers = list(base.containers, r.containers, containerKey);
  if (r.harden !== undefined) base.harden = r.harden;
  if (r.patches !== undefined) base.patches = r.patches;
  if (r.update !== undefined) base.update = r.update;
  return base;
}
