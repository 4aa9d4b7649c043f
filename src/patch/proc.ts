// Processes and their mappings, read from /proc: which processes map a library, where it is loaded,
// and the file behind a mapping (through map_files, so a library inside a container or one deleted on
// disk is read exactly as mapped).

import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from "node:fs";
import { basename } from "node:path";
import { BerthError } from "../common/errors.ts";

export interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  path: string;
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3]!,
      offset: BigInt(`0x${m[4]}`),
      dev: m[5]!,
      inode: Number(m[6]),
      path: m[7]!.replace(/ \(deleted\)$/, ""),
    });
  }
  return out;
}

export function readMaps(pid: number): Mapping[] {
  return parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"));
}

/** `len` bytes of a process's memory at `addr`, through /proc/PID/mem (needs ptrace access). */
export function readMemory(pid: number, addr: bigint, len: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    const b = Buffer.alloc(len);
    if (readSync(fd, b, 0, len, addr) !== len)
      throw new BerthError(`cannot read process ${pid} at ${hex(addr)}`);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** The bytes of a library's executable mapping in a process, as they are now. */
export function mappedCode(pid: number, path: string): Buffer {
  const m = readMaps(pid).find((x) => x.path === path && x.perms.includes("x"));
  if (!m) throw new BerthError(`process ${pid} has no executable mapping of ${path}`);
  return readMemory(pid, m.start, Number(m.end - m.start));
}

/** Whether a mapped path is the library the user named (a path, or a file name or its prefix). */
export function matchesLib(path: string, lib: string): boolean {
  if (!path.startsWith("/")) return false;
  if (lib.includes("/")) return path === lib;
  const b = basename(path);
  return (
    b === lib ||
    b.startsWith(`${lib}.so`) ||
    b.startsWith(`${lib}.`) ||
    (lib.endsWith(".so") && b.startsWith(lib))
  );
}

/** The first mapping (file offset 0) of each library the process maps that matches `lib`. */
export function libraryMappings(maps: Mapping[], lib: string): Mapping[] {
  const seen = new Set<string>();
  return maps.filter((m) => {
    if (m.offset !== 0n || !matchesLib(m.path, lib) || seen.has(m.path)) return false;
    seen.add(m.path);
    return true;
  });
}

/** Every process (not this one) that maps the library. */
export function processesMapping(lib: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (libraryMappings(readMaps(Number(d)), lib).length) out.push(Number(d));
    } catch {}
  }
  return out.sort((a, b) => a - b);
}

/** The mapped file's bytes, read through /proc/PID/map_files. */
export function mappedFile(pid: number, m: Mapping): Buffer {
  return readFileSync(`/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`);
}

/** Start time in clock ticks since boot: with the PID, it names one process for good. */
export function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
}

export function commandName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

/** Whether the process lives in another mount namespace than ours (a container): paths differ there. */
export function inOtherRoot(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`) !== readlinkSync("/proc/self/ns/mnt");
  } catch {
    return false;
  }
}

export const hex = (n: bigint) => `0x${n.toString(16)}`;
