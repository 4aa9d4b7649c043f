// The archive state a build is pinned to: one entry per verified Release, recorded in an image's
// build.json (src/images) and an OS image's manifest (src/os), so two builds can be told apart by
// what the archive said when they were made.

import { sha256Hex } from "../common/hash.ts";
import type { VerifiedRelease } from "./archive.ts";

export interface ArchiveState {
  uri: string;
  suite: string;
  codename?: string;
  version?: string;
  date?: string;
  /** Digest of the verified Release's file list: equal digests mean the same archive state. */
  releaseSha256: string;
}

/** The state of one suite as its verified Release describes it. */
export function archiveStateOf(vr: VerifiedRelease): ArchiveState {
  return {
    uri: vr.repo.uri,
    suite: vr.repo.suite,
    codename: vr.release.codename,
    version: vr.release.version,
    date: vr.release.date?.toISOString(),
    releaseSha256: sha256Hex(JSON.stringify([...vr.release.files.values()])),
  };
}
