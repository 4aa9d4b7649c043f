// The ELF reader against readelf (binutils) on this machine's own libraries: every exported function
// with its address, size and symbol version; relocations for GOT rewriting; and fuzzed files that must
// fail with one BerthError, never another exception.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { BerthError } from "../../src/common/errors.ts";
import { exportedFunctions, parseElf, R_X86_64_JUMP_SLOT } from "../../src/patch/elf.ts";
import { runSync } from "../helpers.ts";

const LIBS = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/x86_64-linux-gnu/libz.so.1",
  "/lib/x86_64-linux-gnu/libm.so.6",
];

/** readelf's view: "name@@VER" (default) or "name@VER" (hidden) for each defined FUNC/IFUNC. */
function readelfFunctions(path: string): Map<string, { value: bigint; size: number }> {
  const out = new Map<string, { value: bigint; size: number }>();
  const text = runSync("readelf", ["--dyn-syms", "-W", path]).stdout;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (f.length < 8 || !/^\d+:$/.test(f[0]!)) continue;
    if (!["FUNC", "IFUNC"].includes(f[3]!) || !["GLOBAL", "WEAK"].includes(f[4]!) || f[6] === "UND") continue;
    const name = f[7]!.replace(/\s*\(\d+\)$/, "");
    if (/@(?!@)/.test(name) && !name.includes("@@")) continue; // hidden (non-default) versions
    out.set(name, {
      value: BigInt(`0x${f[1]}`),
      size: Number(f[2]!.startsWith("0x") ? Number.parseInt(f[2]!, 16) : f[2]),
    });
  }
  return out;
}

describe("ELF reader", () => {
  for (const lib of LIBS)
    test(`${lib}: exported functions, addresses, sizes and versions agree with readelf`, () => {
      const elf = parseElf(readFileSync(lib));
      const ours = new Map(
        exportedFunctions(elf).map((s) => [s.version ? `${s.name}@@${s.version}` : s.name, s]),
      );
      const theirs = readelfFunctions(lib);
      assert.ok(theirs.size > 10, `readelf listed only ${theirs.size} functions`);
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [k, v] of theirs) {
        assert.equal(ours.get(k)!.value, v.value, k);
        assert.equal(ours.get(k)!.size, v.size, k);
      }
    });

  test("relocations: the JUMP_SLOT entries readelf lists for libz", () => {
    const elf = parseElf(readFileSync(LIBS[1]!));
    const ours = elf.relocations
      .filter((r) => r.type === R_X86_64_JUMP_SLOT)
      .map((r) => `${r.offset.toString(16)} ${r.symbol}`);
    const theirs = runSync("readelf", ["-r", "-W", LIBS[1]!])
      .stdout.split("\n")
      .filter((l) => l.includes("R_X86_64_JUMP_SLOT"))
      .map((l) => {
        const f = l.trim().split(/\s+/);
        return `${BigInt(`0x${f[0]}`).toString(16)} ${f[4]!.replace(/@.*$/, "")}`;
      });
    assert.ok(theirs.length > 5);
    assert.deepEqual(ours.sort(), theirs.sort());
  });

  test("fuzzed and truncated files fail with one BerthError", () => {
    const base = readFileSync(LIBS[1]!);
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      const buf = Buffer.from(i % 3 === 0 ? base.subarray(0, rand() % base.length) : base);
      // Flip bytes, mostly in the headers and tables where the offsets live.
      for (let k = 0; k < 1 + (rand() % 16); k++)
        buf[rand() % Math.min(buf.length, i % 2 ? 4096 : buf.length)] = rand() & 0xff;
      try {
        parseElf(buf);
      } catch (e) {
        assert.ok(e instanceof BerthError, `iteration ${i}: ${(e as Error).stack}`);
        assert.ok(!e.message.includes("\n"));
        rejected++;
      }
    }
    assert.ok(rejected > 100, `only ${rejected} of 3000 mutants were rejected`);
  });
});
