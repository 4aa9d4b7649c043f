// Applying a plan through a write-ahead journal, and rolling it back exactly. Before anything changes,
// the journal records the file's whole prior state (a backup of its bytes, mode, owner and times) or
// the prior run-time value, and is synced to disk. Rollback restores from the journal in reverse, so
// it works after an interrupted apply too, and refuses when a file was changed again since.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  fsyncSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { BerthError, errorLine } from "../common/errors.ts";
import { sha256Hex } from "../common/hash.ts";
import { type FileEdit, type FileState, type Plan, readState } from "./plan.ts";

export function defaultStateDir(): string {
  return process.env.BERTH_HARDEN_STATE || "/var/lib/berth/harden";
}

interface Saved {
  exists: boolean;
  kind?: FileState["kind"];
  link?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  atimeMs?: number;
  mtimeMs?: number;
  sha256?: string;
  backup?: string;
}

export type JournalEntry =
  | {
      t: "meta";
      id: string;
      target: string;
      kind: string;
      root: string;
      profile: string;
      started: string;
      rules: string[];
    }
  | { t: "mkdir"; path: string; parent: Times }
  | { t: "file"; n: number; path: string; real: string; before: Saved; parent: Times }
  | { t: "file-done"; n: number; after: Saved }
  | { t: "sysctl"; key: string; before: string }
  | { t: "stop"; unit: string; wasActive: boolean }
  | { t: "reload"; unit: string }
  | { t: "done"; finished: string };

/** A directory's times, put back after rollback so even directory listings look untouched. */
interface Times {
  path: string;
  atimeMs: number;
  mtimeMs: number;
}

function timesOf(path: string): Times {
  const st = lstatSync(path);
  return { path, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
}

/** Identity of a file's state, to notice changes made after apply. */
function fingerprint(s: FileState): string {
  return JSON.stringify({
    e: s.exists,
    k: s.kind,
    l: s.link,
    m: s.mode,
    u: s.uid,
    g: s.gid,
    c: s.content ? sha256Hex(s.content) : undefined,
  });
}

class Journal {
  readonly dir: string;
  private readonly fd: number;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(join(dir, "backups"), { recursive: true, mode: 0o700 });
    this.fd = openSync(join(dir, "journal.jsonl"), "a", 0o600);
  }
  write(e: JournalEntry): void {
    writeSync(this.fd, `${JSON.stringify(e)}\n`);
    fsyncSync(this.fd);
  }
  close(): void {
    closeSync(this.fd);
  }
}

function save(real: string, j: Journal, n: number): Saved {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(real);
  } catch {
    return { exists: false };
  }
  const s = readState(real);
  const saved: Saved = {
    exists: true,
    kind: s.kind,
    link: s.link,
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    atimeMs: st.atimeMs,
    mtimeMs: st.mtimeMs,
    sha256: fingerprint(s),
  };
  if (s.kind === "file") {
    const backup = join("backups", String(n));
    const p = join(j.dir, backup);
    writeFileSync(p, s.content!, { mode: 0o600 });
    const fd = openSync(p, "r");
    fsyncSync(fd);
    closeSync(fd);
    saved.backup = backup;
  }
  return saved;
}

/** Writes a file state in place: content through a temp file and rename, then mode and owner. */
function writeState(real: string, s: FileState, content?: Buffer): void {
  if (!s.exists) {
    rmSync(real, { force: true });
    return;
  }
  const tmp = `${real}.berth-${randomBytes(4).toString("hex")}`;
  try {
    if (s.kind === "symlink") {
      symlinkSync(s.link!, tmp);
      lchownSync(tmp, s.uid ?? 0, s.gid ?? 0);
    } else {
      writeFileSync(tmp, content ?? s.content ?? Buffer.alloc(0), { mode: 0o600 });
      chownSync(tmp, s.uid ?? 0, s.gid ?? 0);
      chmodSync(tmp, s.mode ?? 0o644);
    }
    renameSync(tmp, real);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function applyEdit(e: FileEdit): void {
  const a = e.after;
  const b = e.before;
  // Same kind and content (or a directory): only owner and mode change, in place.
  const inPlace =
    b.exists &&
    a.kind === b.kind &&
    (a.kind === "dir" || (a.kind === "file" && !!a.content && !!b.content && a.content.equals(b.content)));
  if (!inPlace) {
    writeState(e.real, a);
    return;
  }
  if (a.uid !== b.uid || a.gid !== b.gid) chownSync(e.real, a.uid ?? 0, a.gid ?? 0);
  if (a.mode !== b.mode) chmodSync(e.real, a.mode ?? 0o644);
}

/** Directories to create, outermost first, for `dir` to exist. */
function missingDirs(dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; !existsSync(d) && d !== dirname(d); d = dirname(d)) out.unshift(d);
  return out;
}

export interface ApplyInfo {
  target: string;
  kind: string;
  root: string;
  profile: string;
  live: boolean;
}

export function newRunId(): string {
  return `${new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${randomBytes(3).toString("hex")}`;
}

/** Applies the plan; returns the run ID. Every step is journaled before it happens. */
export function applyPlan(plan: Plan, info: ApplyInfo, stateDir = defaultStateDir()): string {
  const id = newRunId();
  const j = new Journal(join(stateDir, "runs", id));
  const rules = [
    ...new Set([...plan.edits.flatMap((e) => e.rules), ...plan.steps.flatMap((s) => s.rules)]),
  ].sort();
  j.write({
    t: "meta",
    id,
    target: info.target,
    kind: info.kind,
    root: info.root,
    profile: info.profile,
    started: new Date().toISOString(),
    rules,
  });
  try {
    let n = 0;
    let unitsChanged = false;
    for (const e of plan.edits) {
      for (const d of missingDirs(dirname(e.real))) {
        j.write({ t: "mkdir", path: d, parent: timesOf(dirname(d)) });
        mkdirSync(d, { mode: 0o755 });
      }
      n++;
      j.write({
        t: "file",
        n,
        path: e.path,
        real: e.real,
        before: save(e.real, j, n),
        parent: timesOf(dirname(e.real)),
      });
      applyEdit(e);
      j.write({ t: "file-done", n, after: { exists: true, sha256: fingerprint(readState(e.real)) } });
      if (e.path.startsWith("/etc/systemd/system/")) unitsChanged = true;
      // Fault injection for the interrupted-apply test: die the hard way after N files.
      if (Number(process.env.BERTH_HARDEN_KILL_AFTER) === n) process.kill(process.pid, "SIGKILL");
    }
    if (info.live && unitsChanged) systemctl(["daemon-reload"]);
    for (const s of plan.steps) {
      if (s.kind === "sysctl") {
        const proc = `/proc/sys/${s.key.replaceAll(".", "/")}`;
        j.write({ t: "sysctl", key: s.key, before: readFileSync(proc, "utf8").trim() });
        writeFileSync(proc, s.value);
      } else if (s.kind === "stop") {
        j.write({ t: "stop", unit: s.unit, wasActive: true });
        systemctl(["stop", s.unit]);
      } else {
        if (s.validate) validate(s.validate);
        j.write({ t: "reload", unit: s.unit });
        systemctl(["reload", s.unit]);
      }
    }
    j.write({ t: "done", finished: new Date().toISOString() });
  } catch (e) {
    // A failed apply takes back what it did, so the system is never left half-hardened.
    j.close();
    try {
      rollbackRun(id, { force: true, live: info.live }, stateDir);
    } catch (undo) {
      throw new BerthError(
        `apply failed (${errorLine(e)}) and rolling back failed too (${errorLine(undo)}); journal: ${j.dir}`,
      );
    }
    throw new BerthError(`apply failed, everything it changed was rolled back: ${errorLine(e)}`);
  }
  j.close();
  return id;
}

/** sd_booted(): systemd is PID 1. In a container or chroot there is nothing to reload or stop. */
const systemdRunning = () => existsSync("/run/systemd/system");

function systemctl(args: string[]): void {
  if (!systemdRunning()) return;
  try {
    execFileSync("systemctl", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 60_000 });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim().split("\n")[0];
    throw new BerthError(`systemctl ${args.join(" ")} failed${err ? `: ${err}` : ""}`);
  }
}

function validate(cmd: string[]): void {
  try {
    execFileSync(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim().split("\n")[0];
    throw new BerthError(
      `${cmd.join(" ")} rejects the new configuration${err ? `: ${err}` : ""}; roll back with berth harden rollback`,
    );
  }
}

type RunMeta = Extract<JournalEntry, { t: "meta" }>;

/** A run as `berth harden runs` lists it: its meta entry, and what the journal shows became of it. */
export type RunInfo = Omit<RunMeta, "t"> & {
  complete: boolean;
  rolledBack: boolean;
  files: number;
  steps: number;
};

export function readJournal(dir: string): JournalEntry[] {
  const text = readFileSync(join(dir, "journal.jsonl"), "utf8");
  const out: JournalEntry[] = [];
  // The last line may be cut short by a crash; everything before it was synced whole.
  for (const line of text.split("\n"))
    if (line.trim())
      try {
        out.push(JSON.parse(line) as JournalEntry);
      } catch {}
  return out;
}

export function listRuns(stateDir = defaultStateDir()): RunInfo[] {
  const runsDir = join(stateDir, "runs");
  if (!existsSync(runsDir)) return [];
  return readdirSync(runsDir)
    .sort()
    .flatMap((id) => {
      const dir = join(runsDir, id);
      let entries: JournalEntry[];
      try {
        entries = readJournal(dir);
      } catch {
        return [];
      }
      const meta = entries.find((e): e is RunMeta => e.t === "meta");
      if (!meta) return [];
      const { t: _meta, ...fields } = meta;
      return [
        {
          ...fields,
          id,
          complete: entries.some((e) => e.t === "done"),
          rolledBack: existsSync(join(dir, "rolled-back")),
          files: entries.filter((e) => e.t === "file").length,
          steps: entries.filter((e) => e.t === "sysctl" || e.t === "stop" || e.t === "reload").length,
        },
      ];
    });
}

/**
 * Restores everything a run changed, newest change first. Refuses (unless forced) when a file differs
 * from what apply left, so a later edit by someone else is never silently undone.
 */
export function rollbackRun(
  id: string,
  o: { force?: boolean; live: boolean },
  stateDir = defaultStateDir(),
): { files: number; steps: number } {
  const dir = join(stateDir, "runs", id);
  if (!existsSync(join(dir, "journal.jsonl"))) throw new BerthError(`no hardening run ${id} in ${stateDir}`);
  if (existsSync(join(dir, "rolled-back"))) throw new BerthError(`run ${id} was already rolled back`);
  const entries = readJournal(dir);
  const files = entries.filter((e): e is Extract<JournalEntry, { t: "file" }> => e.t === "file");
  const after = new Map(
    entries
      .filter((e): e is Extract<JournalEntry, { t: "file-done" }> => e.t === "file-done")
      .map((e) => [e.n, e.after]),
  );
  if (!o.force) {
    const changed = files.filter((f) => {
      const done = after.get(f.n);
      const now = fingerprint(readState(f.real));
      // An apply cut short before "file-done": the file is either as before or as intended.
      return done ? now !== done.sha256 : false;
    });
    if (changed.length)
      throw new BerthError(
        `${changed.map((f) => f.path).join(", ")} changed since run ${id}; use --force to restore anyway`,
      );
  }
  let steps = 0;
  // Run-time state first (it was changed last), newest first.
  for (const e of [...entries].reverse()) {
    if (!o.live) break;
    if (e.t === "sysctl") {
      writeFileSync(`/proc/sys/${e.key.replaceAll(".", "/")}`, e.before);
      steps++;
    }
  }
  let unitsChanged = false;
  for (const f of [...files].reverse()) {
    const b = f.before;
    if (!b.exists) rmSync(f.real, { force: true });
    else if (b.kind === "symlink")
      writeState(f.real, { exists: true, kind: "symlink", link: b.link, uid: b.uid, gid: b.gid });
    else if (b.kind === "file") {
      writeState(
        f.real,
        { exists: true, kind: "file", mode: b.mode, uid: b.uid, gid: b.gid },
        readFileSync(join(dir, b.backup!)),
      );
      utimesSync(f.real, b.atimeMs! / 1000, b.mtimeMs! / 1000);
    } else if (b.kind === "dir") {
      chownSync(f.real, b.uid ?? 0, b.gid ?? 0);
      chmodSync(f.real, b.mode ?? 0o755);
    }
    if (b.exists && b.kind === "symlink") lutimesSync(f.real, b.atimeMs! / 1000, b.mtimeMs! / 1000);
    if (f.path.startsWith("/etc/systemd/system/")) unitsChanged = true;
  }
  for (const e of [...entries].reverse())
    if (e.t === "mkdir")
      try {
        rmdirSync(e.path);
      } catch {}
  // Oldest record last, so each directory ends with the times it had before the run.
  for (const e of [...entries].reverse())
    if ((e.t === "file" || e.t === "mkdir") && existsSync(e.parent.path))
      utimesSync(e.parent.path, e.parent.atimeMs / 1000, e.parent.mtimeMs / 1000);
  if (o.live) {
    if (unitsChanged) systemctl(["daemon-reload"]);
    for (const e of entries) {
      if (e.t === "stop" && e.wasActive) {
        systemctl(["start", e.unit]);
        steps++;
      }
      if (e.t === "reload") {
        systemctl(["reload", e.unit]);
        steps++;
      }
    }
  }
  writeFileSync(join(dir, "rolled-back"), `${new Date().toISOString()}\n`);
  return { files: files.length, steps };
}
