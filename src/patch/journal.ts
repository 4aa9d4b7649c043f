// The per-process journal of live library patches (/var/lib/berth/patch/processes/PID.json, keyed by
// PID and start time so a later process with the same PID never inherits it). Each layer records every
// byte it wrote with the bytes that were there before, and the patch memory it mapped, so that rollback
// can check nothing else changed those bytes, put them back and unmap the memory: one layer at a time.

import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../common/fsutil.ts";
import { commandName, startTime } from "./proc.ts";

export function patchStateDir(): string {
  return process.env.BERTH_PATCH_STATE || "/var/lib/berth/patch";
}

export const JOURNAL_FORMAT = 2;

export interface PatchWrite {
  addr: string;
  before: string;
  after: string;
  what: string;
}

export interface PatchLayer {
  /** The library as mapped (the process's own path). */
  lib: string;
  /** The new build as the process sees it (its image is mapped from this file). */
  loadedAs: string;
  sha256: string;
  /** Functions copied into the process and old functions redirected to them. */
  functions: number;
  redirected: number;
  identical: number;
  writes: PatchWrite[];
  image: {
    base: string;
    size: number;
    /** Pages kept mapped at rollback (pointers into them may live in the process's data). */
    keep: string[];
    /** Copied code, for the rollback's stack check. */
    code: [string, string][];
  };
  at: string;
}

export interface ProcessJournal {
  format: number;
  pid: number;
  startTime: string;
  comm: string;
  layers: PatchLayer[];
}

function journalPath(pid: number, dir: string) {
  return join(dir, "processes", `${pid}.json`);
}

/** The process's journal, or an empty one (a journal of an earlier process with the same PID is stale). */
export function readProcessJournal(pid: number, dir = patchStateDir()): ProcessJournal {
  const st = startTime(pid);
  const p = journalPath(pid, dir);
  if (existsSync(p)) {
    const j = JSON.parse(readFileSync(p, "utf8")) as ProcessJournal;
    if (j.startTime === st && j.format === JOURNAL_FORMAT) return j;
  }
  return { format: JOURNAL_FORMAT, pid, startTime: st, comm: commandName(pid), layers: [] };
}

export async function writeProcessJournal(j: ProcessJournal, dir: string): Promise<void> {
  const p = journalPath(j.pid, dir);
  if (j.layers.length) await writeFileAtomic(p, `${JSON.stringify(j, null, 2)}\n`);
  else rmSync(p, { force: true });
}

/** Every process with patches, from the journals (stale ones — the process is gone — are removed). */
export function patchStatus(dir = patchStateDir()): ProcessJournal[] {
  const d = join(dir, "processes");
  if (!existsSync(d)) return [];
  const out: ProcessJournal[] = [];
  for (const f of readdirSync(d)) {
    const pid = Number(f.replace(/\.json$/, ""));
    if (!Number.isInteger(pid)) continue;
    try {
      const j = readProcessJournal(pid, dir);
      if (j.layers.length) out.push(j);
      else rmSync(join(d, f), { force: true });
    } catch {
      rmSync(join(d, f), { force: true });
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}
