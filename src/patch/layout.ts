// Whether objects made by one build's code could reach the other build's code with a different layout.
// Without debug information the layouts themselves are unknown, but the code that uses them shows a
// change: in a changed function aligned with its old version instruction by instruction, the same
// access to a structure field at another offset ([rdi+0x1d70] -> [rdi+0x1d40]), or a different
// constant size handed to an allocator. A single shifted access may be a fix that reads another field,
// and rewritten code lines up unrelated accesses by chance; the same field moved in three functions,
// or three fields moved by the same amount, is a structure the update reorganised, and a constant
// allocation size replaced by another is one it resized. This is evidence, not proof: a structure
// used by only one or two changed functions and never allocated with a constant size can change
// unseen, which docs/patch.md says.
// Either refuses the update: a heap object created before the patch would meet code that expects the
// other layout, the crash the issue saw with expat's parser structure.

import { diffArrays } from "diff";
import { FlowControl, Register } from "iced-x86";
import type { LibraryDiff, Refusal } from "./compare.ts";
import type { InstructionInfo } from "./disasm.ts";
import { classify, describeFunction } from "./library.ts";

interface FieldShift {
  where: string;
  from: number;
  to: number;
}

/** Allocation functions whose first (or second, for calloc) argument is a size. */
const ALLOCATOR =
  /^(malloc|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|CRYPTO_(zalloc|malloc|realloc|clear_realloc|secure_malloc|secure_zalloc)|xmlMalloc\w*|xmlRealloc\w*|g_malloc\w*|g_realloc\w*|XML_MemMalloc|XML_MemRealloc)(@|$)/;

const STACK_OR_IP = new Set<number>([Register.RSP, Register.RBP, Register.RIP, Register.None]);
const SIZE_ARGUMENTS = new Set<number>([Register.RDI, Register.RSI]);

export function layoutProblems(diff: LibraryDiff): Refusal[] {
  const shifts: FieldShift[] = [];
  const out: Refusal[] = [];
  for (const c of diff.changed) {
    if (c.reason !== "changed") continue;
    const a = diff.old.code.instructions(c.old.start, c.old.end);
    const b = diff.neu.code.instructions(c.neu.start, c.neu.end);
    if (!a.length || !b.length) continue;
    const where = describeFunction(c.neu);
    for (const [x, y] of alignedPairs(a, b))
      if (
        x.memBase !== undefined &&
        y.memBase === x.memBase &&
        !STACK_OR_IP.has(x.memBase) &&
        x.memDisplacement !== y.memDisplacement
      )
        shifts.push({ where, from: x.memDisplacement ?? 0, to: y.memDisplacement ?? 0 });
    // Constant sizes handed to allocators: one the old build used is gone and another took its place.
    const before = allocationSizes(diff, a, false);
    const after = allocationSizes(diff, b, true);
    const gone = [...before].filter((x) => !after.has(x));
    const came = [...after].filter((x) => !before.has(x));
    if (gone.length && came.length)
      out.push({
        where,
        reason: `allocates ${came.join(", ")} bytes where the old build allocated ${gone.join(", ")}: a structure the update resized`,
      });
  }
  const fields = shifts.filter((s) => s.from >= 0 && s.to >= 0);
  const evidence: FieldShift[][] = [];
  // One field moved, seen in three functions, or four times in two: code that was merely rewritten
  // lines up such accesses by chance only once or twice (measured on OpenSSL and libxml2 updates).
  const byField = group(fields, (s) => `${s.from}>${s.to}`);
  const convincing = (list: FieldShift[]) => {
    const fns = new Set(list.map((s) => s.where)).size;
    return fns >= 3 || (fns >= 2 && list.length >= 4);
  };
  for (const list of byField.values()) if (convincing(list)) evidence.push(list);
  // Several fields moved by the same amount, each seen in two functions: a block of the structure moved.
  for (const list of group(fields, (s) => String(s.to - s.from)).values()) {
    const fieldsSeenTwice = [...group(list, (s) => String(s.from)).values()].filter(
      (l) => new Set(l.map((s) => s.where)).size >= 2,
    );
    if (
      fieldsSeenTwice.length >= 3 &&
      !evidence.some((e) => e[0]!.to - e[0]!.from === list[0]!.to - list[0]!.from)
    )
      evidence.push(fieldsSeenTwice.flat());
  }
  for (const list of evidence) {
    const fns = [...new Set(list.map((s) => s.where))];
    const first = list[0]!;
    out.push({
      where: fns[0],
      reason: `uses a structure field at +0x${first.from.toString(16)} that is at +0x${first.to.toString(16)} in the new build (${list.length} accesses in ${fns.length} function${fns.length > 1 ? "s" : ""}): the update changes a structure's layout`,
    });
  }
  return out;
}

const token = (i: InstructionInfo) =>
  `${i.mnemonic}:${i.memBase ?? ""}:${i.memIndex ?? ""}:${i.register0 ?? ""}`;

/** Instruction pairs (old, new, old index, new index) that line up in a diff of the two functions. */
function alignedPairs(
  a: InstructionInfo[],
  b: InstructionInfo[],
): [InstructionInfo, InstructionInfo, number, number][] {
  const out: [InstructionInfo, InstructionInfo, number, number][] = [];
  // Myers' diff (the `diff` package) over instruction shapes; functions of thousands of instructions
  // with little in common are skipped rather than diffed at quadratic cost.
  if (a.length * b.length > 4e6) return out;
  const changes = diffArrays(a.map(token), b.map(token));
  let i = 0;
  let j = 0;
  for (const ch of changes) {
    const n = ch.count ?? ch.value.length;
    if (ch.added) j += n;
    else if (ch.removed) i += n;
    else for (let k = 0; k < n; k++, i++, j++) out.push([a[i]!, b[j]!, i, j]);
  }
  return out;
}

/** Constant sizes (`mov edi/esi, N` just before the call) passed to allocation functions. */
function allocationSizes(diff: LibraryDiff, ins: InstructionInfo[], isNew: boolean): Set<number> {
  const lib = isNew ? diff.neu : diff.old;
  const out = new Set<number>();
  ins.forEach((x, k) => {
    if (x.flow !== FlowControl.Call && x.flow !== FlowControl.UnconditionalBranch) return;
    if (x.target === undefined) return;
    const t = classify(lib, x.target);
    const allocator =
      (t.kind === "plt" && ALLOCATOR.test(t.symbol)) ||
      (t.kind === "fn" && t.fn.names.some((n) => ALLOCATOR.test(n)));
    if (!allocator) return;
    for (let j = k - 1; j >= Math.max(0, k - 4); j--) {
      const y = ins[j]!;
      if (
        y.immediate !== undefined &&
        y.memBase === undefined &&
        SIZE_ARGUMENTS.has(y.register0 ?? -1) &&
        y.immediate > 0
      ) {
        out.add(y.immediate);
        break;
      }
      if (y.flow !== FlowControl.Next) break;
    }
  });
  return out;
}

function group<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}
