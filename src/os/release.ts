// Release versions: dated and ordered, YYYY.MM.N (2026.12.1 < 2026.12.2 < 2027.01.1). Compared number by
// number, never as strings, so 2026.12.10 is newer than 2026.12.9. Pure functions, shared by the build
// (which stamps the version) and the node side (which refuses downgrades and orders releases).

import { UsageError } from "../common/errors.ts";

const RELEASE = /^(\d{4})\.(\d{1,2})\.(\d{1,9})$/;

/** [year, month, n] of a release version, or undefined when it is not one. */
export function parseReleaseVersion(v: string): [number, number, number] | undefined {
  const m = RELEASE.exec(v);
  if (!m) return undefined;
  const parts: [number, number, number] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return parts[1] >= 1 && parts[1] <= 12 ? parts : undefined;
}

export function isReleaseVersion(v: string): boolean {
  return parseReleaseVersion(v) !== undefined;
}

/** The version itself, or a UsageError naming what was given. */
export function checkReleaseVersion(v: string, what = "release version"): string {
  if (!isReleaseVersion(v))
    throw new UsageError(
      `${what} "${v}" is not YYYY.MM.N (a year, a month 1-12 and a number, e.g. 2026.12.1)`,
    );
  return v;
}

/** <0, 0, >0 as a is older than, the same as, or newer than b. Both must be release versions. */
export function compareReleaseVersions(a: string, b: string): number {
  const x = parseReleaseVersion(a);
  const y = parseReleaseVersion(b);
  if (!x || !y) throw new UsageError(`cannot order "${a}" and "${b}": not both release versions`);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/**
 * The default version of a build: YYYY.MM.DDHH of its archive state (SOURCE_DATE_EPOCH, UTC). Two builds
 * of one archive state get the same version (the image stays reproducible), and a later archive state a
 * greater one; Debian's archive changes a few times a day, never twice within an hour.
 */
export function defaultReleaseVersion(sourceDateEpoch: number): string {
  const d = new Date(sourceDateEpoch * 1000);
  return `${d.getUTCFullYear()}.${String(d.getUTCMonth() + 1).padStart(2, "0")}.${d.getUTCDate() * 100 + d.getUTCHours()}`;
}
