// A lock between processes on one directory: a lock directory made atomically (mkdir), holding the
// holder's pid, taken over when that process is gone. The publisher holds it while it changes a
// repository; the client while it commits a refresh into a node's cache.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Runs `fn` holding the lock at `lock` (a path that must not exist otherwise); waits up to a minute. */
export async function withDirLock<T>(lock: string, what: string, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let holder = 0;
      try {
        holder = Number(readFileSync(join(lock, "pid"), "utf8"));
      } catch {}
      if (holder && !alive(holder)) rmSync(lock, { recursive: true, force: true });
      else if (i > 600) throw new BerthError(`${what} is locked by process ${holder || "?"}`);
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
