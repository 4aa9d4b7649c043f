// What every part of a running fleet server shares: the database, the advisory matcher, settings, and
// per-process caches of facts that never change once written (package and kernel ids, node keys).
// Nothing here is state that matters: another process on the same database has its own copy.

import type { KeyObject } from "node:crypto";
import { randomUUID } from "node:crypto";
import type { Matcher } from "./matcher.ts";
import type { Database } from "./sql.ts";

export interface FleetContext {
  db: Database;
  matcher: Matcher;
  /** Seconds between agent reports. */
  interval: number;
  /** This process, for leases. */
  owner: string;
  pkgIds: Map<string, number>;
  kernelIds: Map<string, number>;
  nodeKeys: Map<string, { nid: number; key: KeyObject }>;
  now: () => number;
}

export function newContext(db: Database, matcher: Matcher, interval = 60): FleetContext {
  return {
    db,
    matcher,
    interval,
    owner: `${process.pid}-${randomUUID().slice(0, 8)}`,
    pkgIds: new Map(),
    kernelIds: new Map(),
    nodeKeys: new Map(),
    now: () => Date.now(),
  };
}

/** A node counts as online while its last report is younger than three intervals. */
export const onlineCutoff = (ctx: FleetContext): number => ctx.now() - 3 * ctx.interval * 1000;

export const iso = (ms: number | null | undefined): string | null =>
  ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString();

export function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
