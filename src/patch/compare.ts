// What a library update changed, function by function, and whether it can be applied to a running
// process. Two functions are identical when their bytes are equal once every address that only moved
// is replaced by what it names (the matched function, the PLT symbol, the GOT entry's symbol, the old
// build's corresponding variable, or a constant with the same bytes). Only the changed functions — and
// the functions they need that the old build lacks — are copied into the process; everything else
// keeps running the old library's code on the old library's data.

import { Code, FlowControl, Register } from "iced-x86";
import type { CodeRef } from "./disasm.ts";
import { exportedFunctions, R_X86_64_IRELATIVE, R_X86_64_RELATIVE } from "./elf.ts";
import { layoutProblems } from "./layout.ts";
import {
  classify,
  decoded,
  describeFunction,
  type LibFunction,
  type Library,
  nextConstant,
  sectionOf,
  type Target,
} from "./library.ts";
import { fileOffset, type Matching, matchFunctions } from "./match.ts";

export interface ChangedFunction {
  old: LibFunction;
  neu: LibFunction;
  /** Why it is in the patch: its code changed, or a changed function enters it past its start. */
  reason: "changed" | "entered";
}

export interface Refusal {
  /** The function concerned (new build's name for it), if any. */
  where?: string;
  reason: string;
}

export interface LibraryDiff {
  old: Library;
  neu: Library;
  matching: Matching;
  /** Matched functions with the same code. */
  identical: number;
  /** Of those, functions that differ only in the source line numbers they pass to error and allocation calls. */
  lineNumbersOnly: number;
  changed: ChangedFunction[];
  /** New functions without a counterpart that copied code calls or refers to. */
  added: LibFunction[];
  /** Every new function placed into the process (changed, entered, added). */
  copied: LibFunction[];
  /** New address -> old address of the variable (or constant) a reference means. */
  dataMap: Map<number, number>;
  /**
   * Constant tables in the new build's RELRO data (pointers filled in at load time, read-only after)
   * that copied code uses and the old build lacks: placed with the patch and relocated there.
   */
  relroCopies: { start: number; end: number }[];
  refusals: Refusal[];
  comparedFunctions: number;
}

/** Compares two builds of one library. Pure: reads only the two files' bytes. */
export function compareLibraries(old: Library, neu: Library): LibraryDiff {
  const matching = matchFunctions(old, neu);
  const dataMap = correspondence(old, neu, matching);
  const sameRef = refComparer(old, neu, matching, dataMap);
  const changed: ChangedFunction[] = [];
  let identical = 0;
  let lineNumbersOnly = 0;
  for (const [ni, o] of matching.toOld) {
    const n = neu.functions[ni]!;
    const same = sameFunction(old, neu, o, n, sameRef);
    if (same === "changed") changed.push({ old: o, neu: n, reason: "changed" });
    else {
      identical++;
      if (same === "lines") lineNumbersOnly++;
    }
  }
  const { copied, added, entered } = closure(old, neu, matching, changed);
  for (const e of entered) changed.push({ old: e.old, neu: e.neu, reason: "entered" });
  changed.sort((a, b) => a.neu.start - b.neu.start);
  const diff: LibraryDiff = {
    old,
    neu,
    matching,
    identical: identical - entered.length,
    lineNumbersOnly,
    changed,
    added,
    copied,
    dataMap,
    relroCopies: [],
    refusals: [],
    comparedFunctions: matching.toOld.size,
  };
  diff.refusals = refusals(diff);
  return diff;
}

type SameRef = (ro: CodeRef, rn: CodeRef, o: LibFunction, n: LibFunction) => boolean;

/** Where two matched functions first differ, in words (for the plan's --json and for debugging). */
export function firstDifference(diff: LibraryDiff, n: LibFunction): string | undefined {
  const o = diff.matching.toOld.get(n.index);
  if (!o) return "new function";
  const a = decoded(diff.old, o);
  const b = decoded(diff.neu, n);
  if (a.masked.length !== b.masked.length) return `size ${a.masked.length} -> ${b.masked.length} bytes`;
  const sameRef = refComparer(diff.old, diff.neu, diff.matching, diff.dataMap);
  for (let i = 0; i < Math.min(a.refs.length, b.refs.length); i++) {
    const ro = a.refs[i]!;
    const rn = b.refs[i]!;
    if (ro.at !== rn.at) return `+${rn.at}: code differs before this reference`;
    if (!sameRef(ro, rn, o, n))
      return `+${rn.at}: ${ro.kind} of ${describeTarget(diff.old, ro.target)} -> ${describeTarget(diff.neu, rn.target)}`;
  }
  if (a.refs.length !== b.refs.length) return `${a.refs.length} -> ${b.refs.length} references`;
  for (let i = 0; i < a.masked.length; i++)
    if (a.masked[i] !== b.masked[i]) return `+${i}: instruction bytes differ`;
  return undefined;
}

function describeTarget(lib: Library, addr: number): string {
  const t = classify(lib, addr);
  const at = `0x${addr.toString(16)}`;
  switch (t.kind) {
    case "fn":
      return `${describeFunction(t.fn)}${t.offset ? `+${t.offset}` : ""}`;
    case "plt":
      return `${t.symbol}@plt`;
    case "got":
      return `GOT ${t.reloc?.symbol ?? at}`;
    default:
      return `${t.kind} ${at}`;
  }
}

function sameFunction(
  old: Library,
  neu: Library,
  o: LibFunction,
  n: LibFunction,
  sameRef: SameRef,
): "same" | "lines" | "changed" {
  const a = decoded(old, o);
  const b = decoded(neu, n);
  // Bytes without unwind information may be data: equal bytes are equal, whatever they decode to.
  if (o.fromGap || n.fromGap) {
    const ra = old.code.raw(o.start, o.end);
    const rb = neu.code.raw(n.start, n.end);
    if (ra && rb && ra.equals(rb)) return "same";
  }
  if (a.invalid || b.invalid) return "changed";
  if (a.refs.length !== b.refs.length || a.masked.length !== b.masked.length) return "changed";
  for (let i = 0; i < a.refs.length; i++) {
    const ro = a.refs[i]!;
    const rn = b.refs[i]!;
    if (ro.at !== rn.at || !sameRef(ro, rn, o, n)) return "changed";
  }
  if (a.masked.equals(b.masked)) return "same";
  return onlyLineNumbers(old, neu, o, n) ? "lines" : "changed";
}

/**
 * Whether two functions differ only in source line numbers: OpenSSL's ERR_raise and OPENSSL_free, like
 * many C libraries' error and allocation macros, pass __FILE__ and __LINE__, and an edit anywhere above
 * a function in its file changes the line it passes. Such a function behaves the same (only a
 * diagnostic's line differs), so it is left alone, as kpatch does for __LINE__. The function must name
 * a source file, and every differing byte must be the immediate of a `mov` into an argument register
 * shortly before a call.
 */
function onlyLineNumbers(old: Library, neu: Library, o: LibFunction, n: LibFunction): boolean {
  const a = decoded(old, o).masked;
  const b = decoded(neu, n).masked;
  if (!decoded(neu, n).refs.some((r) => r.kind === "lea" && isSourceFileName(neu, r.target))) return false;
  const ins = neu.code.instructions(n.start, n.end);
  let k = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    while (k < ins.length && ins[k]!.at + ins[k]!.length <= i) k++;
    const x = ins[k];
    if (!x || x.code !== Code.Mov_r32_imm32 || i < x.at + x.length - 4) return false;
    if (!ARGUMENT_REGISTERS.has(x.register0 ?? -1) || (x.immediate ?? 0) > 200000) return false;
    if (
      !ins
        .slice(k + 1, k + 7)
        .some((y) => y.flow === FlowControl.Call || y.flow === FlowControl.UnconditionalBranch)
    )
      return false;
  }
  return true;
}

const ARGUMENT_REGISTERS = new Set([
  Register.RDI,
  Register.RSI,
  Register.RDX,
  Register.RCX,
  Register.R8,
  Register.R9,
]);

function isSourceFileName(lib: Library, addr: number): boolean {
  const off = fileOffset(lib, addr);
  if (off === undefined) return false;
  const end = lib.bytes.indexOf(0, off);
  if (end < 0 || end - off > 512) return false;
  return /^[\w./+-]+\.(c|h|cc|cpp|cxx|inc)$/.test(lib.bytes.toString("latin1", off, end));
}

/**
 * Variables and constants of the new build mapped to the old build's, from the functions whose code
 * lines up instruction for instruction: the i-th reference of one names the i-th reference's target in
 * the other. Most functions are unchanged, so nearly every variable gets many votes; the majority wins.
 */
function correspondence(old: Library, neu: Library, m: Matching): Map<number, number> {
  const votes = new Map<number, Map<number, number>>();
  for (const [ni, o] of m.toOld) {
    const n = neu.functions[ni]!;
    const a = decoded(old, o);
    const b = decoded(neu, n);
    if (a.refs.length !== b.refs.length || a.instructions !== b.instructions) continue;
    // Bytes without unwind information may be data that decodes to nonsense: they vote only when they
    // decode cleanly to the same instructions.
    if ((o.fromGap || n.fromGap) && (a.invalid || b.invalid || !a.masked.equals(b.masked))) continue;
    for (let i = 0; i < a.refs.length; i++) {
      const ro = a.refs[i]!;
      const rn = b.refs[i]!;
      if (ro.at !== rn.at || ro.kind !== rn.kind || ro.kind === "call" || ro.kind === "jump") continue;
      const to = classify(old, ro.target).kind;
      const tn = classify(neu, rn.target).kind;
      if (to !== tn || (to !== "data" && to !== "ro" && to !== "text")) continue;
      const v = votes.get(rn.target) ?? new Map<number, number>();
      votes.set(rn.target, v);
      v.set(ro.target, (v.get(ro.target) ?? 0) + 1);
    }
  }
  const out = new Map<number, number>();
  for (const [n, v] of votes) {
    let best = -1;
    let count = 0;
    for (const [o, c] of v)
      if (c > count) {
        best = o;
        count = c;
      }
    out.set(n, best);
  }
  return out;
}

/** The old address that a new build's reference to state means, interpolating between known neighbours. */
export function mapData(
  diff: Pick<LibraryDiff, "dataMap" | "neu" | "old">,
  addr: number,
): number | undefined {
  const direct = diff.dataMap.get(addr);
  if (direct !== undefined) return direct;
  // Between two known variables of the same section that moved by the same amount, nothing was added
  // or removed, so this address moved by that amount too.
  const sec = sectionOf(diff.neu, addr);
  if (!sec) return undefined;
  let below: [number, number] | undefined;
  let above: [number, number] | undefined;
  for (const [n, o] of diff.dataMap) {
    if (n < sec.addr || n >= sec.addr + sec.size) continue;
    if (n < addr && (!below || n > below[0])) below = [n, o];
    if (n > addr && (!above || n < above[0])) above = [n, o];
  }
  if (!below || !above) return undefined;
  const delta = below[0] - below[1];
  if (above[0] - above[1] !== delta) return undefined;
  return addr - delta;
}

function refComparer(old: Library, neu: Library, m: Matching, dataMap: Map<number, number>): SameRef {
  const cache = new Map<number, boolean>();
  return (ro, rn, fo, fn) => {
    if (ro.kind !== rn.kind) return false;
    // Both addresses fit in 26 bits for any library under 64 MiB; the key is exact below 2^52.
    const key = ro.target * 0x4000000 + rn.target;
    let v = cache.get(key);
    if (v === undefined) {
      const to = classify(old, ro.target);
      const tn = classify(neu, rn.target);
      // A jump table: offsets from the table to places in the function, equal when the code is.
      const jo = ro.kind === "lea" && to.kind === "ro" ? jumpTable(old, ro.target, fo) : undefined;
      const jn = rn.kind === "lea" && tn.kind === "ro" ? jumpTable(neu, rn.target, fn) : undefined;
      if (jo || jn) v = !!jo && !!jn && jo.length === jn.length && jo.every((x, i) => x === jn[i]);
      else v = sameTarget(old, neu, m, dataMap, to, tn, ro.target, rn.target);
      cache.set(key, v);
    }
    return v;
  };
}

/**
 * The entries of a jump table at `addr` as offsets into `f`, if it is one: GCC's tables hold 32-bit
 * offsets from the table's start to the cases, all inside the function that uses them.
 */
export function jumpTable(lib: Library, addr: number, f: LibFunction): number[] | undefined {
  const off = fileOffset(lib, addr);
  if (off === undefined) return undefined;
  const out: number[] = [];
  for (let p = off; p + 4 <= lib.bytes.length && out.length < 4096; p += 4) {
    const t = addr + lib.bytes.readInt32LE(p);
    if (t < f.start || t >= f.end) break;
    out.push(t - f.start);
  }
  return out.length >= 2 ? out : undefined;
}

function sameTarget(
  old: Library,
  neu: Library,
  m: Matching,
  dataMap: Map<number, number>,
  to: Target,
  tn: Target,
  ao: number,
  an: number,
): boolean {
  if (to.kind !== tn.kind) return false;
  switch (to.kind) {
    case "fn":
      return tn.kind === "fn" && m.toOld.get(tn.fn.index) === to.fn && to.offset === tn.offset;
    case "plt":
      return tn.kind === "plt" && to.symbol === tn.symbol;
    case "got": {
      if (tn.kind !== "got" || !to.reloc || !tn.reloc) return false;
      if (to.reloc.type !== tn.reloc.type) return false;
      if (to.reloc.symbol || tn.reloc.symbol)
        return to.reloc.symbol === tn.reloc.symbol && to.reloc.symbolVersion === tn.reloc.symbolVersion;
      if (to.reloc.type === R_X86_64_RELATIVE) {
        const o = Number(to.reloc.addend);
        const n = Number(tn.reloc.addend);
        return sameTarget(old, neu, m, dataMap, classify(old, o), classify(neu, n), o, n);
      }
      return to.reloc.addend === tn.reloc.addend;
    }
    case "data":
      return dataMap.get(an) === ao;
    case "ro":
    case "text": {
      const mapped = dataMap.get(an);
      if (mapped !== undefined && mapped !== ao) return false;
      return sameConstant(old, neu, ao, an);
    }
    default:
      return false;
  }
}

/**
 * Whether two constants have the same bytes. Their sizes are unknown in a stripped build: a string is
 * compared through its terminating NUL, anything else over 64 bytes (or to the end of its section).
 */
export function sameConstant(old: Library, neu: Library, ao: number, an: number): boolean {
  const fo = fileOffset(old, ao);
  const fn = fileOffset(neu, an);
  if (fo === undefined || fn === undefined) return false;
  const so = sectionOf(old, ao);
  const sn = sectionOf(neu, an);
  const room = Math.min(
    64,
    so ? so.addr + so.size - ao : 64,
    sn ? sn.addr + sn.size - an : 64,
    (nextConstant(old, ao) ?? Number.POSITIVE_INFINITY) - ao,
    (nextConstant(neu, an) ?? Number.POSITIVE_INFINITY) - an,
  );
  const a = old.bytes.subarray(fo, fo + room);
  const b = neu.bytes.subarray(fn, fn + room);
  const nul = a.indexOf(0);
  if (nul >= 0 && isText(a.subarray(0, nul))) return a.subarray(0, nul + 1).equals(b.subarray(0, nul + 1));
  return a.equals(b);
}

function isText(b: Buffer): boolean {
  if (b.length === 0) return false;
  for (const c of b) if (c < 0x09 || (c > 0x0d && c < 0x20) || c > 0x7e) return false;
  return true;
}

/**
 * Everything the changed functions need in the process: new functions they reach (no old copy), and
 * functions entered past their start from inside the patch (a function's cold part jumps back into
 * its body) or entering a patched function past its start — those must move with it.
 */
function closure(
  old: Library,
  neu: Library,
  m: Matching,
  changed: ChangedFunction[],
): { copied: LibFunction[]; added: LibFunction[]; entered: { old: LibFunction; neu: LibFunction }[] } {
  const copied = new Set<LibFunction>(changed.map((c) => c.neu));
  const added: LibFunction[] = [];
  const entered: { old: LibFunction; neu: LibFunction }[] = [];
  // Old functions that jump into another one past its start, by target.
  const enteredFrom = new Map<number, LibFunction[]>();
  for (const f of old.functions)
    for (const r of decoded(old, f).refs) {
      if (r.kind !== "jump" && r.kind !== "call") continue;
      const t = classify(old, r.target);
      if (t.kind === "fn" && t.offset !== 0 && t.fn !== f) {
        const list = enteredFrom.get(t.fn.index) ?? [];
        list.push(f);
        enteredFrom.set(t.fn.index, list);
      }
    }
  const queue = [...copied];
  const pull = (n: LibFunction) => {
    if (copied.has(n)) return;
    copied.add(n);
    queue.push(n);
    const o = m.toOld.get(n.index);
    if (o) entered.push({ old: o, neu: n });
    else added.push(n);
  };
  while (queue.length) {
    const n = queue.pop()!;
    for (const r of decoded(neu, n).refs) {
      const t = classify(neu, r.target);
      if (t.kind !== "fn" || t.fn === n) continue;
      if (!m.toOld.has(t.fn.index)) pull(t.fn);
      else if (t.offset !== 0 && (r.kind === "jump" || r.kind === "call")) pull(t.fn);
    }
    const o = m.toOld.get(n.index);
    if (o)
      for (const h of enteredFrom.get(o.index) ?? []) {
        const hn = m.toNew.get(h.index);
        if (hn) pull(hn);
      }
  }
  return { copied: [...copied].sort((a, b) => a.start - b.start), added, entered };
}

/** Changes Berth refuses to apply live, each with a one-line reason. */
function refusals(diff: LibraryDiff): Refusal[] {
  const { old, neu } = diff;
  const out: Refusal[] = [...abiProblems(old, neu)];
  const copiedSet = new Set(diff.copied);
  for (const c of diff.changed)
    if (c.old.ifunc || c.neu.ifunc)
      out.push({
        where: describeFunction(c.neu),
        reason: "is an IFUNC resolver; its result was bound at load time",
      });
  // Initializers ran when the library was loaded; a new or changed one would never run.
  for (const f of initializers(neu)) {
    const o = diff.matching.toOld.get(f.index);
    if (!o)
      out.push({
        where: describeFunction(f),
        reason: "is a new initializer that would have to run at load time",
      });
    else if (copiedSet.has(f))
      out.push({
        where: describeFunction(f),
        reason: "is an initializer the update changes; it ran when the library was loaded",
      });
  }
  if (initializers(old).length !== initializers(neu).length)
    out.push({ reason: "the update changes the number of initializers that run at load time" });
  for (const f of diff.copied) {
    const d = decoded(neu, f);
    const name = describeFunction(f);
    if (d.invalid) {
      out.push({ where: name, reason: "has bytes the disassembler cannot decode" });
      continue;
    }
    for (const r of d.refs) {
      const t = classify(neu, r.target);
      if (t.kind === "fn" && copiedSet.has(t.fn)) continue;
      if (r.size === 1 && t.kind !== "fn") {
        out.push({
          where: name,
          reason: `has a short branch to 0x${r.target.toString(16)} that cannot reach the old code`,
        });
        continue;
      }
      if (r.size === 1 && t.kind === "fn" && !copiedSet.has(t.fn)) {
        out.push({
          where: name,
          reason: `has a short branch into ${describeFunction(t.fn)}, which stays in the old library`,
        });
        continue;
      }
      if (t.kind === "data" && mapData(diff, r.target) === undefined) {
        const problem = relroCopy(diff, r.target);
        if (problem)
          out.push({
            where: name,
            reason: `uses a variable at 0x${r.target.toString(16)} (${t.section || "data"}) that the old library does not have: ${problem}`,
          });
      }
      if (t.kind === "got" && t.reloc?.type === R_X86_64_IRELATIVE)
        out.push({ where: name, reason: "calls through an IFUNC's GOT entry" });
      if (t.kind === "got" && t.reloc && [16, 17, 18].includes(t.reloc.type) && !sameTls(old, neu))
        out.push({
          where: name,
          reason: "uses thread-local variables and the update changes the TLS layout",
        });
      if (t.kind === "none")
        out.push({ where: name, reason: `refers to 0x${r.target.toString(16)}, outside the library` });
    }
  }
  out.push(...layoutProblems(diff));
  // An update of the same library changes some functions; another release line changes most of them.
  const churn = diff.changed.length + diff.added.length;
  if (churn > Math.max(64, diff.comparedFunctions / 2))
    out.push({
      reason: `${churn} of ${diff.comparedFunctions} functions differ: the running library is not an earlier build of this one`,
    });
  // One line per function and reason is enough.
  const seen = new Set<string>();
  return out.filter((r) => {
    const k = `${r.where}|${r.reason}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Exported functions of the old build the new one lacks, or exports under another symbol version. */
function abiProblems(old: Library, neu: Library): Refusal[] {
  const out: Refusal[] = [];
  const newExports = new Map<string, string | undefined>();
  for (const s of exportedFunctions(neu.elf)) newExports.set(s.name, s.version);
  for (const s of exportedFunctions(old.elf)) {
    if (!newExports.has(s.name))
      out.push({ where: s.name, reason: "is exported by the old build and missing from the new one" });
    else if (newExports.get(s.name) !== s.version)
      out.push({
        where: s.name,
        reason: `has version ${s.version ?? "(none)"} in the old build and ${newExports.get(s.name) ?? "(none)"} in the new`,
      });
  }
  return out;
}

export const PT_GNU_RELRO = 0x6474e552;

/** Whether the address is a new build's RELRO constant data copied with the patch. */
export function inRelroCopy(diff: Pick<LibraryDiff, "relroCopies">, addr: number): boolean {
  return diff.relroCopies.some((c) => addr >= c.start && addr < c.end);
}

/**
 * Takes a RELRO table (constant after relocation) the old build lacks into the patch, with the tables
 * its pointers lead to. Returns why it cannot, or undefined when it was added.
 */
function relroCopy(diff: LibraryDiff, addr: number, depth = 0): string | undefined {
  const { neu } = diff;
  if (inRelroCopy(diff, addr)) return undefined;
  const relro = neu.elf.segments.find((s) => s.type === PT_GNU_RELRO);
  if (!relro || addr < relro.vaddr || addr >= relro.vaddr + relro.memsz)
    return "a new or resized variable (writable state cannot be added to a running process)";
  if (depth > 8) return "a chain of new constant tables too deep to copy";
  const sec = sectionOf(neu, addr);
  const end = Math.min(
    addr + 4096,
    nextConstant(neu, addr) ?? addr + 4096,
    sec ? sec.addr + sec.size : addr + 8,
  );
  const copy = { start: addr, end };
  diff.relroCopies.push(copy);
  for (const r of neu.elf.relocations) {
    const at = Number(r.offset);
    if (at < addr || at >= end) continue;
    if (r.type !== R_X86_64_RELATIVE || r.symbol)
      return `a new constant table with a pointer to the symbol ${r.symbol ?? "?"}, which Berth does not resolve`;
    const target = Number(r.addend);
    const t = classify(neu, target);
    if (t.kind === "data" && mapData(diff, target) === undefined) {
      const problem = relroCopy(diff, target, depth + 1);
      if (problem) return problem;
    } else if (t.kind === "none" || t.kind === "got")
      return `a new constant table pointing at 0x${target.toString(16)}`;
  }
  return undefined;
}

function sameTls(old: Library, neu: Library): boolean {
  return (
    old.tls?.memsz === neu.tls?.memsz &&
    old.tls?.filesz === neu.tls?.filesz &&
    (old.tls === undefined || neu.tls === undefined || sameConstant(old, neu, old.tls.vaddr, neu.tls.vaddr))
  );
}

/** Functions that run when the object is loaded: DT_INIT and the entries of DT_INIT_ARRAY. */
export function initializers(lib: Library): LibFunction[] {
  const out: LibFunction[] = [];
  const at = (a: number) => {
    const t = classify(lib, a);
    if (t.kind === "fn" && t.offset === 0) out.push(t.fn);
  };
  if (lib.elf.init !== undefined) at(lib.elf.init);
  const ia = lib.elf.initArray;
  if (ia)
    for (const r of lib.elf.relocations) {
      const o = Number(r.offset);
      if (r.type === R_X86_64_RELATIVE && o >= ia.addr && o < ia.addr + ia.size) at(Number(r.addend));
    }
  return out;
}
