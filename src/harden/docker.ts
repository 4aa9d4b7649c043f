// Containers and images as the Docker engine describes them (its API socket), and an image's files
// read from `docker export` without unpacking it: the file rules need modes and owners, the config
// rules need /etc.

import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BerthError } from "../cli/errors.ts";
import { run } from "../common/exec.ts";
import { walkTar } from "../common/tar.ts";
import { dockerApi } from "../scan/targets.ts";
import {
  emptyWalk,
  recordEntry,
  sortWalk,
  type WalkAccounts,
  type WalkEntry,
  type WalkResult,
} from "./walk.ts";

/** The parts of `docker inspect` (container) the rules read. */
export interface ContainerInfo {
  Id: string;
  Name: string;
  Config: { User?: string; Image?: string; Env?: string[]; Healthcheck?: { Test?: string[] } };
  State?: { Running?: boolean };
  HostConfig: {
    Privileged?: boolean;
    CapAdd?: string[] | null;
    CapDrop?: string[] | null;
    NetworkMode?: string;
    PidMode?: string;
    IpcMode?: string;
    UTSMode?: string;
    UsernsMode?: string;
    CgroupnsMode?: string;
    Memory?: number;
    PidsLimit?: number | null;
    CpuShares?: number;
    NanoCpus?: number;
    CpuQuota?: number;
    ReadonlyRootfs?: boolean;
    SecurityOpt?: string[] | null;
    Devices?: unknown[] | null;
    PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null;
    RestartPolicy?: { Name?: string; MaximumRetryCount?: number };
    Ulimits?: unknown[] | null;
  };
  Mounts?: { Source?: string; Destination?: string; RW?: boolean; Propagation?: string; Type?: string }[];
  AppArmorProfile?: string;
}

export interface ImageInfo {
  Id: string;
  RepoTags?: string[];
  Config?: { User?: string; Env?: string[]; Healthcheck?: { Test?: string[] } };
}

async function apiJson<T>(path: string): Promise<T> {
  const stream = await dockerApi(path);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as T;
}

export async function inspectContainer(id: string): Promise<ContainerInfo> {
  return apiJson<ContainerInfo>(`/containers/${encodeURIComponent(id)}/json`);
}

export async function inspectImage(name: string): Promise<ImageInfo> {
  return apiJson<ImageInfo>(`/images/${encodeURIComponent(name)}/json`);
}

/** Running containers on the local engine; none when no engine answers. */
export async function runningContainers(): Promise<ContainerInfo[]> {
  let list: { Id: string }[];
  try {
    list = await apiJson<{ Id: string }[]>("/containers/json");
  } catch {
    return [];
  }
  return Promise.all(list.map((c) => inspectContainer(c.Id)));
}

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
