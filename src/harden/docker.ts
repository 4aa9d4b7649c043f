// An image's files read from `docker export` without unpacking it: the file rules need modes and owners,
// the config rules need /etc. (Containers and images as the engine describes them come from
// src/common/docker.ts.)

import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { walkTar } from "../common/tar.ts";
import {
  emptyWalk,
  recordEntry,
  sortWalk,
  type WalkAccounts,
  type WalkEntry,
  type WalkResult,
} from "./walk.ts";

/** Files of /etc and the package database are kept; every entry feeds the walk result. */
const KEEP = /^(etc\/|var\/lib\/dpkg\/status(\.d\/|$)|usr\/lib\/os-release$)/;

/**
 * Streams the image's file system (`docker create` + `docker export`) once: configuration files
 * land under `dest`, and modes and owners of every entry make the walk result.
 */
export async function exportImageFiles(
  image: string,
  dest: string,
  accounts: () => WalkAccounts,
): Promise<WalkResult> {
  const created = await run("docker", ["create", image, "/nonexistent"]);
  if (created.code !== 0)
    throw new BerthError(
      `cannot create a container from ${image}: ${created.stderr.trim().split("\n").pop()}`,
    );
  const id = created.stdout.trim();
  // Classified once the stream is done: the image's own accounts arrive somewhere inside it.
  const entries: { e: WalkEntry; kind: "dir" | "file" | "other" }[] = [];
  try {
    const child = spawn("docker", ["export", id], { stdio: ["ignore", "pipe", "ignore"] });
    await walkTar(
      child.stdout,
      async (info, body) => {
        const kind = info.type === "directory" ? "dir" : info.type === "file" ? "file" : "other";
        entries.push({
          e: { path: `/${info.path}`, mode: info.mode & 0o7777, uid: info.uid, gid: info.gid },
          kind,
        });
        if (info.type === "file" && KEEP.test(info.path) && info.size < 16 * 1024 * 1024) {
          const chunks: Buffer[] = [];
          for await (const c of body) chunks.push(c as Buffer);
          const target = join(dest, info.path);
          await mkdir(dirname(target), { recursive: true });
          await writeFile(target, Buffer.concat(chunks));
        }
      },
      { what: `the file system of ${image}` },
    );
  } finally {
    await run("docker", ["rm", "-f", id]);
  }
  const a = accounts();
  const r = emptyWalk();
  for (const { e, kind } of entries) recordEntry(r, e, kind, a);
  return sortWalk(r);
}
