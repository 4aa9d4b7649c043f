// Shared helpers for the test suite: running commands and the berth CLI, temp dirs, real archive data.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/**
 * The workplace's shared data (../shared/data beside the repository). A clone elsewhere (CI clones into
 * a temporary directory) finds it beside the repository it was cloned from; BERTH_SHARED_DATA overrides.
 */
export const SHARED_DATA = sharedData();

function sharedData(): string {
  if (process.env.BERTH_SHARED_DATA) return process.env.BERTH_SHARED_DATA;
  const beside = resolve(ROOT, "../shared/data");
  if (existsSync(beside)) return beside;
  const origin = spawnSync("git", ["-C", ROOT, "config", "--get", "remote.origin.url"], {
    encoding: "utf8",
  }).stdout.trim();
  const fromOrigin = origin.startsWith("/") ? resolve(origin, "../shared/data") : "";
  return fromOrigin && existsSync(fromOrigin) ? fromOrigin : beside;
}
export const BERTH = join(ROOT, "bin/berth");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runSync(
  cmd: string,
  args: string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): RunResult {
  const r = spawnSync(cmd, args, {
    input: opts.input,
    cwd: opts.cwd,
    env: opts.env,
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

export function run(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", rej);
    child.on("close", (code, signal) => res({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Runs the berth CLI as a user would. */
export function berth(
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return run(BERTH, args, { ...opts, env: { ...process.env, ...opts.env } });
}

/** `berth db update` into DB from each SOURCE (`NAME` or `NAME=LOCATION`), quietly. */
export function dbUpdate(db: string, sources: string[], extra: string[] = []): Promise<RunResult> {
  return berth(["db", "update", "--db", db, ...sources.flatMap((s) => ["--source", s]), ...extra, "-q"]);
}

/** A fresh temp directory, removed when the process exits. */
export function tempDir(prefix = "berth-test-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  process.on("exit", () => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Asserts a CLI failure is one clean line, no stack trace. */
export function isOneLineError(stderr: string): boolean {
  const lines = stderr.trim().split("\n");
  return lines.length === 1 && lines[0]!.startsWith("berth: ") && !/\n\s+at /.test(stderr);
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
