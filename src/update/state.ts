// A node's update state under /var/lib/berth/update. The boot-time shell steps (health check, fallback
// record, migrations; src/os/update-files.ts) write small KEY=value files; `berth update` reads them and
// writes its own the same way, so either side can read what the other wrote without a JSON parser in
// the shell. Parsing is pure; writes are temp file then rename.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../common/fsutil.ts";
import { UPDATE_STATE_DIR } from "../os/update-files.ts";

/** Where a node's update state lives; BERTH_UPDATE_STATE moves it (tests). */
export function stateDir(): string {
  return process.env.BERTH_UPDATE_STATE || UPDATE_STATE_DIR;
}

/** KEY=value lines; later keys win, so a file can be appended to. Anything else is ignored. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** One KEY=value line per entry; values must be one line without shell metacharacters that matter. */
export function envFileText(values: Record<string, string | number | undefined>): string {
  return Object.entries(values)
    .filter((e): e is [string, string | number] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${String(v).replace(/[\n\r]/g, " ")}\n`)
    .join("");
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

export function readEnvFile(path: string): Record<string, string> | undefined {
  const t = readText(path);
  return t === undefined ? undefined : parseEnvFile(t);
}

export const writeEnvFile = (path: string, values: Record<string, string | number | undefined>) =>
  writeFileAtomic(path, envFileText(values));

/** Releases recorded as bad (one per line), never offered again unless asked. */
export function readBad(dir = stateDir()): string[] {
  return [
    ...new Set(
      (readText(join(dir, "bad")) ?? "")
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
}

export async function writeBad(versions: string[], dir = stateDir()): Promise<void> {
  const unique = [...new Set(versions)];
  await writeFileAtomic(join(dir, "bad"), unique.length ? `${unique.join("\n")}\n` : "");
}

/** The last `berth update apply` that installed a release for the next boot, and how it went. */
export interface Attempt {
  version: string;
  slot: string;
  from?: string;
  started?: string;
  /** good, bad; absent while the release has not been assessed. */
  result?: string;
  resolved?: string;
  /** The release the node was running when the attempt was resolved. */
  booted?: string;
}

export function readAttempt(dir = stateDir()): Attempt | undefined {
  const e = readEnvFile(join(dir, "attempt"));
  if (!e?.VERSION) return undefined;
  return {
    version: e.VERSION,
    slot: e.SLOT ?? "",
    from: e.FROM,
    started: e.STARTED,
    result: e.RESULT,
    resolved: e.RESOLVED,
    booted: e.BOOTED,
  };
}

export function writeAttempt(a: Attempt, dir = stateDir()): Promise<void> {
  return writeEnvFile(join(dir, "attempt"), {
    VERSION: a.version,
    SLOT: a.slot,
    FROM: a.from,
    STARTED: a.started,
    RESULT: a.result,
    RESOLVED: a.resolved,
    BOOTED: a.booted,
  });
}

/** The health check's verdict on the last boot (written by /usr/lib/berth/health-check). */
export interface Health {
  release: string;
  result: string;
  time: string;
  /** Whether the boot loader was counting this boot (a release on trial). */
  assessed: boolean;
  reasons: string;
}

export function readHealth(dir = stateDir()): Health | undefined {
  const e = readEnvFile(join(dir, "health"));
  if (!e?.RELEASE) return undefined;
  return {
    release: e.RELEASE,
    result: e.RESULT ?? "",
    time: e.TIME ?? "",
    assessed: e.ASSESSED === "yes",
    reasons: e.REASONS ?? "",
  };
}

/** A slot being written: an apply that died leaves this, and status calls the slot incomplete. */
export interface SlotWrite {
  slot: string;
  version: string;
  started: string;
}

export function readSlotWrite(dir = stateDir()): SlotWrite | undefined {
  const e = readEnvFile(join(dir, "writing"));
  return e?.SLOT && e.VERSION ? { slot: e.SLOT, version: e.VERSION, started: e.STARTED ?? "" } : undefined;
}

export function writeSlotWrite(w: SlotWrite, dir = stateDir()): Promise<void> {
  return writeEnvFile(join(dir, "writing"), { SLOT: w.slot, VERSION: w.version, STARTED: w.started });
}

/** The node's wave seed, 0..2047, if it has one yet. */
export function readSeed(dir = stateDir()): number | undefined {
  const t = readText(join(dir, "seed"))?.trim();
  if (!t || !/^\d{1,4}$/.test(t)) return undefined;
  const n = Number(t);
  return n < 2048 ? n : undefined;
}
