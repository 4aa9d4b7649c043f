// Binary search over sorted, non-overlapping [start, end) ranges (functions, FDEs).

export function findRange<T extends { start: number; end: number }>(
  list: readonly T[],
  addr: number,
): T | undefined {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = list[mid]!;
    if (addr < r.start) hi = mid - 1;
    else if (addr >= r.end) lo = mid + 1;
    else return r;
  }
  return undefined;
}

/** A set of address ranges for fast membership tests while a process is stopped (user-space addresses fit in a double). */
export class AddressRanges {
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;

  constructor(ranges: readonly (readonly [bigint, bigint])[]) {
    const sorted = ranges.map(([a, b]) => [Number(a), Number(b)] as const).sort((x, y) => x[0] - y[0]);
    const merged: [number, number][] = [];
    for (const [a, b] of sorted) {
      const last = merged.at(-1);
      if (last && a <= last[1]) last[1] = Math.max(last[1], b);
      else merged.push([a, b]);
    }
    this.starts = Float64Array.from(merged.map((m) => m[0]));
    this.ends = Float64Array.from(merged.map((m) => m[1]));
  }

  has(addr: bigint): boolean {
    const a = Number(addr);
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a < this.starts[mid]!) hi = mid - 1;
      else if (a >= this.ends[mid]!) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
