// The agent carries out work with Berth's own commands, run as child processes: the same code paths,
// journals and guards an administrator gets at the shell. BERTH_BIN overrides the program.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The berth program: $BERTH_BIN, the checkout's bin/berth, or the image's /usr/bin/berth. */
export const BERTH_BIN = berthBin();

function berthBin(): string {
  if (process.env.BERTH_BIN) return process.env.BERTH_BIN;
  const checkout = resolve(dirname(fileURLToPath(import.meta.url)), "../../bin/berth");
  return existsSync(checkout) ? checkout : "/usr/bin/berth";
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json?: unknown;
}

export function berthJson(args: string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((res) => {
    const child = spawn(BERTH_BIN, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BERTH_PROGRESS: "0" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < 16 << 20) stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 1 << 20) stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      res({ code: 127, stdout, stderr: e.message });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {}
      res({ code: code ?? (signal ? 128 : 1), stdout, stderr, ...(json !== undefined ? { json } : {}) });
    });
  });
}

/** The command's error line (berth prints one), for a job's error. */
export function errorOf(r: CommandResult): string {
  const line = r.stderr.trim().split("\n").filter(Boolean).pop() ?? "";
  return (line.replace(/^berth: /, "") || `exit status ${r.code}`).slice(0, 4000);
}
