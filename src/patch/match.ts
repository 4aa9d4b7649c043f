// Which function of the new build is which function of the old one. Exported functions match by name;
// internal functions (no symbol in a stripped library) by their content, by the calls that matched
// functions make to them, and by their position between matched neighbours — the linker keeps each
// object file's functions in source order, and a security update rarely moves them. A wrong match
// would be dangerous, so every rule only matches when it is unambiguous; a function left unmatched is
// merely copied, never mistaken for another.

import { createHash } from "node:crypto";
import type { CodeRef } from "./disasm.ts";
import { classify, decoded, type LibFunction, type Library } from "./library.ts";

export interface Matching {
  /** New function index -> old function. */
  toOld: Map<number, LibFunction>;
  /** Old function index -> new function. */
  toNew: Map<number, LibFunction>;
}

/** A token for what a reference names, stable between builds (matched functions by their old index). */
export function refToken(
  lib: Library,
  r: CodeRef,
  matchedId: (f: LibFunction) => number | undefined,
): string {
  const t = classify(lib, r.target);
  switch (t.kind) {
    case "fn": {
      const id = matchedId(t.fn);
      return id === undefined ? `f?+${t.offset}` : `F${id}+${t.offset}`;
    }
    case "plt":
      return `P${t.symbol}`;
    case "got":
      return `G${t.reloc?.type ?? "?"}:${t.reloc?.symbol ?? ""}`;
    case "text":
    case "ro": {
      // The first bytes of a constant tell strings and tables apart without knowing their sizes.
      const off = fileOffset(lib, r.target);
      const head =
        off === undefined ? "" : lib.bytes.toString("hex", off, Math.min(off + 12, lib.bytes.length));
      return `R${head}`;
    }
    case "data":
      return `D${t.section}`;
    default:
      return "N";
  }
}

export function fileOffset(lib: Library, addr: number): number | undefined {
  for (const s of lib.elf.segments)
    if (s.type === 1 && addr >= s.vaddr && addr < s.vaddr + s.filesz) return s.offset + (addr - s.vaddr);
  return undefined;
}

/** The parts of a function's signature that do not depend on the matching, computed once. */
interface SignatureParts {
  base: string;
  /** Per reference: a fixed token, or the function it names (looked up in the matching each time). */
  refs: (string | { fn: LibFunction; prefix: string })[];
}

const partsCache = new WeakMap<object, SignatureParts>();

function signatureParts(lib: Library, f: LibFunction): SignatureParts {
  const d = decoded(lib, f);
  let p = partsCache.get(d);
  if (!p) {
    p = {
      base: createHash("sha1").update(d.masked).digest("base64"),
      refs: d.refs.map((r) => {
        const t = classify(lib, r.target);
        return t.kind === "fn"
          ? { fn: t.fn, prefix: `|${r.at}:` }
          : `|${r.at}:${refToken(lib, r, () => undefined)}`;
      }),
    };
    partsCache.set(d, p);
  }
  return p;
}

function signature(lib: Library, f: LibFunction, matchedId: (f: LibFunction) => number | undefined): string {
  const p = signatureParts(lib, f);
  let s = p.base;
  const d = decoded(lib, f);
  for (let i = 0; i < p.refs.length; i++) {
    const x = p.refs[i]!;
    if (typeof x === "string") s += x;
    else {
      const id = matchedId(x.fn);
      const off = classify(lib, d.refs[i]!.target);
      s += `${x.prefix}${id === undefined ? "f?" : `F${id}`}+${off.kind === "fn" ? off.offset : 0}`;
    }
  }
  return s.length > 200 ? createHash("sha1").update(s).digest("base64") : s;
}

export function matchFunctions(old: Library, neu: Library): Matching {
  const toOld = new Map<number, LibFunction>();
  const toNew = new Map<number, LibFunction>();
  // Call edges of matched pairs whose instructions line up: (old callee, new callee, old caller).
  const edges: [number, number, number][] = [];
  // Pairs matched by position alone: checked against the call edges at the end.
  const weak = new Set<number>();
  const link = (o: LibFunction, n: LibFunction) => {
    if (toNew.has(o.index) || toOld.has(n.index)) return false;
    toNew.set(o.index, n);
    toOld.set(n.index, o);
    const dOld = decoded(old, o);
    const dNew = decoded(neu, n);
    if (dOld.refs.length === dNew.refs.length && dOld.instructions === dNew.instructions)
      for (let i = 0; i < dOld.refs.length; i++) {
        const ro = dOld.refs[i]!;
        const rn = dNew.refs[i]!;
        if (ro.kind !== rn.kind || ro.at !== rn.at) continue;
        const to = classify(old, ro.target);
        const tn = classify(neu, rn.target);
        if (to.kind === "fn" && tn.kind === "fn" && to.offset === tn.offset)
          edges.push([to.fn.index, tn.fn.index, o.index]);
      }
    return true;
  };
  // 1. Exported names.
  const byName = new Map<string, LibFunction>();
  for (const f of old.functions) for (const n of f.names) byName.set(n, f);
  for (const f of neu.functions)
    for (const n of f.names) {
      const o = byName.get(n);
      if (o && link(o, f)) break;
    }
  // Functions entered by an exported name further in match when the name's offset is the same.
  const inner = new Map<string, { f: LibFunction; offset: number }>();
  for (const f of old.functions) for (const e of f.innerEntries) inner.set(e.name, { f, offset: e.offset });
  for (const f of neu.functions)
    for (const e of f.innerEntries) {
      const o = inner.get(e.name);
      if (o && o.offset === e.offset) link(o.f, f);
    }

  const oldId = (f: LibFunction) => (toNew.has(f.index) ? f.index : undefined);
  const newId = (f: LibFunction) => toOld.get(f.index)?.index;
  // 2. Unique content: the same bytes and the same references, matched ones by identity.
  const byContent = () => {
    let added = 0;
    const oldSigs = new Map<string, LibFunction[]>();
    for (const f of old.functions) {
      if (toNew.has(f.index)) continue;
      const s = signature(old, f, oldId);
      const list = oldSigs.get(s);
      if (list) list.push(f);
      else oldSigs.set(s, [f]);
    }
    const newSigs = new Map<string, LibFunction[]>();
    for (const f of neu.functions) {
      if (toOld.has(f.index)) continue;
      const s = signature(neu, f, newId);
      const list = newSigs.get(s);
      if (list) list.push(f);
      else newSigs.set(s, [f]);
    }
    for (const [s, os] of oldSigs) {
      const ns = newSigs.get(s);
      if (os.length === 1 && ns?.length === 1 && link(os[0]!, ns[0]!)) added++;
    }
    return added;
  };
  // 3. Calls: a matched pair whose instructions line up names its callees in the same order.
  const byCalls = () => {
    let added = 0;
    const proposals = new Map<number, Set<number>>();
    const backProposals = new Map<number, Set<number>>();
    for (const [oi, ni, from] of edges) {
      if (toNew.has(oi) || toOld.has(ni) || weak.has(from)) continue;
      const p = proposals.get(oi) ?? new Set<number>();
      proposals.set(oi, p.add(ni));
      const b = backProposals.get(ni) ?? new Set<number>();
      backProposals.set(ni, b.add(oi));
    }
    for (const [oi, ns] of proposals) {
      if (ns.size !== 1) continue;
      const ni = [...ns][0]!;
      if (backProposals.get(ni)?.size === 1 && link(old.functions[oi]!, neu.functions[ni]!)) added++;
    }
    return added;
  };
  const strong = () => {
    let total = 0;
    for (let a = byContent() + byCalls(); a > 0; a = byContent() + byCalls()) total += a;
    return total;
  };
  for (let round = 0; round < 8; round++) {
    let added = strong();
    // 4. Position, the weakest evidence, only once content and calls have nothing more to say.
    const before = new Set(toOld.keys());
    added += matchByPosition(old, neu, toOld, link);
    for (const ni of toOld.keys()) if (!before.has(ni)) weak.add(toOld.get(ni)!.index);
    if (added === 0) break;
  }
  // A pair matched by position that the calls of other matched pairs contradict (two similar functions
  // the update reordered) is undone, and the calls decide instead; what stays unmatched is copied.
  let undone = 0;
  for (const [oi, ni, from] of edges) {
    if (weak.has(from)) continue;
    const n = toNew.get(oi);
    const o = toOld.get(ni);
    for (const [a, b] of [
      [oi, n?.index],
      [o?.index, ni],
    ] as const)
      if (a !== undefined && b !== undefined && weak.has(a) && (a !== oi || b !== ni)) {
        const nn = toNew.get(a)!;
        toNew.delete(a);
        toOld.delete(nn.index);
        weak.delete(a);
        undone++;
      }
  }
  if (undone) strong();
  return { toOld, toNew };
}

function matchByPosition(
  old: Library,
  neu: Library,
  toOld: Map<number, LibFunction>,
  link: (o: LibFunction, n: LibFunction) => boolean,
): number {
  // Anchors in order on both sides: the longest chain of matches that does not cross.
  const pairs = [...toOld.entries()].map(([ni, o]) => [o.index, ni] as const).sort((a, b) => a[0] - b[0]);
  const chain = longestIncreasing(pairs.map((p) => p[1]));
  const anchors = chain.map((i) => pairs[i]!);
  let added = 0;
  let prevO = -1;
  let prevN = -1;
  for (const [oi, ni] of [...anchors, [old.functions.length, neu.functions.length] as const]) {
    const os = old.functions.slice(prevO + 1, oi);
    const ns = neu.functions.slice(prevN + 1, ni);
    if (os.length === ns.length && os.length > 0 && os.length <= 64)
      for (let k = 0; k < os.length; k++) {
        const o = os[k]!;
        const n = ns[k]!;
        // Only functions of a similar kind: similar length, and both named or both internal.
        const lo = o.end - o.start;
        const ln = n.end - n.start;
        if (Math.min(lo, ln) * 2 < Math.max(lo, ln)) continue;
        if ((o.names.length === 0) !== (n.names.length === 0)) continue;
        if (link(o, n)) added++;
      }
    prevO = oi;
    prevN = ni;
  }
  return added;
}

/** Indices of a longest strictly increasing subsequence (patience sorting). */
function longestIncreasing(xs: readonly number[]): number[] {
  const tails: number[] = [];
  const prev: number[] = new Array(xs.length).fill(-1);
  for (let i = 0; i < xs.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[tails[mid]!]! < xs[i]!) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[i] = tails[lo - 1]!;
    tails[lo] = i;
  }
  const out: number[] = [];
  for (let i = tails.at(-1) ?? -1; i >= 0; i = prev[i]!) out.push(i);
  return out.reverse();
}
