// Running external engines (mmdebstrap, mksquashfs, dpkg-deb, qemu): captured output, an optional line
// callback for progress, and failures turned into one-line BerthErrors.

import { spawn } from "node:child_process";
import { BerthError } from "../cli/errors.ts";

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

export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  const keep = o.keep ?? 1 << 20;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: o.env, cwd: o.cwd, stdio: ["pipe", "pipe", "pipe"] });
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
