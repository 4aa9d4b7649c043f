// The patch image of one process: the new build's file mapped read-only next to the old library (its
// code and constants at their own offsets, so jump tables and calls between copied functions need no
// change), the changed functions' bytes relocated to the old library's functions and state, and a few
// extra words (GOT-like slots, far jumps to imports) after it. Pure: the addresses come in, the bytes
// to write come out.

import { BerthError } from "../common/errors.ts";
import { type ElfSegment, fileOffsetOf } from "./elf.ts";
import type { Mapping } from "./proc.ts";
import type { PatchRecipe, Value } from "./recipe.ts";

export const PAGE = 0x1000n;
const TWO_GB = 2n ** 31n;
const EXTRA_SLOT = 16;

export interface ImageLayout {
  base: bigint;
  /** Bytes from base to the end of the extra words and the path string. */
  size: bigint;
  extraAt: bigint;
  pathAt: bigint;
}

export const alignUp = (n: bigint, to = PAGE) => (n + to - 1n) & ~(to - 1n);

/** Bytes needed past the image's segments: the extra words, then the staged file's path. */
export function imageSize(recipe: PatchRecipe, path: string): { size: bigint; pathAt: bigint } {
  const pathAt = BigInt(recipe.extraAt + recipe.extras.length * EXTRA_SLOT);
  return { size: alignUp(pathAt + BigInt(Buffer.byteLength(path) + 1)), pathAt };
}

/**
 * A free range of `size` bytes from which every byte of [lo, hi) is within a 32-bit displacement: the
 * closest gap in the process's address space, above or below the library.
 */
export function placeImage(maps: Mapping[], lo: bigint, hi: bigint, size: bigint): bigint {
  const sorted = [...maps].sort((a, b) => (a.start < b.start ? -1 : 1));
  const floor = 0x10000n;
  const ceiling = 0x7ffffffff000n;
  let best: bigint | undefined;
  let bestDist = 0n;
  const consider = (at: bigint) => {
    if (at < floor || at + size > ceiling) return;
    if (at + size - lo >= TWO_GB || hi - at >= TWO_GB) return;
    const dist = at > lo ? at - lo : lo - at;
    if (best === undefined || dist < bestDist) {
      best = at;
      bestDist = dist;
    }
  };
  let prevEnd = floor;
  for (const m of [...sorted, { start: ceiling, end: ceiling } as Mapping]) {
    // One guard page on each side keeps the image from touching its neighbours.
    const gs = alignUp(prevEnd) + PAGE;
    const ge = (m.start & ~(PAGE - 1n)) - PAGE;
    if (ge > gs && ge - gs >= size) {
      consider(ge - size);
      consider(gs);
    }
    if (m.end > prevEnd) prevEnd = m.end;
  }
  if (best === undefined)
    throw new BerthError("no free address range within 2 GiB of the library for the patch");
  return best;
}

export interface ResolvedAddresses {
  /** Load bias of the old library in the process. */
  oldBias: bigint;
  image: ImageLayout;
  /** Addresses of imported symbols ("name@version"). */
  symbols: Map<string, bigint>;
}

export function addressOf(v: Value, a: ResolvedAddresses, recipe: PatchRecipe): bigint {
  switch (v.kind) {
    case "old":
      return a.oldBias + BigInt(v.addr);
    case "image":
      return a.image.base + BigInt(v.addr);
    case "extra":
      return a.image.base + BigInt(recipe.extraAt + v.index * EXTRA_SLOT);
    case "symbol": {
      const s = a.symbols.get(v.name);
      if (s === undefined)
        throw new BerthError(`the process has no definition of ${v.name}, which the new build needs`);
      return s;
    }
  }
}

/** Everything written into the image, as (address, bytes): relocated functions, extras, table pointers. */
export function imageWrites(
  recipe: PatchRecipe,
  newBytes: Buffer,
  segments: ElfSegment[],
  a: ResolvedAddresses,
): { addr: bigint; bytes: Buffer }[] {
  const out: { addr: bigint; bytes: Buffer }[] = [];
  const base = a.image.base;
  for (const f of recipe.copied) {
    const off = fileOffsetOf(segments, f.start);
    if (off === undefined) throw new BerthError(`${f.name} is not in the new build's file`);
    const bytes = Buffer.from(newBytes.subarray(off, off + (f.end - f.start)));
    for (const x of f.fixups) {
      const rel = addressOf(x.value, a, recipe) - (base + BigInt(x.next));
      if (rel < -TWO_GB || rel >= TWO_GB)
        throw new BerthError(`${f.name}: a reference does not reach its target from the patch`);
      bytes.writeInt32LE(Number(rel), x.field - f.start);
    }
    out.push({ addr: base + BigInt(f.start), bytes });
  }
  recipe.extras.forEach((e, i) => {
    const at = base + BigInt(recipe.extraAt + i * EXTRA_SLOT);
    const v = addressOf(e.value, a, recipe);
    const b = Buffer.alloc(EXTRA_SLOT, 0xcc);
    if (e.kind === "slot") b.writeBigUInt64LE(v, 0);
    else {
      b.set([0xff, 0x25, 0, 0, 0, 0]); // jmp [rip+0]
      b.writeBigUInt64LE(v, 6);
    }
    out.push({ addr: at, bytes: b });
  });
  for (const p of recipe.relroPointers) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(addressOf(p.value, a, recipe));
    out.push({ addr: base + BigInt(p.at), bytes: b });
  }
  return out;
}

/** The shortest jump from `from` to `to` that fits in `room` bytes, or undefined. */
export function encodeJump(from: bigint, to: bigint, room: number): Buffer | undefined {
  const rel = to - (from + 5n);
  if (room >= 5 && rel >= -TWO_GB && rel < TWO_GB) {
    const b = Buffer.alloc(5);
    b[0] = 0xe9; // jmp rel32
    b.writeInt32LE(Number(rel), 1);
    return b;
  }
  if (room >= 14) {
    const b = Buffer.alloc(14);
    b.set([0xff, 0x25, 0, 0, 0, 0]); // jmp [rip+0]
    b.writeBigUInt64LE(to, 6);
    return b;
  }
  return undefined;
}

/** A two-byte short jump (jmp rel8). */
export function encodeShortJump(from: bigint, to: bigint): Buffer {
  const rel = to - (from + 2n);
  if (rel < -128n || rel > 127n)
    throw new BerthError("a short jump out of range (a bug in the padding choice)");
  return Buffer.from([0xeb, Number(BigInt.asUintN(8, rel))]);
}

/** [start, end) minus the kept pages, as ranges to unmap. */
export function unmapRanges(base: bigint, size: bigint, keep: bigint[]): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let at = base;
  for (const k of [...keep].sort((x, y) => (x < y ? -1 : 1))) {
    if (k < at || k >= base + size) continue;
    if (k > at) out.push([at, k]);
    at = k + PAGE;
  }
  if (at < base + size) out.push([at, base + size]);
  return out;
}
