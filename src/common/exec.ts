// Running external engines (mmdebstrap, mksquashfs, dpkg-deb, qemu): captured output, an optional line
// callback for progress, and failures turned into one-line BerthErrors.

import { spawn } from "node:child_process";
import { BerthError } from "./errors.ts";

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Called with each line of stderr (and stdout with `lineStdout`) as it arrives. */
  onLine?: (line: string) => void;
  lineStdout?: boolean;
  /** Keep at most this many bytes of each stream (the tail). */
  keep?: number;
}

export interface RunResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Children still running, so an interrupted command can stop them. */
export const liveChildren = new Set<import("node:child_process").ChildProcess>();

const groupAlive = (pgid: number) => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};
const signalGroup = (pgid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(-pgid, sig);
  } catch {}
};

/**
 * Stops every running child and everything it started (each runs in its own process group): SIGTERM,
 * a grace period for engines to clean up (mmdebstrap unmounts), then SIGKILL. Returns when no process
 * of those groups is left, so nothing writes while the caller cleans up.
 */
export async function stopChildren(graceMs = 60_000): Promise<void> {
  const groups = [...liveChildren].map((c) => c.pid).filter((p): p is number => !!p);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  for (const g of groups) signalGroup(g, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (groups.some(groupAlive) && Date.now() < deadline) await sleep(100);
  for (const g of groups) if (groupAlive(g)) signalGroup(g, "SIGKILL");
  while (groups.some(groupAlive) && Date.now() < deadline + 10_000) await sleep(100);
}

const interruptCleanups = new Set<(signal: NodeJS.Signals) => Promise<void>>();
let handlersInstalled = false;

/**
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP while children run: stop them and all they started, run the
 * registered cleanups, exit 130. Children sit in their own process groups, so the terminal's signal
 * does not reach them directly; this is what stops them.
 */
function installInterruptHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.on(sig, () => {
      void stopChildren()
        .then(() => Promise.allSettled([...interruptCleanups].map((c) => c(sig))))
        .then(() => process.exit(130));
    });
}

/** Registers work to do after an interruption has stopped every child; returns the unregister function. */
export function onInterrupt(cleanup: (signal: NodeJS.Signals) => Promise<void>): () => void {
  installInterruptHandlers();
  interruptCleanups.add(cleanup);
  return () => interruptCleanups.delete(cleanup);
}

export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  installInterruptHandlers();
  const keep = o.keep ?? 1 << 20;
  return new Promise((resolve, reject) => {
    // Its own process group, so an interrupted command can stop the engine and everything it forked.
    const child = spawn(cmd, args, {
      env: o.env,
      cwd: o.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    liveChildren.add(child);
    let stdout = "";
    let stderr = "";
    const feed = (which: "out" | "err") => {
      let partial = "";
      return (d: string) => {
        if (which === "out") stdout = (stdout + d).slice(-keep);
        else stderr = (stderr + d).slice(-keep);
        if (!o.onLine || (which === "out" && !o.lineStdout)) return;
        partial += d;
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) o.onLine(l);
      };
    };
    child.stdout.setEncoding("utf8").on("data", feed("out"));
    child.stderr.setEncoding("utf8").on("data", feed("err"));
    child.on("error", (e: NodeJS.ErrnoException) => {
      liveChildren.delete(child);
      reject(new BerthError(e.code === "ENOENT" ? `${cmd} is not installed` : `${cmd}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      liveChildren.delete(child);
      resolve({ code: code ?? 128, signal, stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(o.input ?? "");
  });
}

/** Runs a command and throws a one-line error (the tool's last stderr line) when it fails. */
export async function runChecked(
  what: string,
  cmd: string,
  args: string[],
  o: RunOptions = {},
): Promise<RunResult> {
  const r = await run(cmd, args, o);
  if (r.code !== 0) {
    const last = r.stderr.trim().split("\n").filter(Boolean).pop() ?? r.stdout.trim().split("\n").pop() ?? "";
    throw new BerthError(`${what} failed (${cmd} exit ${r.signal ?? r.code}): ${last}`);
  }
  return r;
}
