// The comparison behind `berth patch lib plan`, against oracles on real Debian libraries: function
// boundaries from .eh_frame as readelf reads them (and the .eh_frame_hdr index agreeing), and the
// verdict "identical" as objdump sees it — two functions Berth calls identical disassemble to the same
// text once the addresses that only moved are removed, and two it calls changed for their instruction
// bytes do not. The parsers survive fuzzed input; the placement and encoding helpers are checked on
// their own.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { BerthError } from "../../src/common/errors.ts";
import { compareLibraries, firstDifference } from "../../src/patch/compare.ts";
import { cfiIndex, cfiRowAt, ehFrameOf, evalExpression, parseEhFrameAt } from "../../src/patch/eh-frame.ts";
import { parseElf } from "../../src/patch/elf.ts";
import { encodeJump, encodeShortJump, placeImage, unmapRanges } from "../../src/patch/image.ts";
import { type Library, loadLibrary } from "../../src/patch/library.ts";
import { parseMaps } from "../../src/patch/proc.ts";
import { runSync } from "../helpers.ts";
import { archiveBuilds, libIn } from "./debian.ts";

const SYSTEM = ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libexpat.so.1"];

/** readelf's FDE ranges: "... FDE cie=... pc=START..END". */
function readelfFdes(path: string): string[] {
  const out: string[] = [];
  for (const l of runSync("readelf", ["--debug-dump=frames", "-W", path]).stdout.split("\n")) {
    const m = /FDE cie=\S+ pc=([0-9a-f]+)\.\.([0-9a-f]+)/.exec(l);
    if (m && m[1] !== m[2])
      out.push(`${BigInt(`0x${m[1]}`).toString(16)}-${BigInt(`0x${m[2]}`).toString(16)}`);
  }
  return out.sort();
}

/** objdump's text of every instruction in [start, end), with moved addresses taken out. */
function objdumpFunctions(path: string): (start: number, end: number) => string[] {
  const text = runSync("objdump", ["-d", "--no-show-raw-insn", "-M", "suffix", path]).stdout;
  const byAddr = new Map<number, string>();
  const addrs: number[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s+([0-9a-f]+):\t(.*)$/.exec(line);
    if (!m) continue;
    const ins = m[2]!
      .replace(/\s+#.*$/, "")
      .replace(/-?0x[0-9a-f]+\(%rip\)/g, "X(%rip)")
      .replace(/^((?:bnd |notrack )?(?:j\w+|call\w*|loop\w*))\s+[0-9a-f]+ <[^>]*>$/, "$1 T")
      .replace(/\s+/g, " ")
      .trim();
    const a = Number.parseInt(m[1]!, 16);
    byAddr.set(a, ins);
    addrs.push(a);
  }
  addrs.sort((x, y) => x - y);
  return (start, end) => {
    const out: string[] = [];
    let lo = 0;
    let hi = addrs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (addrs[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < addrs.length && addrs[i]! < end; i++) out.push(byAddr.get(addrs[i]!)!);
    return out;
  };
}

/** Line numbers handed to error and allocation calls are the one difference Berth leaves alone. */
const withoutLineNumbers = (ins: string[]) =>
  ins.map((i) => i.replace(/^movl \$0x[0-9a-f]+,(%e\w\w|%r\d+d)$/, "movl $L,$1"));

function checkAgainstObjdump(oldPath: string, newPath: string): { identical: number; changed: number } {
  const old: Library = loadLibrary(oldPath, readFileSync(oldPath));
  const neu: Library = loadLibrary(newPath, readFileSync(newPath));
  const diff = compareLibraries(old, neu);
  const a = objdumpFunctions(oldPath);
  const b = objdumpFunctions(newPath);
  const changed = new Set(diff.changed.map((c) => c.neu.index));
  let identical = 0;
  let checkedChanged = 0;
  for (const [ni, o] of diff.matching.toOld) {
    const n = neu.functions[ni]!;
    if (o.fromGap || n.fromGap) continue; // data in .text: objdump's "instructions" mean nothing there
    const x = a(o.start, o.end);
    const y = b(n.start, n.end);
    if (!changed.has(ni)) {
      assert.deepEqual(
        withoutLineNumbers(y),
        withoutLineNumbers(x),
        `${n.names[0] ?? n.start.toString(16)} is called identical`,
      );
      identical++;
    } else if (/instruction bytes differ|size/.test(firstDifference(diff, n) ?? "")) {
      assert.notDeepEqual(y, x, `${n.names[0] ?? n.start.toString(16)} is called changed`);
      checkedChanged++;
    }
  }
  old.code.free();
  neu.code.free();
  return { identical, changed: checkedChanged };
}

describe("library comparison", () => {
  for (const lib of SYSTEM)
    test(`${lib}: every .eh_frame function range agrees with readelf, and the .eh_frame_hdr index finds each`, () => {
      const bytes = readFileSync(lib);
      const elf = parseElf(bytes);
      const eh = ehFrameOf(elf, bytes);
      const ours = eh.fdes.map((f) => `${f.start.toString(16)}-${f.end.toString(16)}`).sort();
      assert.ok(ours.length > 100);
      assert.deepEqual(ours, readelfFdes(lib));
      const index = cfiIndex(elf, bytes);
      for (const f of eh.fdes) {
        const g = index.fdeFor(f.start + ((f.end - f.start) >> 1));
        assert.ok(g && g.start === f.start && g.end === f.end, `no FDE for 0x${f.start.toString(16)}`);
        // Every row of every FDE evaluates (a malformed program would throw).
        cfiRowAt(bytes, f, f.end - 1);
      }
    });

  test("libssl (the archive's oldest and newest builds): identical and changed agree with objdump", async () => {
    const builds = await archiveBuilds("libssl3");
    const r = checkAgainstObjdump(libIn(builds.at(-1)!, "libssl.so.3"), libIn(builds[0]!, "libssl.so.3"));
    assert.ok(r.identical > 500, `${r.identical} identical functions checked`);
    assert.ok(r.changed > 0, "no changed function checked");
  });

  test("fuzzed .eh_frame sections and DWARF expressions fail with one BerthError, never another exception", () => {
    const bytes = readFileSync(SYSTEM[1]!);
    const elf = parseElf(bytes);
    const sec = elf.sections.find((s) => s.name === ".eh_frame")!;
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.from(bytes);
      for (let k = 0; k < 1 + (rand() % 12); k++) buf[sec.offset + (rand() % sec.size)] = rand() & 0xff;
      try {
        const eh = parseEhFrameAt(buf, sec.offset, sec.addr, sec.size);
        for (const f of eh.fdes.slice(0, 50)) cfiRowAt(buf, f, f.end - 1);
      } catch (e) {
        assert.ok(e instanceof BerthError, `iteration ${i}: ${(e as Error).stack}`);
        assert.ok(!e.message.includes("\n"));
        rejected++;
      }
      const expr = Buffer.from(Array.from({ length: 1 + (rand() % 24) }, () => rand() & 0xff));
      try {
        evalExpression(
          expr,
          [0, expr.length],
          () => 8n,
          () => 16n,
          0n,
        );
      } catch (e) {
        assert.ok(e instanceof BerthError, `expression ${expr.toString("hex")}: ${(e as Error).stack}`);
      }
    }
    assert.ok(rejected > 50, `only ${rejected} of 2000 mutants were rejected`);
  });

  test("placement: the image goes into the closest free gap within 2 GiB of the library", () => {
    const maps = parseMaps(
      [
        "555555554000-555555556000 r-xp 00000000 fe:00 1 /usr/bin/prog",
        "7f0000000000-7f0000100000 r-xp 00000000 fe:00 2 /usr/lib/libx.so.1",
        "7f0000100000-7f0000200000 rw-p 00100000 fe:00 2 /usr/lib/libx.so.1",
        "7f0000300000-7f0000400000 rw-p 00000000 00:00 0",
        "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]",
      ].join("\n"),
    );
    const at = placeImage(maps, 0x7f0000000000n, 0x7f0000200000n, 0x100000n);
    // Not overlapping anything, with a guard page, and within reach of every byte of the library.
    for (const m of maps) assert.ok(at + 0x100000n + 0x1000n <= m.start || at >= m.end + 0x1000n, m.path);
    assert.ok(at + 0x100000n - 0x7f0000000000n < 2n ** 31n && 0x7f0000200000n - at < 2n ** 31n);
    assert.throws(() => placeImage(maps, 0x7f0000000000n, 0x7f0000200000n, 2n ** 40n), BerthError);
    assert.deepEqual(unmapRanges(0x10000n, 0x5000n, [0x12000n]), [
      [0x10000n, 0x12000n],
      [0x13000n, 0x15000n],
    ]);
    assert.deepEqual(encodeShortJump(0x1000n, 0x1010n), Buffer.from([0xeb, 0x0e]));
    assert.throws(() => encodeShortJump(0x1000n, 0x2000n), BerthError);
    assert.deepEqual(encodeJump(0x1000n, 0x2000n, 5), Buffer.from([0xe9, 0xfb, 0x0f, 0, 0]));
    assert.equal(encodeJump(0x1000n, 0x1000n + 2n ** 33n, 5), undefined);
  });
});
