// .eh_frame: where every function starts and ends (internal ones included, in a stripped library) and
// how to unwind through it. GCC and the OpenSSL perlasm scripts emit call-frame information (DWARF CFI)
// for every function so that C++ exceptions and backtraces work; Berth uses the same tables to list
// functions without debug symbols and to walk the stacks of a stopped process. Hand-written: no
// maintained npm library reads DWARF CFI. Every read is bounds-checked; a malformed entry ends the
// table with a BerthError rather than returning garbage.

import { BerthError } from "../common/errors.ts";
import type { ElfFile } from "./elf.ts";

export interface Cie {
  codeAlign: number;
  dataAlign: number;
  raRegister: number;
  /** Encoding of FDE addresses (DW_EH_PE_*). */
  fdeEncoding: number;
  lsdaEncoding: number;
  /** A signal trampoline's frame ('S' augmentation): the return address is not a call's. */
  signalFrame: boolean;
  hasAugmentationData: boolean;
  /** The initial instructions, as [start, end) file offsets. */
  instructions: [number, number];
}

export interface Fde {
  /** Address range of the function, in the object's virtual addresses. */
  start: number;
  end: number;
  cie: Cie;
  instructions: [number, number];
}

export interface EhFrame {
  /** The bytes the offsets refer to (the whole file, or a module read from memory). */
  bytes: Buffer;
  /** Sorted by start. */
  fdes: Fde[];
}

const DW_EH_PE_omit = 0xff;

class Cursor {
  readonly buf: Buffer;
  pos: number;
  readonly end: number;
  /** Virtual address of buf offset 0 within the section (for pc-relative pointers). */
  readonly addrDelta: number;
  constructor(buf: Buffer, pos: number, end: number, addrDelta: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.addrDelta = addrDelta;
  }
  need(n: number): number {
    if (n < 0 || this.pos + n > this.end)
      throw new BerthError("malformed .eh_frame: entry runs past its end");
    const p = this.pos;
    this.pos += n;
    return p;
  }
  u8() {
    return this.buf[this.need(1)]!;
  }
  u16() {
    return this.buf.readUInt16LE(this.need(2));
  }
  u32() {
    return this.buf.readUInt32LE(this.need(4));
  }
  s8() {
    return this.buf.readInt8(this.need(1));
  }
  s16() {
    return this.buf.readInt16LE(this.need(2));
  }
  s32() {
    return this.buf.readInt32LE(this.need(4));
  }
  u64() {
    return Number(this.buf.readBigUInt64LE(this.need(8)));
  }
  s64() {
    return Number(this.buf.readBigInt64LE(this.need(8)));
  }
  u64big() {
    return this.buf.readBigUInt64LE(this.need(8));
  }
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      if (!(b & 0x80)) return result;
      mul *= 128;
    }
    throw new BerthError("malformed .eh_frame: LEB128 number too long");
  }
  sleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return b & 0x40 ? result - mul : result;
    }
    throw new BerthError("malformed .eh_frame: LEB128 number too long");
  }
  cstr(): string {
    const e = this.buf.indexOf(0, this.pos);
    if (e < 0 || e >= this.end) throw new BerthError("malformed .eh_frame: unterminated string");
    const s = this.buf.toString("latin1", this.pos, e);
    this.pos = e + 1;
    return s;
  }
  /** A pointer in DW_EH_PE encoding `enc`; pc-relative ones are resolved to virtual addresses. */
  pointer(enc: number): number {
    if (enc === DW_EH_PE_omit) return 0;
    const here = this.pos + this.addrDelta;
    let v: number;
    switch (enc & 0x0f) {
      case 0x00:
        v = this.u64();
        break;
      case 0x01:
        v = this.uleb();
        break;
      case 0x02:
        v = this.u16();
        break;
      case 0x03:
        v = this.u32();
        break;
      case 0x04:
        v = this.u64();
        break;
      case 0x09:
        v = this.sleb();
        break;
      case 0x0a:
        v = this.s16();
        break;
      case 0x0b:
        v = this.s32();
        break;
      case 0x0c:
        v = this.s64();
        break;
      default:
        throw new BerthError(`malformed .eh_frame: pointer encoding 0x${enc.toString(16)}`);
    }
    switch (enc & 0x70) {
      case 0x00:
        return v;
      case 0x10:
        return v + here;
      default:
        // textrel/datarel/funcrel do not occur in x86-64 .eh_frame; refusing beats guessing.
        throw new BerthError(`malformed .eh_frame: pointer application 0x${(enc & 0x70).toString(16)}`);
    }
  }
}

/**
 * Parses .eh_frame of an ELF object. `bytes` holds the object as laid out in its file (or, for the
 * vDSO, in memory); `sectionOffset` is where .eh_frame starts in `bytes`, `sectionAddr` its address.
 */
export function parseEhFrameAt(
  bytes: Buffer,
  sectionOffset: number,
  sectionAddr: number,
  size: number,
): EhFrame {
  const end = Math.min(bytes.length, sectionOffset + size);
  const cies = new Map<number, Cie>();
  const fdes: Fde[] = [];
  const delta = sectionAddr - sectionOffset;
  let pos = sectionOffset;
  while (pos + 4 <= end) {
    const e = entryAt(bytes, pos, end, delta, cies);
    if (!e) break;
    if (e.fde) fdes.push(e.fde);
    pos = e.next;
  }
  fdes.sort((a, b) => a.start - b.start);
  return { bytes, fdes };
}

/** One CIE or FDE at `pos`; undefined at the terminator. */
function entryAt(
  bytes: Buffer,
  pos: number,
  end: number,
  delta: number,
  cies: Map<number, Cie>,
): { next: number; fde?: Fde } | undefined {
  let length = bytes.readUInt32LE(pos);
  let hdr = 4;
  if (length === 0) return undefined;
  if (length === 0xffffffff) {
    if (pos + 12 > end) return undefined;
    length = Number(bytes.readBigUInt64LE(pos + 4));
    hdr = 12;
  }
  const start = pos + hdr;
  const entryEnd = start + length;
  if (entryEnd > end || length < 4) throw new BerthError("malformed .eh_frame: entry runs past the section");
  const c = new Cursor(bytes, start, entryEnd, delta);
  const id = c.u32();
  if (id === 0) {
    if (!cies.has(pos)) cies.set(pos, parseCie(c));
    return { next: entryEnd };
  }
  const ciePos = start - id;
  let cie = cies.get(ciePos);
  if (!cie) {
    // A CIE after its FDE is legal; parse it on demand.
    cie = cieAt(bytes, ciePos, end, delta);
    cies.set(ciePos, cie);
  }
  const pcBegin = c.pointer(cie.fdeEncoding);
  const pcRange = c.pointer(cie.fdeEncoding & 0x0f);
  if (cie.hasAugmentationData) c.need(c.uleb());
  return {
    next: entryEnd,
    fde:
      pcRange > 0
        ? { start: pcBegin, end: pcBegin + pcRange, cie, instructions: [c.pos, entryEnd] }
        : undefined,
  };
}

/** Finding the FDE for an address quickly, for unwinding: through .eh_frame_hdr's sorted table. */
export interface CfiIndex {
  bytes: Buffer;
  fdeFor(pc: number): Fde | undefined;
}

export function cfiIndex(elf: ElfFile, bytes: Buffer): CfiIndex {
  const eh = elf.sections.find((x) => x.name === ".eh_frame");
  const hdr = elf.sections.find((x) => x.name === ".eh_frame_hdr");
  if (!eh) return { bytes, fdeFor: () => undefined };
  const full = () => {
    const parsed = ehFrameOf(elf, bytes);
    return { bytes, fdeFor: (pc: number) => fdeFor(parsed, pc) };
  };
  // version 1, table of (initial location, FDE address) as 4-byte offsets from the header (0x3b).
  if (!hdr || hdr.offset + 12 > bytes.length || bytes[hdr.offset] !== 1 || bytes[hdr.offset + 3] !== 0x3b)
    return full();
  const c = new Cursor(bytes, hdr.offset + 4, hdr.offset + hdr.size, hdr.addr - hdr.offset);
  c.pointer(bytes[hdr.offset + 1]!);
  const count = c.pointer(bytes[hdr.offset + 2]!);
  const table = c.pos;
  if (table + count * 8 > hdr.offset + hdr.size) return full();
  const cies = new Map<number, Cie>();
  const cache = new Map<number, Fde | undefined>();
  const end = Math.min(bytes.length, eh.offset + eh.size);
  return {
    bytes,
    fdeFor(pc: number) {
      let lo = 0;
      let hi = count - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (hdr.addr + bytes.readInt32LE(table + mid * 8) <= pc) {
          found = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (found < 0) return undefined;
      if (!cache.has(found)) {
        const fdeAddr = hdr.addr + bytes.readInt32LE(table + found * 8 + 4);
        const pos = eh.offset + (fdeAddr - eh.addr);
        const e =
          pos >= eh.offset && pos + 4 <= end
            ? entryAt(bytes, pos, end, eh.addr - eh.offset, cies)
            : undefined;
        cache.set(found, e?.fde);
      }
      const f = cache.get(found);
      return f && pc >= f.start && pc < f.end ? f : undefined;
    },
  };
}

function cieAt(bytes: Buffer, pos: number, end: number, delta: number): Cie {
  if (pos < 0 || pos + 8 > end) throw new BerthError("malformed .eh_frame: FDE points at no CIE");
  const length = bytes.readUInt32LE(pos);
  const c = new Cursor(bytes, pos + 4, Math.min(end, pos + 4 + length), delta);
  if (c.u32() !== 0) throw new BerthError("malformed .eh_frame: FDE points at no CIE");
  return parseCie(c);
}

function parseCie(c: Cursor): Cie {
  const version = c.u8();
  if (version !== 1 && version !== 3) throw new BerthError(`malformed .eh_frame: CIE version ${version}`);
  const aug = c.cstr();
  const codeAlign = c.uleb();
  const dataAlign = c.sleb();
  const raRegister = version === 1 ? c.u8() : c.uleb();
  let fdeEncoding = 0;
  let lsdaEncoding = DW_EH_PE_omit;
  let signalFrame = false;
  const hasAugmentationData = aug.startsWith("z");
  if (hasAugmentationData) {
    const augLen = c.uleb();
    const augEnd = c.pos + augLen;
    for (const ch of aug.slice(1)) {
      if (ch === "R") fdeEncoding = c.u8();
      else if (ch === "L") lsdaEncoding = c.u8();
      else if (ch === "P") c.pointer(c.u8());
      else if (ch === "S") signalFrame = true;
      else if (ch === "B" || ch === "G") {
        // AArch64 / MTE markers: no data.
      } else break;
    }
    c.pos = augEnd;
  }
  return {
    codeAlign,
    dataAlign,
    raRegister,
    fdeEncoding,
    lsdaEncoding,
    signalFrame,
    instructions: [c.pos, c.end],
    hasAugmentationData,
  };
}

/** The .eh_frame of a parsed ELF object whose file bytes are `bytes`. */
export function ehFrameOf(elf: ElfFile, bytes: Buffer): EhFrame {
  const s = elf.sections.find((x) => x.name === ".eh_frame");
  if (!s) return { bytes, fdes: [] };
  return parseEhFrameAt(bytes, s.offset, s.addr, s.size);
}

/** The FDE covering `pc` (binary search). */
export function fdeFor(eh: EhFrame, pc: number): Fde | undefined {
  let lo = 0;
  let hi = eh.fdes.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const f = eh.fdes[mid]!;
    if (pc < f.start) hi = mid - 1;
    else if (pc >= f.end) lo = mid + 1;
    else return f;
  }
  return undefined;
}

// ---- CFI rows: how to find the caller's frame at one pc ----

export type CfaRule = { kind: "reg"; reg: number; offset: number } | { kind: "expr"; expr: [number, number] };

export type RegisterRule =
  | { kind: "undefined" }
  | { kind: "same" }
  | { kind: "offset"; offset: number }
  | { kind: "valOffset"; offset: number }
  | { kind: "register"; reg: number }
  | { kind: "expr"; expr: [number, number] }
  | { kind: "valExpr"; expr: [number, number] };

export interface CfiRow {
  cfa: CfaRule;
  registers: Map<number, RegisterRule>;
  signalFrame: boolean;
  raRegister: number;
}

interface State {
  cfa: CfaRule;
  registers: Map<number, RegisterRule>;
}

/** Runs the CIE's and FDE's CFA programs up to `pc` and returns the row in effect there. */
export function cfiRowAt(bytes: Buffer, fde: Fde, pc: number): CfiRow {
  const cie = fde.cie;
  const st: State = { cfa: { kind: "reg", reg: 7, offset: 8 }, registers: new Map() };
  run(bytes, cie.instructions, cie, st, undefined, Number.POSITIVE_INFINITY, 0);
  const initial = new Map(st.registers);
  run(bytes, fde.instructions, cie, st, initial, pc, fde.start);
  return { cfa: st.cfa, registers: st.registers, signalFrame: cie.signalFrame, raRegister: cie.raRegister };
}

/** The canonical frame address a row's rule gives, from the frame's registers and memory. */
export function cfaRuleValue(
  bytes: Buffer,
  rule: CfaRule,
  reg: (n: number) => bigint | undefined,
  mem: (addr: bigint) => bigint | undefined,
): bigint | undefined {
  if (rule.kind === "expr") return evalExpression(bytes, rule.expr, reg, mem);
  const v = reg(rule.reg);
  return v === undefined ? undefined : BigInt.asUintN(64, v + BigInt(rule.offset));
}

function run(
  bytes: Buffer,
  [from, to]: [number, number],
  cie: Cie,
  st: State,
  initial: Map<number, RegisterRule> | undefined,
  pc: number,
  startLoc: number,
): void {
  const c = new Cursor(bytes, from, to, 0);
  let loc = startLoc;
  const stack: State[] = [];
  const block = (): [number, number] => {
    const len = c.uleb();
    const p = c.need(len);
    return [p, p + len];
  };
  while (c.pos < c.end) {
    const op = c.u8();
    const hi = op & 0xc0;
    const low = op & 0x3f;
    if (hi === 0x40) {
      loc += low * cie.codeAlign;
      if (loc > pc) return;
      continue;
    }
    if (hi === 0x80) {
      st.registers.set(low, { kind: "offset", offset: c.uleb() * cie.dataAlign });
      continue;
    }
    if (hi === 0xc0) {
      const r = initial?.get(low);
      if (r) st.registers.set(low, r);
      else st.registers.delete(low);
      continue;
    }
    switch (op) {
      case 0x00: // nop
        break;
      case 0x01: // set_loc
        loc = c.pointer(cie.fdeEncoding);
        if (loc > pc) return;
        break;
      case 0x02:
        loc += c.u8() * cie.codeAlign;
        if (loc > pc) return;
        break;
      case 0x03:
        loc += c.u16() * cie.codeAlign;
        if (loc > pc) return;
        break;
      case 0x04:
        loc += c.u32() * cie.codeAlign;
        if (loc > pc) return;
        break;
      case 0x05: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "offset", offset: c.uleb() * cie.dataAlign });
        break;
      }
      case 0x06: {
        const reg = c.uleb();
        const r = initial?.get(reg);
        if (r) st.registers.set(reg, r);
        else st.registers.delete(reg);
        break;
      }
      case 0x07:
        st.registers.set(c.uleb(), { kind: "undefined" });
        break;
      case 0x08:
        st.registers.set(c.uleb(), { kind: "same" });
        break;
      case 0x09: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "register", reg: c.uleb() });
        break;
      }
      case 0x0a:
        stack.push({ cfa: { ...st.cfa }, registers: new Map(st.registers) });
        break;
      case 0x0b: {
        const s = stack.pop();
        if (s) {
          st.cfa = s.cfa;
          st.registers = s.registers;
        }
        break;
      }
      case 0x0c: {
        const reg = c.uleb();
        st.cfa = { kind: "reg", reg, offset: c.uleb() };
        break;
      }
      case 0x0d:
        st.cfa = { kind: "reg", reg: c.uleb(), offset: st.cfa.kind === "reg" ? st.cfa.offset : 0 };
        break;
      case 0x0e:
        if (st.cfa.kind === "reg") st.cfa = { ...st.cfa, offset: c.uleb() };
        else c.uleb();
        break;
      case 0x0f:
        st.cfa = { kind: "expr", expr: block() };
        break;
      case 0x10: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "expr", expr: block() });
        break;
      }
      case 0x11: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "offset", offset: c.sleb() * cie.dataAlign });
        break;
      }
      case 0x12: {
        const reg = c.uleb();
        st.cfa = { kind: "reg", reg, offset: c.sleb() * cie.dataAlign };
        break;
      }
      case 0x13:
        if (st.cfa.kind === "reg") st.cfa = { ...st.cfa, offset: c.sleb() * cie.dataAlign };
        else c.sleb();
        break;
      case 0x14: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "valOffset", offset: c.uleb() * cie.dataAlign });
        break;
      }
      case 0x15: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "valOffset", offset: c.sleb() * cie.dataAlign });
        break;
      }
      case 0x16: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "valExpr", expr: block() });
        break;
      }
      case 0x2e: // GNU_args_size
        c.uleb();
        break;
      case 0x2f: {
        const reg = c.uleb();
        st.registers.set(reg, { kind: "offset", offset: -c.uleb() * cie.dataAlign });
        break;
      }
      default:
        throw new BerthError(`malformed .eh_frame: call frame instruction 0x${op.toString(16)}`);
    }
  }
}

/**
 * Evaluates a DWARF expression (the subset CFI uses: register-relative values, constants, memory reads,
 * arithmetic, comparisons) with `initial` pushed first. `reg` reads a register, `mem` reads 8 bytes.
 */
export function evalExpression(
  bytes: Buffer,
  [from, to]: [number, number],
  reg: (n: number) => bigint | undefined,
  mem: (addr: bigint) => bigint | undefined,
  initial?: bigint,
): bigint | undefined {
  const c = new Cursor(bytes, from, to, 0);
  const s: bigint[] = initial === undefined ? [] : [initial];
  const pop = () => {
    const v = s.pop();
    if (v === undefined) throw new BerthError("malformed DWARF expression: stack underflow");
    return v;
  };
  const u64 = (v: bigint) => BigInt.asUintN(64, v);
  for (let steps = 0; c.pos < c.end; steps++) {
    if (steps > 1000) return undefined;
    const op = c.u8();
    if (op >= 0x30 && op <= 0x4f) s.push(BigInt(op - 0x30));
    else if (op >= 0x50 && op <= 0x6f) {
      const v = reg(op - 0x50);
      if (v === undefined) return undefined;
      s.push(v);
    } else if (op >= 0x70 && op <= 0x8f) {
      const v = reg(op - 0x70);
      if (v === undefined) return undefined;
      s.push(u64(v + BigInt(c.sleb())));
    } else
      switch (op) {
        case 0x06: {
          const v = mem(pop());
          if (v === undefined) return undefined;
          s.push(v);
          break;
        }
        case 0x08:
          s.push(BigInt(c.u8()));
          break;
        case 0x09:
          s.push(u64(BigInt(c.s8())));
          break;
        case 0x0a:
          s.push(BigInt(c.u16()));
          break;
        case 0x0b:
          s.push(u64(BigInt(c.s16())));
          break;
        case 0x0c:
          s.push(BigInt(c.u32()));
          break;
        case 0x0d:
          s.push(u64(BigInt(c.s32())));
          break;
        case 0x0e:
        case 0x0f:
          s.push(c.u64big());
          break;
        case 0x10:
          s.push(BigInt(c.uleb()));
          break;
        case 0x11:
          s.push(u64(BigInt(c.sleb())));
          break;
        case 0x12:
          s.push(s.at(-1) ?? pop());
          break;
        case 0x13:
          pop();
          break;
        case 0x14:
          s.push(s.at(-2) ?? pop());
          break;
        case 0x16: {
          const a = pop();
          const b = pop();
          s.push(a, b);
          break;
        }
        case 0x1a:
          s.push(pop() & pop());
          break;
        case 0x1c: {
          const b = pop();
          s.push(u64(pop() - b));
          break;
        }
        case 0x1e:
          s.push(u64(pop() * pop()));
          break;
        case 0x21:
          s.push(pop() | pop());
          break;
        case 0x22:
          s.push(u64(pop() + pop()));
          break;
        case 0x23:
          s.push(u64(pop() + BigInt(c.uleb())));
          break;
        case 0x24: {
          const b = pop();
          s.push(u64(pop() << b));
          break;
        }
        case 0x25: {
          const b = pop();
          s.push(pop() >> b);
          break;
        }
        case 0x27:
          s.push(pop() ^ pop());
          break;
        case 0x29:
        case 0x2a:
        case 0x2b:
        case 0x2c:
        case 0x2d:
        case 0x2e: {
          const b = BigInt.asIntN(64, pop());
          const a = BigInt.asIntN(64, pop());
          const r =
            op === 0x29
              ? a === b
              : op === 0x2a
                ? a >= b
                : op === 0x2b
                  ? a > b
                  : op === 0x2c
                    ? a <= b
                    : op === 0x2d
                      ? a < b
                      : a !== b;
          s.push(r ? 1n : 0n);
          break;
        }
        case 0x96: // nop
          break;
        default:
          return undefined;
      }
  }
  return s.at(-1);
}
