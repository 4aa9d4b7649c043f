// Talking to the native ptrace helper (native/berth-ptrace.c, built by npm install into build/): one
// child process, one request line and one reply line at a time.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import { BerthError } from "../cli/errors.ts";

export const HELPER = join(fileURLToPath(new URL("../..", import.meta.url)), "build/berth-ptrace");

export class PtraceHelper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly waiting: ((line: string) => void)[] = [];
  private closed = false;

  constructor() {
    if (!existsSync(HELPER))
      throw new BerthError(
        `the native helper ${HELPER} is missing: run npm install (it needs gcc and libc6-dev)`,
      );
    this.child = spawn(HELPER, [], { stdio: ["pipe", "pipe", "pipe"] });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on("line", (l) => this.waiting.shift()?.(l));
    this.child.on("exit", () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w("err the ptrace helper exited");
    });
  }

  /** Sends one command and returns the reply line as it is. */
  async raw(cmd: string): Promise<string> {
    if (this.closed) throw new BerthError("the ptrace helper exited");
    return new Promise<string>((res) => {
      this.waiting.push(res);
      this.child.stdin.write(`${cmd}\n`);
    });
  }

  /** Sends one command; resolves with the text after "ok", rejects with the helper's error. */
  async send(cmd: string): Promise<string> {
    const line = await this.raw(cmd);
    if (line === "ok" || line.startsWith("ok ")) return line.slice(3);
    if (line.startsWith("busy ")) return line;
    throw new BerthError(line.replace(/^err /, ""));
  }

  async attach(pid: number): Promise<number> {
    return Number(await this.send(`attach ${pid}`));
  }

  async call(func: bigint, arg1: bigint, str: string): Promise<bigint> {
    return BigInt(
      await this.send(`call ${func.toString(16)} ${arg1.toString(16)} ${Buffer.from(str).toString("hex")}`),
    );
  }

  /**
   * The critical section in one request: stop every thread, make sure none is in `ranges`, check each
   * address still holds `old`, write `data`, resume. Nothing is written unless every check passes.
   */
  async swap(
    pid: number,
    ranges: [bigint, bigint][],
    writes: { addr: bigint; old: Buffer; data: Buffer }[],
    depth = 64,
  ): Promise<{ pauseNs?: number; busy?: string; mismatch?: string }> {
    const w = writes
      .map((x) => `${x.addr.toString(16)} ${x.old.toString("hex")} ${x.data.toString("hex")}`)
      .join(" ");
    const line = await this.raw(`swap ${pid} ${depth} ${rangeArgs(ranges)} ${writes.length} ${w}`);
    if (line.startsWith("ok ")) return { pauseNs: Number(line.slice(3)) };
    if (line.startsWith("busy ")) return { busy: line.slice(5) };
    if (line.startsWith("mismatch ")) return { mismatch: line.slice(9) };
    throw new BerthError(line.replace(/^err /, ""));
  }

  /** Resumes every thread; returns how long they were stopped, in nanoseconds. */
  async detach(): Promise<number> {
    return Number(await this.send("detach"));
  }

  close(): void {
    if (!this.closed) this.child.stdin.end("quit\n");
    this.lines.close();
  }
}

const rangeArgs = (ranges: [bigint, bigint][]) =>
  `${ranges.length} ${ranges.map(([a, b]) => `${a.toString(16)} ${b.toString(16)}`).join(" ")}`;
