// Release / InRelease metadata: which index files a suite has, with their sizes and SHA-256 digests.

import { BerthError } from "../common/errors.ts";
import { continuationLines, parseDeb822 } from "./deb822.ts";

export interface ReleaseFile {
  path: string;
  size: number;
  sha256: string;
}

export interface Release {
  origin?: string;
  label?: string;
  suite?: string;
  codename?: string;
  version?: string;
  date?: Date;
  validUntil?: Date;
  acquireByHash: boolean;
  architectures: string[];
  components: string[];
  files: Map<string, ReleaseFile>;
}

function parseDate(v: string | undefined, field: string): Date | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new BerthError(`Release: unreadable ${field} "${v}"`);
  return d;
}

/** Parses the (already signature-checked) text of a Release file. */
export function parseRelease(text: string): Release {
  const stanzas = parseDeb822(text, { source: "Release" });
  const s = stanzas[0];
  if (!s) throw new BerthError("Release file is empty");
  const files = new Map<string, ReleaseFile>();
  for (const line of continuationLines(s.SHA256)) {
    const m = /^([0-9a-f]{64})\s+(\d+)\s+(\S+)$/.exec(line);
    if (!m) throw new BerthError(`Release: malformed SHA256 line "${line}"`);
    files.set(m[3]!, { sha256: m[1]!, size: Number(m[2]), path: m[3]! });
  }
  if (files.size === 0) throw new BerthError("Release has no SHA256 file list");
  return {
    origin: s.Origin,
    label: s.Label,
    suite: s.Suite,
    codename: s.Codename,
    version: s.Version,
    date: parseDate(s.Date, "Date"),
    validUntil: parseDate(s["Valid-Until"], "Valid-Until"),
    acquireByHash: s["Acquire-By-Hash"] === "yes",
    architectures: (s.Architectures ?? "").split(/\s+/).filter(Boolean),
    components: (s.Components ?? "").split(/\s+/).filter(Boolean),
    files,
  };
}

/**
 * Checks that a Release is the one asked for and still valid, so a mirror cannot substitute another
 * suite's (older) signed metadata.
 */
export function checkRelease(r: Release, requestedSuite: string, now = new Date()): void {
  if (r.suite !== requestedSuite && r.codename !== requestedSuite)
    throw new BerthError(
      `Release is for suite "${r.suite}" / codename "${r.codename}", not the requested "${requestedSuite}"`,
    );
  if (r.validUntil && r.validUntil.getTime() < now.getTime())
    throw new BerthError(
      `Release of ${requestedSuite} expired on ${r.validUntil.toISOString()} (Valid-Until)`,
    );
}
