// How long each role's metadata stays valid. Durations are written like "1y", "3mo", "1w", "1d", "12h",
// "30min", "90s"; "m" alone is refused because it could mean minutes or months.

import { UsageError } from "../common/errors.ts";
import type { RoleName } from "./keys.ts";

export type Expiries = Record<RoleName, string>;

/** The defaults: root a year, targets three months, snapshot a week, timestamp a day. */
export const DEFAULT_EXPIRIES: Expiries = { root: "1y", targets: "3mo", snapshot: "1w", timestamp: "1d" };

const UNITS: Record<string, (d: Date, n: number) => void> = {
  s: (d, n) => d.setUTCSeconds(d.getUTCSeconds() + n),
  min: (d, n) => d.setUTCMinutes(d.getUTCMinutes() + n),
  h: (d, n) => d.setUTCHours(d.getUTCHours() + n),
  d: (d, n) => d.setUTCDate(d.getUTCDate() + n),
  w: (d, n) => d.setUTCDate(d.getUTCDate() + 7 * n),
  mo: (d, n) => d.setUTCMonth(d.getUTCMonth() + n),
  y: (d, n) => d.setUTCFullYear(d.getUTCFullYear() + n),
};

/** Throws a UsageError unless `s` is a duration this module understands. */
export function checkDuration(s: string): void {
  const m = /^(\d{1,6})(s|min|h|d|w|mo|y)$/.exec(s);
  if (!m || Number(m[1]) === 0)
    throw new UsageError(
      `"${s}" is not a duration: use a positive number with s, min, h, d, w, mo or y (e.g. 1d, 3mo, 1y)`,
    );
}

/** TUF's date format: UTC, whole seconds, "Z". */
export function tufDate(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

/** `now` plus the duration, in TUF's date format. */
export function expiryFrom(duration: string, now: Date = new Date()): string {
  checkDuration(duration);
  const m = /^(\d+)(\w+)$/.exec(duration)!;
  const d = new Date(now.getTime());
  UNITS[m[2]!]!(d, Number(m[1]));
  return tufDate(d);
}

/** Milliseconds a duration lasts from `now` (months and years are calendar ones). */
export function durationMs(duration: string, now: Date = new Date()): number {
  return Date.parse(expiryFrom(duration, now)) - Math.floor(now.getTime() / 1000) * 1000;
}

/** Parses "role=duration" overrides (from --expires) onto a base set. */
export function withOverrides(base: Expiries, overrides: readonly string[]): Expiries {
  const out = { ...base };
  for (const o of overrides)
    for (const part of o.split(",")) {
      const [role, dur] = part.split("=");
      if (!role || !dur || !(role in out))
        throw new UsageError(
          `--expires wants ROLE=DURATION with a role of root, targets, snapshot, timestamp`,
        );
      checkDuration(dur);
      out[role as RoleName] = dur;
    }
  return out;
}
