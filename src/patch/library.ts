// One shared library as live patching sees it, from what a stripped Debian build carries: every function
// (start and end from .eh_frame, exported names from .dynsym), the PLT stubs and GOT slots with the
// symbols they stand for, and what kind of thing any address in the object is (code, constant, state).

import { createHash } from "node:crypto";
import { BerthError } from "../common/errors.ts";
import { CodeReader, type CodeRef, type DecodedFunction } from "./disasm.ts";
import { ehFrameOf } from "./eh-frame.ts";
import {
  type ElfFile,
  type ElfRelocation,
  type ElfSection,
  exportedFunctions,
  PF_W,
  PT_LOAD,
  PT_TLS,
  parseElf,
  SHF_ALLOC,
  SHF_EXECINSTR,
  SHF_WRITE,
} from "./elf.ts";
import { findRange } from "./ranges.ts";

export interface LibFunction {
  index: number;
  start: number;
  end: number;
  /** Exported names (name@version) whose address is the start. */
  names: string[];
  /** Exported names that enter the function further in (hand-written assembly), with their offsets. */
  innerEntries: { name: string; offset: number }[];
  ifunc: boolean;
  /** Its end comes from the next function's start, not from .eh_frame or a symbol size. */
  sizeGuessed: boolean;
  /**
   * Bytes between the functions .eh_frame and .dynsym name: hand-written assembly without unwind
   * information, or constants kept in .text. Compared byte for byte when they do not decode cleanly.
   */
  fromGap?: boolean;
}

export type Target =
  | { kind: "fn"; fn: LibFunction; offset: number }
  | { kind: "plt"; symbol: string }
  | { kind: "got"; slot: number; reloc?: ElfRelocation }
  | { kind: "text" }
  | { kind: "ro"; section: string }
  | { kind: "data"; section: string }
  | { kind: "none" };

export interface Library {
  path: string;
  elf: ElfFile;
  bytes: Buffer;
  sha256: string;
  code: CodeReader;
  /** Sorted by start, non-overlapping. */
  functions: LibFunction[];
  pltStubs: Map<number, string>;
  gotSlots: Map<number, ElfRelocation>;
  /** Sorted allocated sections. */
  sections: ElfSection[];
  tls?: { vaddr: number; filesz: number; memsz: number };
  decoded: Map<number, DecodedFunction>;
  /** Sorted addresses of read-only data that code or relocations refer to (computed on first use). */
  constantStarts?: Float64Array;
  classified: Map<number, Target>;
}

export const symbolKey = (name: string, version?: string) => (version ? `${name}@${version}` : name);

export function loadLibrary(path: string, bytes: Buffer): Library {
  const elf = parseElf(bytes);
  if (elf.type !== 3) throw new BerthError(`${path} is not a shared object`);
  const code = new CodeReader(elf, bytes);
  const starts = new Map<number, LibFunction>();
  const list: LibFunction[] = [];
  const add = (start: number, end: number, sizeGuessed: boolean) => {
    const f: LibFunction = {
      index: 0,
      start,
      end,
      names: [],
      innerEntries: [],
      ifunc: false,
      sizeGuessed,
    };
    starts.set(start, f);
    list.push(f);
    return f;
  };
  // PLT stubs have an FDE of their own; they are not functions of the library.
  const plt = elf.sections.filter((s) => /^\.plt/.test(s.name));
  const inPlt = (a: number) => plt.some((s) => a >= s.addr && a < s.addr + s.size);
  for (const fde of ehFrameOf(elf, bytes).fdes)
    if (code.isCode(fde.start, fde.end) && !starts.has(fde.start) && !inPlt(fde.start))
      add(fde.start, fde.end, false);
  list.sort((a, b) => a.start - b.start);
  const containing = (addr: number) => findRange(list, addr);
  // Exported functions: names for the ranges .eh_frame gave, and ranges of their own for the rest.
  const extra: { start: number; size: number; key: string; ifunc: boolean }[] = [];
  for (const s of exportedFunctions(elf)) {
    const start = Number(s.value);
    const key = symbolKey(s.name, s.version);
    const f = starts.get(start) ?? containing(start);
    if (f) {
      if (f.start === start) f.names.push(key);
      else f.innerEntries.push({ name: key, offset: start - f.start });
      if (s.type === "ifunc" && f.start === start) f.ifunc = true;
    } else if (code.isCode(start)) extra.push({ start, size: s.size, key, ifunc: s.type === "ifunc" });
  }
  extra.sort((a, b) => a.start - b.start);
  for (const e of extra) {
    const existing = starts.get(e.start);
    if (existing) {
      existing.names.push(e.key);
      existing.ifunc ||= e.ifunc;
      continue;
    }
    const f = add(e.start, e.start + e.size, e.size === 0);
    f.names.push(e.key);
    f.ifunc = e.ifunc;
  }
  list.sort((a, b) => a.start - b.start);
  // Code between the functions .eh_frame and .dynsym know (hand-written assembly without unwind
  // information, constant tables in .text) becomes a function of its own, so that no changed byte of
  // code escapes the comparison.
  for (const sec of elf.sections.filter(
    (s) => s.flags & SHF_EXECINSTR && s.size > 0 && !/^\.plt/.test(s.name),
  )) {
    const secEnd = sec.addr + sec.size;
    const inside = list.filter((f) => f.start >= sec.addr && f.start < secEnd);
    let at = sec.addr;
    const gaps: [number, number][] = [];
    for (const f of inside) {
      if (f.start > at) gaps.push([at, f.start]);
      at = Math.max(at, f.end);
    }
    if (at < secEnd) gaps.push([at, secEnd]);
    for (const [a, b] of gaps) {
      // Walk the gap instruction by instruction (padding runs at once); padding that ends on a 16-byte
      // boundary separates two pieces, as assemblers align each function.
      let pieceStart: number | undefined;
      let p = a;
      while (p < b) {
        const pad = code.paddingLength(p, b);
        if (pad > 0 && ((p + pad) % 16 === 0 || p + pad >= b)) {
          if (pieceStart !== undefined) add(pieceStart, p, true).fromGap = true;
          pieceStart = undefined;
          p += pad;
          continue;
        }
        pieceStart ??= p;
        p = pad > 0 ? p + pad : nextInstruction(code, p, b);
      }
      if (pieceStart !== undefined) add(pieceStart, b, true).fromGap = true;
    }
  }
  list.sort((a, b) => a.start - b.start);
  // Symbols without a size, or sizes that run into the next function, end where the next one starts.
  for (let i = 0; i < list.length; i++) {
    const f = list[i]!;
    const next = list[i + 1];
    if (next && f.end > next.start) f.end = next.start;
    if (f.end <= f.start) {
      f.end = next ? next.start : f.start + 1;
      f.sizeGuessed = true;
    }
    while (!code.isCode(f.start, f.end) && f.end > f.start + 1) f.end--;
    f.index = i;
    f.names.sort();
  }
  const sections = elf.sections
    .filter((s) => s.flags & SHF_ALLOC && s.size > 0)
    .sort((a, b) => a.addr - b.addr);
  const gotSlots = new Map<number, ElfRelocation>();
  const gotSections = sections.filter((s) => s.name === ".got" || s.name === ".got.plt");
  for (const r of elf.relocations) {
    const at = Number(r.offset);
    if (gotSections.some((s) => at >= s.addr && at < s.addr + s.size)) gotSlots.set(at, r);
  }
  const tlsSeg = elf.segments.find((s) => s.type === PT_TLS);
  const lib: Library = {
    path,
    elf,
    bytes,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    code,
    functions: list,
    pltStubs: new Map(),
    gotSlots,
    sections,
    tls: tlsSeg ? { vaddr: tlsSeg.vaddr, filesz: tlsSeg.filesz, memsz: tlsSeg.memsz } : undefined,
    decoded: new Map(),
    classified: new Map(),
  };
  lib.pltStubs = pltStubs(lib);
  return lib;
}

/** The end of the instruction at `p` (or p+1 where nothing decodes). */
function nextInstruction(code: CodeReader, p: number, end: number): number {
  return Math.min(end, p + Math.max(1, code.lengthAt(p)));
}

/** PLT stubs: each entry's indirect jump through a GOT slot names the symbol the stub calls. */
function pltStubs(lib: Library): Map<number, string> {
  const out = new Map<number, string>();
  for (const s of lib.sections.filter((x) => /^\.plt(\.sec|\.got)?$/.test(x.name))) {
    const entry = s.name === ".plt.got" ? 8 : 16;
    const d = lib.code.decode(s.addr, s.addr + s.size);
    for (const r of d.refs) {
      if (r.kind !== "mem") continue;
      const reloc = lib.gotSlots.get(r.target);
      if (!reloc?.symbol) continue;
      const at = s.addr + r.at;
      out.set(at - ((at - s.addr) % entry), symbolKey(reloc.symbol, reloc.symbolVersion));
    }
  }
  return out;
}

export function decoded(lib: Library, f: LibFunction): DecodedFunction {
  let d = lib.decoded.get(f.start);
  if (!d) {
    d = lib.code.decode(f.start, f.end);
    lib.decoded.set(f.start, d);
  }
  return d;
}

export function functionAt(lib: Library, addr: number): LibFunction | undefined {
  return findRange(lib.functions, addr);
}

export function sectionOf(lib: Library, addr: number): ElfSection | undefined {
  const list = lib.sections;
  let lo = 0;
  let hi = list.length - 1;
  let best: ElfSection | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.addr <= addr) {
      best = list[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best && addr < best.addr + best.size ? best : undefined;
}

/** What the address names: a function (and how far into it), a PLT stub, a GOT slot, a constant or state. */
export function classify(lib: Library, addr: number): Target {
  let t = lib.classified.get(addr);
  if (!t) {
    t = classifyUncached(lib, addr);
    lib.classified.set(addr, t);
  }
  return t;
}

function classifyUncached(lib: Library, addr: number): Target {
  const stub = lib.pltStubs.get(addr);
  if (stub) return { kind: "plt", symbol: stub };
  const sec = sectionOf(lib, addr);
  if (sec && /^\.plt/.test(sec.name)) return { kind: "none" };
  const f = functionAt(lib, addr);
  if (f) return { kind: "fn", fn: f, offset: addr - f.start };
  if (!sec) {
    // Between sections inside a load segment (alignment), or outside the object.
    const seg = lib.elf.segments.find(
      (s) => s.type === PT_LOAD && addr >= s.vaddr && addr < s.vaddr + s.memsz,
    );
    if (!seg) return { kind: "none" };
    return seg.flags & PF_W ? { kind: "data", section: "" } : { kind: "ro", section: "" };
  }
  if (sec.name === ".got" || sec.name === ".got.plt")
    return { kind: "got", slot: addr - ((addr - sec.addr) % 8), reloc: lib.gotSlots.get(addr) };
  if (sec.flags & SHF_EXECINSTR) return { kind: "text" };
  if (sec.flags & SHF_WRITE) return { kind: "data", section: sec.name };
  return { kind: "ro", section: sec.name };
}

export const refTarget = (lib: Library, r: CodeRef) => classify(lib, r.target);

/** A label for an address in messages: the exported name, or "internal function at 0x...". */
export function describeFunction(f: LibFunction): string {
  return f.names[0]?.replace(/@.*$/, "") ?? `internal function at 0x${f.start.toString(16)}`;
}

/**
 * Where the next referenced constant after `addr` starts: without symbols, the best bound on a
 * constant's size is the next address anything refers to.
 */
export function nextConstant(lib: Library, addr: number): number | undefined {
  if (!lib.constantStarts) {
    const set = new Set<number>();
    for (const f of lib.functions)
      for (const r of decoded(lib, f).refs) if (r.kind === "lea" || r.kind === "mem") set.add(r.target);
    for (const r of lib.elf.relocations) if (r.type === 8) set.add(Number(r.addend));
    lib.constantStarts = Float64Array.from(set).sort();
  }
  const a = lib.constantStarts;
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo < a.length ? a[lo] : undefined;
}
