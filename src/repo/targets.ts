// What a Berth repository's targets are: the kinds, the custom field every target carries in the signed
// targets metadata, and the rules for target names. Shared by the publisher and the client.

import { join, posix } from "node:path";
import { UsageError } from "../common/errors.ts";

export type TargetKind = "os-release" | "image" | "advisory" | "livepatch-lib" | "livepatch-kernel";
export const TARGET_KINDS: readonly TargetKind[] = [
  "os-release",
  "image",
  "advisory",
  "livepatch-lib",
  "livepatch-kernel",
];

/** The signed custom field of a target: its kind plus kind-specific fields (docs/repo.md lists them). */
export interface BerthCustom {
  kind: TargetKind;
  [k: string]: unknown;
}

export interface RepoTarget {
  name: string;
  length: number;
  hashes: Record<string, string>;
  custom: BerthCustom;
}

/** A target about to be staged: its name, where its bytes are, and its custom field. */
export interface NewTarget {
  name: string;
  file: string;
  custom: BerthCustom;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/;

/**
 * Target names are relative paths of plain segments (no "..", no empty or hidden segments, no
 * backslashes), so that a name can never point a client or the server outside the targets tree.
 */
export function checkTargetName(name: string): string {
  const segs = name.split("/");
  if (name.length > 255 || !segs.every((s) => SEGMENT.test(s) && s.length <= 128))
    throw new UsageError(
      `"${name}" is not a valid target name: use path segments of letters, digits and . _ + ~ - (no leading dot)`,
    );
  return name;
}

/** Where a target's bytes are stored under repository/targets with consistent snapshots. */
export function storagePath(targetsDir: string, name: string, sha256: string): string {
  return join(targetsDir, posix.dirname(name), `${sha256}.${posix.basename(name)}`);
}

export function isTargetKind(k: unknown): k is TargetKind {
  return TARGET_KINDS.includes(k as TargetKind);
}
