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

export function walkTree(
  root: string,
  o: { users: Set<number>; groups: Set<number>; live: boolean },
): WalkResult {
  const r = emptyWalk();
  if (!root) return r;
  const skip = new Set(SKIP_PATHS);
  if (o.live)
    for (const m of parseFstab(readFileSync("/proc/self/mounts", "utf8")))
      if (SKIP_TYPES.has(m.type) || m.type.startsWith("fuse.")) skip.add(m.target);
  const push = (list: WalkEntry[], e: WalkEntry) => {
    if (list.length < KEEP) list.push(e);
  };
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
      r.files++;
      const e = { path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (!o.users.has(st.uid)) push(r.unowned, e);
      if (!o.groups.has(st.gid)) push(r.ungrouped, e);
      if (st.isDirectory()) {
        if (st.mode & 0o002 && !(st.mode & 0o1000)) push(r.worldWritableDirs, e);
        stack.push(path);
      } else if (st.isFile()) {
        if (st.mode & 0o002) push(r.worldWritableFiles, e);
        if (st.mode & 0o4000) push(r.suid, e);
        if (st.mode & 0o2000) push(r.sgid, e);
      }
    }
  }
  for (const list of [r.worldWritableFiles, r.worldWritableDirs, r.unowned, r.ungrouped, r.suid, r.sgid])
    list.sort((a, b) => a.path.localeCompare(b.path));
  return r;
}
