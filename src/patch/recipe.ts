// How to apply one library update to any process that maps the old build, worked out once from the two
// files: which functions to copy and how to relocate each of their references (to the old build's
// functions and state, to the new build's constants, or to an import), how each changed old function
// is redirected (a jump at its entry, a short jump into its alignment padding, or its callers' GOT
// entries), and what must be refused. Pure and serialisable: the per-process work is only arithmetic
// with the addresses the process chose, and the recipe is cached by the two files' hashes.

import {
  compareLibraries,
  firstDifference,
  inRelroCopy,
  jumpTable,
  type LibraryDiff,
  mapData,
  type Refusal,
  sameConstant,
} from "./compare.ts";
import type { CodeRef } from "./disasm.ts";
import { R_X86_64_RELATIVE } from "./elf.ts";
import {
  classify,
  decoded,
  describeFunction,
  functionAt,
  type LibFunction,
  type Library,
} from "./library.ts";

export const RECIPE_VERSION = 1;

/** An address the patch needs, before the process's addresses are known. */
export type Value =
  | { kind: "old"; addr: number }
  | { kind: "image"; addr: number }
  | { kind: "symbol"; name: string }
  | { kind: "extra"; index: number };

/** A rel32 field of copied code (new build's addresses) and what it must reach. */
export interface Fixup {
  field: number;
  next: number;
  value: Value;
}

export interface CopiedFunction {
  name: string;
  start: number;
  end: number;
  /** The old build's counterpart, when there is one. */
  old?: { start: number; end: number };
  why?: string;
  fixups: Fixup[];
}

/** Words the patch keeps beside the image: GOT-like slots and far jumps to imports. */
export type Extra = { kind: "slot"; value: Value } | { kind: "trampoline"; value: Value };

export type Method =
  | { kind: "jump" }
  | { kind: "padding"; slot: number }
  | { kind: "got"; symbol: string }
  | { kind: "unreached" };

export interface Redirect {
  name: string;
  /** Old build's function and the new build's copy. */
  old: { start: number; end: number };
  to: number;
  method: Method;
  reason: "changed" | "entered";
}

export interface PatchRecipe {
  version: number;
  oldSha256: string;
  newSha256: string;
  soname?: string;
  compared: number;
  identical: number;
  lineNumbersOnly: number;
  copied: CopiedFunction[];
  added: number;
  redirects: Redirect[];
  extras: Extra[];
  /** Pointers to write into the copied RELRO tables (new build's addresses). */
  relroPointers: { at: number; value: Value }[];
  /** The new build's load segments, mapped read-only at the image base. */
  segments: { vaddr: number; offset: number; filesz: number; memsz: number; flags: number }[];
  /** Where the extra words start, relative to the image base. */
  extraAt: number;
  /** Image pages (new build's addresses) that may be referenced from the process's data: never unmapped. */
  keepPages: number[];
  refusals: Refusal[];
  analysisMs: number;
}

const PAGE = 0x1000;

export function buildRecipe(old: Library, neu: Library): PatchRecipe {
  const t0 = performance.now();
  const diff = compareLibraries(old, neu);
  const refusals = [...diff.refusals];
  const copiedSet = new Set(diff.copied);
  const oldPlt = new Map<string, number>();
  for (const [at, sym] of old.pltStubs) if (!oldPlt.has(sym)) oldPlt.set(sym, at);
  const oldGot = gotIndex(old);
  const extras: Extra[] = [];
  const extraIndex = new Map<string, number>();
  const extra = (e: Extra): Value => {
    const key = JSON.stringify(e);
    let i = extraIndex.get(key);
    if (i === undefined) {
      i = extras.length;
      extras.push(e);
      extraIndex.set(key, i);
    }
    return { kind: "extra", index: i };
  };
  const keep = new Set<number>();

  // How each changed old function is reached from the old code: decided first, because pointers to a
  // function redirected at its entry may keep pointing at the old entry (and so survive a rollback).
  const redirects = chooseMethods(diff, refusals);
  const byEntry = new Map(redirects.map((r) => [r.old.start, r]));
  const oldOf = (n: LibFunction) => diff.matching.toOld.get(n.index);
  const entryRedirected = (n: LibFunction) => {
    const o = oldOf(n);
    const r = o && byEntry.get(o.start);
    return !!r && (r.method.kind === "jump" || r.method.kind === "padding");
  };

  /** What a pointer-sized value naming the new build's `addr` must become. */
  const pointerValue = (addr: number): Value | undefined => {
    const t = classify(neu, addr);
    switch (t.kind) {
      case "fn": {
        const o = oldOf(t.fn);
        if (copiedSet.has(t.fn)) {
          if (o && entryRedirected(t.fn)) return { kind: "old", addr: o.start + t.offset };
          keep.add(addr & ~(PAGE - 1));
          return { kind: "image", addr };
        }
        return o ? { kind: "old", addr: o.start + t.offset } : undefined;
      }
      case "ro":
      case "text": {
        const mapped = diff.dataMap.get(addr);
        if (mapped !== undefined && sameConstant(old, neu, mapped, addr))
          return { kind: "old", addr: mapped };
        keep.add(addr & ~(PAGE - 1));
        return { kind: "image", addr };
      }
      case "data": {
        if (inRelroCopy(diff, addr)) {
          keep.add(addr & ~(PAGE - 1));
          return { kind: "image", addr };
        }
        const mapped = mapData(diff, addr);
        return mapped === undefined ? undefined : { kind: "old", addr: mapped };
      }
      default:
        return undefined;
    }
  };

  const refValue = (f: LibFunction, r: CodeRef): Value | "keep" | undefined => {
    const t = classify(neu, r.target);
    switch (t.kind) {
      case "fn":
        if (copiedSet.has(t.fn)) {
          if (r.kind === "lea") return pointerValue(r.target);
          return "keep";
        }
        return pointerValue(r.target);
      case "plt": {
        const stub = oldPlt.get(t.symbol);
        return stub !== undefined
          ? { kind: "old", addr: stub }
          : extra({ kind: "trampoline", value: { kind: "symbol", name: t.symbol } });
      }
      case "got": {
        if (!t.reloc) return undefined;
        if (t.reloc.symbol) {
          const name = t.reloc.symbolVersion ? `${t.reloc.symbol}@${t.reloc.symbolVersion}` : t.reloc.symbol;
          const slot = oldGot.get(`${t.reloc.type}:${name}`);
          return slot !== undefined
            ? { kind: "old", addr: slot }
            : extra({ kind: "slot", value: { kind: "symbol", name } });
        }
        if (t.reloc.type === R_X86_64_RELATIVE) {
          const v = pointerValue(Number(t.reloc.addend));
          if (!v) return undefined;
          const slot = v.kind === "old" ? oldGot.get(`rel:${v.addr}`) : undefined;
          return slot !== undefined ? { kind: "old", addr: slot } : extra({ kind: "slot", value: v });
        }
        const slot = oldGot.get(`${t.reloc.type}:${t.reloc.addend}`);
        return slot !== undefined ? { kind: "old", addr: slot } : undefined;
      }
      case "ro":
      case "text": {
        if (r.kind === "lea" && t.kind === "ro" && jumpTable(neu, r.target, f)) return "keep";
        if (r.kind === "lea") return pointerValue(r.target);
        const mapped = diff.dataMap.get(r.target);
        if (mapped !== undefined && sameConstant(old, neu, mapped, r.target))
          return { kind: "old", addr: mapped };
        return "keep";
      }
      case "data":
        if (inRelroCopy(diff, r.target)) {
          if (r.kind === "lea") keep.add(r.target & ~(PAGE - 1));
          return "keep";
        }
        return pointerValue(r.target);
      default:
        return undefined;
    }
  };

  const copied: CopiedFunction[] = [];
  for (const f of diff.copied) {
    const o = oldOf(f);
    const fixups: Fixup[] = [];
    for (const r of decoded(neu, f).refs) {
      const v = refValue(f, r);
      if (v === "keep") continue;
      if (!v) {
        refusals.push({
          where: describeFunction(f),
          reason: `refers to 0x${r.target.toString(16)}, which has no counterpart in the old build`,
        });
        continue;
      }
      if (r.size !== 4) {
        refusals.push({ where: describeFunction(f), reason: "has a short branch out of the patch" });
        continue;
      }
      fixups.push({ field: f.start + r.field, next: f.start + r.next, value: v });
    }
    copied.push({
      name: describeFunction(f),
      start: f.start,
      end: f.end,
      old: o ? { start: o.start, end: o.end } : undefined,
      why: o ? firstDifference(diff, f) : "new function",
      fixups,
    });
  }
  const relroPointers: { at: number; value: Value }[] = [];
  for (const r of neu.elf.relocations) {
    const at = Number(r.offset);
    if (r.type !== R_X86_64_RELATIVE || !inRelroCopy(diff, at)) continue;
    const v = pointerValue(Number(r.addend));
    if (!v)
      refusals.push({
        reason: `a copied constant table points at 0x${r.addend.toString(16)}, which has no counterpart`,
      });
    else relroPointers.push({ at, value: v });
  }
  const segments = neu.elf.segments
    .filter((s) => s.type === 1)
    .map(({ vaddr, offset, filesz, memsz, flags }) => ({ vaddr, offset, filesz, memsz, flags }));
  const end = Math.max(...segments.map((s) => s.vaddr + s.memsz));
  return {
    version: RECIPE_VERSION,
    oldSha256: old.sha256,
    newSha256: neu.sha256,
    soname: neu.elf.soname,
    compared: diff.comparedFunctions,
    identical: diff.identical,
    lineNumbersOnly: diff.lineNumbersOnly,
    copied,
    added: diff.added.length,
    redirects,
    extras,
    relroPointers,
    segments,
    extraAt: Math.ceil(end / PAGE) * PAGE,
    keepPages: [...keep].sort((a, b) => a - b),
    refusals: dedupe(refusals),
    analysisMs: Math.round(performance.now() - t0),
  };
}

function dedupe(rs: Refusal[]): Refusal[] {
  const seen = new Set<string>();
  return rs.filter((r) => {
    const k = `${r.where}|${r.reason}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The old build's GOT slots by what they hold: "TYPE:symbol@version", "rel:ADDR", "TYPE:ADDEND". */
function gotIndex(lib: Library): Map<string, number> {
  const out = new Map<string, number>();
  for (const [slot, r] of lib.gotSlots) {
    const key = r.symbol
      ? `${r.type}:${r.symbolVersion ? `${r.symbol}@${r.symbolVersion}` : r.symbol}`
      : r.type === R_X86_64_RELATIVE
        ? `rel:${r.addend}`
        : `${r.type}:${r.addend}`;
    if (!out.has(key)) out.set(key, slot);
  }
  return out;
}

/**
 * The redirect of every old function whose new version is copied. Five bytes or more take a jump at the
 * entry. A smaller one takes a two-byte short jump into the alignment padding right after (or before)
 * it, where a five-byte jump fits; failing that, when only other modules call it (through their GOT),
 * those GOT entries are rewritten; a function nothing outside the patch reaches needs nothing.
 */
function chooseMethods(diff: LibraryDiff, refusals: Refusal[]): Redirect[] {
  const { old } = diff;
  const copiedOld = new Set<number>();
  for (const c of diff.changed) copiedOld.add(c.old.index);
  const referrers = oldReferrers(old);
  const usedSlots = new Set<number>();
  const out: Redirect[] = [];
  for (const c of diff.changed) {
    const o = c.old;
    const size = o.end - o.start;
    const name = describeFunction(c.neu);
    const base = { name, old: { start: o.start, end: o.end }, to: c.neu.start, reason: c.reason };
    if (size >= 5) {
      out.push({ ...base, method: { kind: "jump" } });
      continue;
    }
    const refs = referrers.get(o.index);
    const outside = [...(refs?.fns ?? [])].filter((i) => !copiedOld.has(i));
    if (!o.names.length && !refs?.pointer && outside.length === 0) {
      out.push({ ...base, method: { kind: "unreached" } });
      continue;
    }
    const slot = size >= 2 ? paddingSlot(old, o, usedSlots) : undefined;
    if (slot !== undefined) {
      usedSlots.add(slot);
      out.push({ ...base, method: { kind: "padding", slot } });
      continue;
    }
    if (o.names.length && !refs?.pointer && outside.length === 0) {
      out.push({ ...base, method: { kind: "got", symbol: o.names[0]! } });
      continue;
    }
    refusals.push({
      where: name,
      reason: `changed, ${size} byte${size === 1 ? "" : "s"} long with no padding beside it, and called from inside the library: it cannot be redirected`,
    });
  }
  return out;
}

/** Who refers to each old function: functions that call, jump to or take it, and pointers in data. */
function oldReferrers(lib: Library): Map<number, { fns: Set<number>; pointer: boolean }> {
  const out = new Map<number, { fns: Set<number>; pointer: boolean }>();
  const entry = (i: number) => {
    const e = out.get(i) ?? { fns: new Set<number>(), pointer: false };
    out.set(i, e);
    return e;
  };
  for (const f of lib.functions)
    for (const r of decoded(lib, f).refs) {
      const t = classify(lib, r.target);
      if (t.kind === "fn" && t.fn !== f) entry(t.fn.index).fns.add(f.index);
    }
  for (const r of lib.elf.relocations) {
    const g = r.type === R_X86_64_RELATIVE ? functionAt(lib, Number(r.addend)) : undefined;
    if (g) entry(g.index).pointer = true;
    // A module binding the function's address in data (GLOB_DAT, R_X86_64_64 by symbol) cannot be seen
    // from here; the GOT method only ever rewrites JUMP_SLOT entries that hold the old address.
  }
  return out;
}

/**
 * Five bytes of alignment padding reachable by a short jump from the function's entry: after the
 * function when its last instruction cannot fall through into it, or before it, after a function that
 * cannot either. Padding is NOP, int3 or zero bytes that belong to no function.
 */
function paddingSlot(lib: Library, f: LibFunction, used: Set<number>): number | undefined {
  const list = lib.functions;
  const next = list[f.index + 1];
  const prev = list[f.index - 1];
  const fits = (at: number) =>
    !used.has(at) &&
    ![...used].some((u) => Math.abs(u - at) < 5) &&
    lib.code.paddingLength(at, at + 5) === 5 &&
    at - (f.start + 2) >= -128 &&
    at - (f.start + 2) <= 127;
  if (decoded(lib, f).endsWithoutFallthrough) {
    const limit = next ? next.start : f.end + 16;
    for (let at = f.end; at + 5 <= limit; at++) if (fits(at)) return at;
  }
  if (prev && prev.end <= f.start && decoded(lib, prev).endsWithoutFallthrough)
    for (let at = f.start - 5; at >= prev.end; at--) if (fits(at)) return at;
  return undefined;
}
