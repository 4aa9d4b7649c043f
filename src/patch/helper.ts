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

  /** Sends one command; resolves with the text after "ok", rejects with the helper's error. */
  async send(cmd: string): Promise<string> {
    if (this.closed) throw new BerthError("the ptrace helper exited");
    const line = await new Promise<string>((res) => {
      this.waiting.push(res);
      this.child.stdin.write(`${cmd}\n`);
    });
    if (line === "ok" || line.startsWith("ok ")) return line.slice(3);
    if (line.startsWith("busy ")) return line;
    throw new BerthError(line.replace(/^err /, ""));
  }

  async attach(pid: number): Promise<number> {
    return Number(await this.send(`attach ${pid}`));
  }

  /** "ok", or the thread and address that make the bytes unsafe to change now. */
  async check(ranges: [bigint, bigint][], depth = 64): Promise<{ busy?: string }> {
    const r = await this.send(
      `check ${depth} ${ranges.map(([a, b]) => `0x${a.toString(16)} 0x${b.toString(16)}`).join(" ")}`,
    );
    return r.startsWith("busy ") ? { busy: r.slice(5) } : {};
  }

  async call(func: bigint, arg1: bigint, str: string): Promise<bigint> {
    return BigInt(
      await this.send(`call ${func.toString(16)} ${arg1.toString(16)} ${Buffer.from(str).toString("hex")}`),
    );
  }

  async read(addr: bigint, len: number): Promise<Buffer> {
    return Buffer.from(await this.send(`read ${addr.toString(16)} ${len}`), "hex");
  }

  async write(addr: bigint, data: Buffer): Promise<void> {
    await this.send(`write ${addr.toString(16)} ${data.toString("hex")}`);
  }

  /** Several reads in one round trip. */
  async readMany(items: { addr: bigint; len: number }[]): Promise<Buffer[]> {
    if (!items.length) return [];
    const r = await this.send(`readv ${items.map((i) => `${i.addr.toString(16)} ${i.len}`).join(" ")}`);
    return r.split(" ").map((x) => Buffer.from(x, "hex"));
  }

  /** Several writes in one round trip, in order; stops at the first failure. */
  async writeMany(items: { addr: bigint; data: Buffer }[]): Promise<void> {
    if (items.length)
      await this.send(
        `writev ${items.map((i) => `${i.addr.toString(16)} ${i.data.toString("hex")}`).join(" ")}`,
      );
  }

  /** Resumes every thread; returns how long they were stopped, in nanoseconds. */
  async detach(): Promise<number> {
    return Number(await this.send("detach"));
  }

  async kill(): Promise<void> {
    await this.send("kill");
  }

  close(): void {
    if (!this.closed) this.child.stdin.end("quit\n");
    this.lines.close();
  }
}
