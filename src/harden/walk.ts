// The single walk of the file system that every file rule shares: world-writable files and
// directories, files whose owner or group no account has, and the SUID/SGID inventory.

import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseFstab } from "./config.ts";

export interface WalkEntry {
  /** Absolute path inside the target. */
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

export interface WalkResult {
  files: number;
  worldWritableFiles: WalkEntry[];
  /** World-writable directories without the sticky bit. */
  worldWritableDirs: WalkEntry[];
  unowned: WalkEntry[];
  ungrouped: WalkEntry[];
  suid: WalkEntry[];
  sgid: WalkEntry[];
}

/** Kept at most this many of each kind: enough to act on, bounded in memory and output. */
const KEEP = 500;

/** File systems that are not the system's own files (pseudo, remote, or container layers). */
const SKIP_TYPES = new Set([
  "proc",
  "sysfs",
  "devtmpfs",
  "devpts",
  "cgroup",
  "cgroup2",
  "securityfs",
  "debugfs",
  "tracefs",
  "pstore",
  "bpf",
  "mqueue",
  "hugetlbfs",
  "configfs",
  "fusectl",
  "binfmt_misc",
  "autofs",
  "nsfs",
  "overlay",
  "nfs",
  "nfs4",
  "cifs",
  "smb3",
  "fuse",
  "efivarfs",
  "rpc_pipefs",
  "squashfs",
]);

/** Container engines' storage: images are checked through the engine, not as host files. */
const SKIP_PATHS = ["/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/var/lib/containerd"];

export function emptyWalk(): WalkResult {
  return {
    files: 0,
    worldWritableFiles: [],
    worldWritableDirs: [],
    unowned: [],
    ungrouped: [],
    suid: [],
    sgid: [],
  };
}

export interface WalkAccounts {
  users: Set<number>;
  groups: Set<number>;
}

type EntryKind = "dir" | "file" | "other";

/** Counts one entry and files it under every finding it is (each list bounded by KEEP). */
export function recordEntry(r: WalkResult, e: WalkEntry, kind: EntryKind, a: WalkAccounts): void {
  const push = (list: WalkEntry[]) => {
    if (list.length < KEEP) list.push(e);
  };
  r.files++;
  if (!a.users.has(e.uid)) push(r.unowned);
  if (!a.groups.has(e.gid)) push(r.ungrouped);
  if (kind === "dir") {
    if (e.mode & 0o002 && !(e.mode & 0o1000)) push(r.worldWritableDirs);
  } else if (kind === "file") {
    if (e.mode & 0o002) push(r.worldWritableFiles);
    if (e.mode & 0o4000) push(r.suid);
    if (e.mode & 0o2000) push(r.sgid);
  }
}

/** Sorts every list by path, so reports do not depend on directory order. */
export function sortWalk(r: WalkResult): WalkResult {
  for (const list of [r.worldWritableFiles, r.worldWritableDirs, r.unowned, r.ungrouped, r.suid, r.sgid])
    list.sort((x, y) => x.path.localeCompare(y.path));
  return r;
}

export function walkTree(root: string, o: WalkAccounts & { live: boolean }): WalkResult {
  const r = emptyWalk();
  if (!root) return r;
  const skip = new Set(SKIP_PATHS);
  if (o.live)
    for (const m of parseFstab(readFileSync("/proc/self/mounts", "utf8")))
      if (SKIP_TYPES.has(m.type) || m.type.startsWith("fuse.")) skip.add(m.target);
  const prefix = root === "/" ? "" : root;
  const stack = ["/"];
  while (stack.length) {
    const dir = stack.pop()!;
    let names: string[];
    try {
      names = readdirSync(prefix + dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
      if (skip.has(path)) continue;
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(join(prefix || "/", path));
      } catch {
        continue;
      }
      const kind = st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
      recordEntry(r, { path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }, kind, o);
      if (kind === "dir") stack.push(path);
    }
  }
  return sortWalk(r);
}
