// Walking the stacks of a stopped process, frame by frame, with the call-frame information of every
// module it maps (.eh_frame through .eh_frame_hdr, the vDSO's from memory, and a patch image's from
// the new build it was mapped from). Where a frame has no CFI (JIT code, hand-written assembly), the
// walk follows the frame pointer when that looks sound, and otherwise scans the rest of the stack
// word by word: a return address is always somewhere on the stack, so the scan can only find too much.

import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { type CfiIndex, cfaRuleValue, cfiIndex, cfiRowAt, evalExpression } from "./eh-frame.ts";
import { loadBias, parseElf } from "./elf.ts";
import { type Mapping, mappedFile, readMaps } from "./proc.ts";
import { AddressRanges } from "./ranges.ts";

interface Module {
  start: bigint;
  end: bigint;
  bias: bigint;
  cfi?: CfiIndex;
  path: string;
}

interface FileCfi {
  cfi?: CfiIndex;
  /** The ELF file as parsed, for the load bias. */
  lowVaddr: bigint;
}

const cfiByFile = new Map<string, FileCfi>();

/** The CFI of one mapped file, cached by device and inode (the same file in every process). */
function moduleCfi(pid: number, m: Mapping): FileCfi {
  const key = `${m.dev}:${m.inode}:${m.path}`;
  let f = cfiByFile.get(key);
  if (!f) {
    try {
      const bytes = mappedFile(pid, m);
      const elf = parseElf(bytes);
      f = { cfi: cfiIndex(elf, bytes), lowVaddr: loadBias(0n, elf) };
    } catch {
      f = { lowVaddr: 0n };
    }
    cfiByFile.set(key, f);
  }
  return f;
}

/** A process's modules with their CFI, read before the process is stopped (it costs file reads). */
export class ProcessUnwinder {
  readonly pid: number;
  private readonly modules: Module[] = [];
  private readonly stacks: Mapping[];
  private memfd = -1;

  constructor(
    pid: number,
    maps = readMaps(pid),
    extra: { start: bigint; end: bigint; bias: bigint; cfi: CfiIndex; path: string }[] = [],
  ) {
    this.pid = pid;
    const firstOf = new Map<string, Mapping>();
    for (const m of maps)
      if (m.path.startsWith("/") && m.offset === 0n && !firstOf.has(m.path)) firstOf.set(m.path, m);
    for (const m of maps) {
      if (!m.perms.includes("x")) continue;
      const first = firstOf.get(m.path);
      if (m.path === "[vdso]") {
        const cfi = this.vdsoCfi(m);
        this.modules.push({ start: m.start, end: m.end, bias: m.start, cfi, path: m.path });
        continue;
      }
      if (!first) continue;
      const f = moduleCfi(pid, first);
      // loadBias(0) is minus the lowest page-aligned load address.
      this.modules.push({
        start: m.start,
        end: m.end,
        bias: first.start + f.lowVaddr,
        cfi: f.cfi,
        path: m.path,
      });
    }
    for (const e of extra) this.modules.push(e);
    this.stacks = maps.filter((m) => m.perms.startsWith("rw"));
  }

  private vdsoCfi(m: Mapping): CfiIndex | undefined {
    try {
      const buf = Buffer.alloc(Number(m.end - m.start));
      const fd = openSync(`/proc/${this.pid}/mem`, "r");
      try {
        readSync(fd, buf, 0, buf.length, m.start);
      } finally {
        closeSync(fd);
      }
      return cfiIndex(parseElf(buf), buf);
    } catch {
      return undefined;
    }
  }

  /**
   * Walks each thread's stack once from what /proc/PID/task/TID/syscall shows (stack pointer and pc of
   * a thread in a system call), without stopping anything: the CFI the walk will need is parsed and the
   * walker's code is warm before the process is stopped, so the stop itself stays short.
   */
  warmUp(ranges: AddressRanges): void {
    this.open();
    try {
      for (const t of readdirSync(`/proc/${this.pid}/task`)) {
        let f: string[];
        try {
          f = readFileSync(`/proc/${this.pid}/task/${t}/syscall`, "utf8").trim().split(" ");
        } catch {
          continue;
        }
        if (f.length < 9) continue;
        const regs = new Array<bigint>(17).fill(0n);
        regs[7] = BigInt(f[7]!);
        regs[16] = BigInt(f[8]!);
        this.findFrameIn(regs, ranges);
      }
    } finally {
      this.close();
    }
  }

  open(): void {
    if (this.memfd < 0) this.memfd = openSync(`/proc/${this.pid}/mem`, "r");
  }

  close(): void {
    if (this.memfd >= 0) closeSync(this.memfd);
    this.memfd = -1;
  }

  private readonly word = Buffer.alloc(8);
  read(addr: bigint): bigint | undefined {
    try {
      if (readSync(this.memfd, this.word, 0, 8, addr) !== 8) return undefined;
      return this.word.readBigUInt64LE(0);
    } catch {
      return undefined;
    }
  }

  private moduleAt(pc: bigint): Module | undefined {
    for (const m of this.modules) if (pc >= m.start && pc < m.end) return m;
    return undefined;
  }

  /**
   * The first frame whose code lies in one of `ranges`, for one thread whose registers are `regs`
   * (DWARF order, rip last); undefined when no frame does. `top` says the match is the innermost frame.
   */
  findFrameIn(
    regs: bigint[],
    ranges: [bigint, bigint][] | AddressRanges,
  ): { pc: bigint; top: boolean; scanned: boolean } | undefined {
    const set = ranges instanceof AddressRanges ? ranges : new AddressRanges(ranges);
    const inRange = (pc: bigint) => set.has(pc);
    let r = [...regs];
    let signal = true; // the innermost frame's pc is exact, like a signal frame's
    for (let depth = 0; depth < 512; depth++) {
      const pc = r[16]!;
      if (pc === 0n) return undefined;
      const at = signal ? pc : pc - 1n;
      if (inRange(at)) return { pc, top: depth === 0, scanned: false };
      const m = this.moduleAt(at);
      const fde = m?.cfi?.fdeFor(Number(at - m.bias));
      if (!m?.cfi || !fde) {
        // No CFI: a frame-pointer chain when rbp points into the stack above rsp, else a scan.
        const rbp = r[6]!;
        const rsp = r[7]!;
        const ra = rbp > rsp && rbp - rsp < 1n << 20n ? this.read(rbp + 8n) : undefined;
        const saved = ra !== undefined ? this.read(rbp) : undefined;
        if (ra !== undefined && saved !== undefined && this.moduleAt(ra - 1n) && depth > 0) {
          r = [...r];
          r[16] = ra;
          r[7] = rbp + 16n;
          r[6] = saved;
          signal = false;
          continue;
        }
        return this.scan(rsp, inRange);
      }
      const row = cfiRowAt(m.cfi.bytes, fde, Number(at - m.bias));
      const reg = (n: number) => r[n];
      const mem = (a: bigint) => this.read(a);
      const cfa = cfaRuleValue(m.cfi.bytes, row.cfa, reg, mem);
      if (cfa === undefined) return this.scan(r[7]!, inRange);
      const next = [...r];
      for (const [n, rule] of row.registers) {
        if (n > 16) continue;
        switch (rule.kind) {
          case "offset":
            next[n] = this.read(cfa + BigInt(rule.offset)) ?? 0n;
            break;
          case "valOffset":
            next[n] = cfa + BigInt(rule.offset);
            break;
          case "register":
            next[n] = r[rule.reg] ?? 0n;
            break;
          case "expr": {
            const a = evalExpression(m.cfi.bytes, rule.expr, reg, mem, cfa);
            next[n] = a === undefined ? 0n : (this.read(a) ?? 0n);
            break;
          }
          case "valExpr":
            next[n] = evalExpression(m.cfi.bytes, rule.expr, reg, mem, cfa) ?? 0n;
            break;
          case "undefined":
            if (n === row.raRegister) next[16] = 0n;
            break;
        }
      }
      if (row.raRegister !== 16) next[16] = next[row.raRegister] ?? 0n;
      if (!row.registers.has(row.raRegister)) return this.scan(r[7]!, inRange);
      next[7] = cfa;
      if (next[7]! <= r[7]! && !row.signalFrame && next[16] !== 0n) return this.scan(r[7]!, inRange);
      r = next;
      signal = row.signalFrame;
    }
    return this.scan(r[7]!, inRange);
  }

  /** Every word from `sp` to the end of its stack mapping (up to 1 MiB) that lies in the ranges. */
  private scan(
    sp: bigint,
    inRange: (pc: bigint) => boolean,
  ): { pc: bigint; top: boolean; scanned: boolean } | undefined {
    const m = this.stacks.find((s) => sp >= s.start && sp < s.end);
    if (!m) return undefined;
    const end = m.end - sp > 1n << 20n ? sp + (1n << 20n) : m.end;
    const buf = Buffer.alloc(Number(end - sp));
    try {
      readSync(this.memfd, buf, 0, buf.length, sp);
    } catch {
      return undefined;
    }
    for (let o = 0; o + 8 <= buf.length; o += 8) {
      const v = buf.readBigUInt64LE(o);
      if (inRange(v) || inRange(v - 1n)) return { pc: v, top: false, scanned: true };
    }
    return undefined;
  }
}
