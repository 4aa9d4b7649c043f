// Talking to the native ptrace helper (native/berth-ptrace.c, built by npm install into build/): one
// child process, one request line and one reply line at a time.

export interface ThreadRegisters {
  tid: number;
  /** rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip: DWARF register numbers 0..16. */
  regs: bigint[];
}

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import { BerthError } from "../common/errors.ts";

/**
 * Where the helper is: $BERTH_PTRACE_HELPER, the checkout's build/ (npm install builds it there), or
 * beside the running script (a bundled CLI, as in the Berth image: /usr/lib/berth/berth-ptrace).
 */
export function helperPath(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  const candidates = [
    process.env.BERTH_PTRACE_HELPER,
    join(here, "../../build/berth-ptrace"),
    join(here, "berth-ptrace"),
    "/usr/lib/berth/berth-ptrace",
  ].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p)) ?? candidates[1]!;
}

export class PtraceHelper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly waiting: ((line: string) => void)[] = [];
  private closed = false;

  constructor() {
    const helper = helperPath();
    if (!existsSync(helper))
      throw new BerthError(
        `the native helper ${helper} is missing: run npm install (it needs gcc and libc6-dev)`,
      );
    this.child = spawn(helper, [], { stdio: ["pipe", "pipe", "pipe"] });
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

  /** Stops every thread of the process; returns each thread's registers (DWARF order, rip last). */
  async stop(pid: number): Promise<ThreadRegisters[]> {
    const line = await this.send(`stop ${pid}`).catch((e: Error) => {
      throw new BerthError(`cannot stop process ${pid}: ${e.message}`);
    });
    const [, ...rest] = line.split(" ");
    return rest
      .join(" ")
      .split(";")
      .filter(Boolean)
      .map((t) => {
        const [tid, ...regs] = t.trim().split(" ");
        return { tid: Number(tid), regs: regs.map((r) => BigInt(`0x${r}`)) };
      });
  }

  /** Single-steps one stopped thread until its rip leaves the ranges; undefined when it does not in `max` steps. */
  async step(tid: number, max: number, ranges: [bigint, bigint][]): Promise<bigint[] | undefined> {
    const line = await this.raw(`step ${tid} ${max} ${rangeArgs(ranges)}`);
    if (line.startsWith("busy")) return undefined;
    if (!line.startsWith("ok ")) throw new BerthError(line.replace(/^err /, ""));
    return line
      .slice(3)
      .split(" ")
      .map((r) => BigInt(`0x${r}`));
  }

  /**
   * Writes every `data` where the process still holds `old`; nothing at all when one differs (returns
   * that address).
   */
  async writes(writes: { addr: bigint; old: Buffer; data: Buffer }[]): Promise<bigint | undefined> {
    for (let i = 0; i < writes.length; i += 2000) {
      const chunk = writes.slice(i, i + 2000);
      const w = chunk
        .map((x) => `${x.addr.toString(16)} ${x.old.toString("hex")} ${x.data.toString("hex")}`)
        .join(" ");
      const line = await this.raw(`writes ${chunk.length} ${w}`);
      if (line.startsWith("mismatch ")) return BigInt(line.slice(9));
      if (line !== "ok") throw new BerthError(line.replace(/^err /, ""));
    }
    return undefined;
  }

  /**
   * The same writes, then every thread resumed in the same request: the end of a critical section.
   * Returns the pause, or the address that held other bytes (the process is then still stopped).
   */
  async commit(
    writes: { addr: bigint; old: Buffer; data: Buffer }[],
  ): Promise<{ pauseNs?: number; mismatch?: bigint }> {
    // Long lists go in chunks; only the last chunk resumes.
    for (let i = 0; i + 2000 < writes.length; i += 2000) {
      const bad = await this.writes(writes.slice(i, i + 2000));
      if (bad !== undefined) return { mismatch: bad };
    }
    const tail = writes.slice(Math.floor(Math.max(0, writes.length - 1) / 2000) * 2000);
    const w = tail
      .map((x) => `${x.addr.toString(16)} ${x.old.toString("hex")} ${x.data.toString("hex")}`)
      .join(" ");
    const line = await this.raw(`commit ${tail.length}${w ? ` ${w}` : ""}`);
    if (line.startsWith("mismatch ")) return { mismatch: BigInt(line.slice(9)) };
    if (!line.startsWith("ok ")) throw new BerthError(line.replace(/^err /, ""));
    return { pauseNs: Number(line.slice(3)) };
  }

  /** Runs a system call inside the stopped process through the `syscall` instruction at `insn`. */
  async syscall(nr: number, args: bigint[], insn: bigint): Promise<bigint> {
    const a = [...args, 0n, 0n, 0n, 0n, 0n, 0n].slice(0, 6).map((x) => BigInt.asUintN(64, x).toString(16));
    const line = await this.send(`syscall ${nr.toString(16)} ${a.join(" ")} ${insn.toString(16)}`);
    return BigInt(line);
  }

  /** Calls FUNC() on the stopped process's first thread (an IFUNC resolver) and returns its result. */
  async call(func: bigint): Promise<bigint> {
    return BigInt(await this.send(`call ${func.toString(16)}`));
  }

  /** Resumes every thread; returns how long they were stopped, in nanoseconds. */
  async resume(): Promise<number> {
    return Number(await this.send("resume"));
  }

  /** Fault injection for the tests: SIGKILL the stopped process. */
  async kill(): Promise<void> {
    await this.send("kill");
  }

  close(): void {
    if (!this.closed) this.child.stdin.end("quit\n");
    this.lines.close();
  }
}

const rangeArgs = (ranges: [bigint, bigint][]) =>
  `${ranges.length} ${ranges.map(([a, b]) => `${a.toString(16)} ${b.toString(16)}`).join(" ")}`;
