// Live upgrades for a whole host: the libraries a Debian package ships, each applied in every running
// process (containers included) that maps an earlier build of it, with one summary. `--new FILE`,
// `--from-deb PKG.deb` (and any other source of a library file, such as a signed repository) all end in
// applyLibraries(): give it the files, it finds the processes.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { BerthError, errorLine } from "../common/errors.ts";
import { extractDeb } from "../pkg/deb.ts";
import { parseElf } from "./elf.ts";
import type { PtraceHelper } from "./helper.ts";
import { patchStateDir } from "./journal.ts";
import {
  applyPatch,
  isStaged,
  libraryName,
  type PatchResult,
  type ProcessPlan,
  planProcess,
} from "./live.ts";
import { commandName, libraryMappings, mappedFile, readMaps } from "./proc.ts";

/** A library file to apply, and the name its earlier builds are mapped under. */
export interface LibraryFile {
  path: string;
  lib: string;
}

export interface HostSummary {
  patched: PatchResult[];
  unchanged: { pid: number; comm: string; lib: string; note: string }[];
  refused: { pid: number; comm: string; lib: string; reason: string }[];
  wallMs: number;
}

/**
 * The shared libraries in a .deb, extracted once into the state directory (by the package's hash):
 * ELF shared objects under a lib directory, named by their soname.
 */
export async function librariesFromDeb(debPath: string, stateDir = patchStateDir()): Promise<LibraryFile[]> {
  const digest = createHash("sha256").update(readFileSync(debPath)).digest("hex");
  const dir = join(stateDir, "debs", digest.slice(0, 24));
  if (!existsSync(join(dir, ".done"))) {
    await extractDeb(debPath, dir);
    writeFileSync(join(dir, ".done"), "");
  }
  const out: LibraryFile[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && /\.so(\.\d+)*$/.test(e.name) && /\/lib\//.test(p.slice(dir.length)))
        try {
          const elf = parseElf(readFileSync(p));
          if (elf.type === 3) out.push({ path: p, lib: elf.soname ?? basename(p) });
        } catch {
          // not ELF: a linker script or data
        }
    }
  };
  walk(dir);
  if (!out.length) throw new BerthError(`${debPath} ships no shared library`);
  return out.sort((a, b) => a.lib.localeCompare(b.lib));
}

const sonames = new Map<string, string | undefined>();

/** Processes (not this one) mapping a library with this soname, by file name and by the file's soname. */
export function processesWith(lib: string, only?: number[]): number[] {
  const out: number[] = [];
  const pids =
    only ??
    readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  for (const pid of pids) {
    if (pid === process.pid) continue;
    try {
      const hit = libraryMappings(readMaps(pid), lib).filter((m) => !isStaged(m.path));
      // A soname names one library: a file called libfoo.so.1.2 is it only if its soname says so.
      const isSoname = !lib.includes("/") && lib.includes(".so");
      if (hit.some((m) => !isSoname || sonameOf(pid, m) === lib || basename(m.path) === lib)) out.push(pid);
    } catch {
      // gone, or a kernel thread
    }
  }
  return out.sort((a, b) => a - b);
}

function sonameOf(pid: number, m: ReturnType<typeof readMaps>[number]): string | undefined {
  const key = `${m.dev}:${m.inode}`;
  if (!sonames.has(key))
    try {
      sonames.set(key, parseElf(mappedFile(pid, m)).soname);
    } catch {
      sonames.set(key, undefined);
    }
  return sonames.get(key);
}

/** Which processes a file is for: the given ones (only those mapping it, with several files), or all. */
function targetsOf(f: LibraryFile, files: LibraryFile[], pids?: number[]): number[] {
  if (!pids) return processesWith(f.lib);
  return files.length > 1 ? processesWith(f.lib, pids) : pids;
}

/** What would happen in each process, touching nothing. */
export async function planLibraries(
  files: LibraryFile[],
  pids?: number[],
  o: { stateDir?: string } = {},
): Promise<{ plans: ProcessPlan[]; errors: { pid: number; lib: string; error: string }[] }> {
  const plans: ProcessPlan[] = [];
  const errors: { pid: number; lib: string; error: string }[] = [];
  for (const f of files)
    for (const pid of targetsOf(f, files, pids)) {
      try {
        plans.push(await planProcess(pid, f.path, { lib: f.lib, stateDir: o.stateDir }));
      } catch (e) {
        errors.push({ pid, lib: f.lib, error: errorLine(e) });
      }
    }
  return { plans, errors };
}

/** Applies every file in every process that maps an earlier build of it (or only in `pids`). */
export async function applyLibraries(
  h: PtraceHelper,
  files: LibraryFile[],
  pids: number[] | undefined,
  o: { stateDir?: string; attempts?: number } = {},
): Promise<HostSummary> {
  const t0 = performance.now();
  const summary: HostSummary = { patched: [], unchanged: [], refused: [], wallMs: 0 };
  for (const f of files) {
    for (const pid of targetsOf(f, files, pids)) {
      try {
        const r = await applyPatch(h, pid, {
          lib: f.lib,
          newPath: f.path,
          stateDir: o.stateDir,
          attempts: o.attempts,
        });
        if (r.note) summary.unchanged.push({ pid, comm: r.comm, lib: f.lib, note: r.note });
        else summary.patched.push(r);
      } catch (e) {
        summary.refused.push({ pid, comm: commandName(pid), lib: f.lib, reason: errorLine(e) });
      }
    }
  }
  summary.wallMs = performance.now() - t0;
  return summary;
}

/** The one library given with --new: named by --lib, or by its soname. */
export function libraryFile(path: string, lib?: string): LibraryFile {
  if (!existsSync(path) || !statSync(path).isFile()) throw new BerthError(`${path}: no such file`);
  return { path, lib: libraryName(readFileSync(path), path, lib) };
}
