// Shared helpers for the test suite: running commands and the berth CLI, temp dirs, real archive data.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/**
 * The workplace's shared data (../shared/data beside the repository). A clone elsewhere (CI clones into
 * a temporary directory) finds it beside the repository it was cloned from; BERTH_SHARED_DATA overrides.
 */
export const SHARED_DATA = process.env.BERTH_SHARED_DATA || besideRepository("data");

/**
 * A folder of ../shared (data, tools): beside this repository, or beside the repository it was cloned
 * from (a CI clone in a temporary directory has no ../shared of its own).
 */
export function besideRepository(sub: string): string {
  const beside = resolve(ROOT, "../shared", sub);
  if (existsSync(beside)) return beside;
  const origin = spawnSync("git", ["-C", ROOT, "config", "--get", "remote.origin.url"], {
    encoding: "utf8",
  }).stdout.trim();
  const fromOrigin = origin.startsWith("/") ? resolve(origin, "../shared", sub) : "";
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

/**
 * Asserts a CLI failure is one clean line, no stack trace. Progress lines of a run without a terminal
 * ("[   1.2s] ..." from src/cli/progress.ts) may come before it.
 */
export function isOneLineError(stderr: string): boolean {
  const lines = stderr
    .trim()
    .split("\n")
    .filter((l) => !/^\[ *\d+\.\ds\] /.test(l));
  return lines.length === 1 && lines[0]!.startsWith("berth: ") && !/\n\s+at /.test(stderr);
}

// The source's own bounded-concurrency helper, re-exported so the tests that drive many nodes import it
// from here with the rest.
export { mapLimit } from "../src/common/map-limit.ts";

/**
 * The directory where expensive fixtures live for one run of the suite: scripts/test.ts makes it
 * ($BERTH_TEST_SHARED), shares it with every test file and removes it at the end. A test file run on
 * its own gets one of its own.
 */
export function sharedDir(): string {
  if (!process.env.BERTH_TEST_SHARED) process.env.BERTH_TEST_SHARED = tempDir("berth-shared-");
  mkdirSync(process.env.BERTH_TEST_SHARED, { recursive: true });
  return process.env.BERTH_TEST_SHARED;
}

/**
 * A fixture built once per run and shared by every test file that asks for it by name (an OS image,
 * a built container image, a signed repository). The first caller builds it into a directory of its
 * own; callers in other processes wait for that build. A failed build is not cached: the next caller
 * tries again and reports its own error.
 */
export async function sharedFixture(name: string, build: (dir: string) => Promise<void>): Promise<string> {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`bad fixture name: ${name}`);
  const root = sharedDir();
  const dir = join(root, name);
  const lock = join(root, `${name}.lock`);
  const done = join(root, `${name}.done`);
  for (;;) {
    if (existsSync(done)) return dir;
    try {
      mkdirSync(lock); // atomic: exactly one process holds the build
      writeFileSync(join(lock, "pid"), String(process.pid));
    } catch {
      // A holder that died (killed test process) leaves its lock: take it over.
      const holder = Number.parseInt(readFileSafe(join(lock, "pid")) ?? "", 10);
      if (holder && !isAlive(holder)) rmSync(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      if (existsSync(done)) return dir;
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      await build(dir);
      writeFileSync(done, "");
      return dir;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

function readFileSafe(p: string): string | undefined {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
