// Debian version ordering against dpkg itself: the dpkg binary for edge cases, invalid versions and a
// sample of pairs; dpkg's own library (libdpkg, which the binary is built from) for 100,000+ pairs
// drawn from a real trixie Packages index.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { Archive } from "../../src/pkg/archive.ts";
import { streamDeb822 } from "../../src/pkg/deb822.ts";
import { repositoriesOf, resolveSources } from "../../src/pkg/sources.ts";
import {
  compareVersions,
  evaluateRelation,
  parseVersionDetailed,
  VersionSyntaxError,
} from "../../src/pkg/version.ts";
import { berth, mapLimit, ROOT, run, runSync, tempDir } from "../helpers.ts";

const EDGE_CASES = [
  "0",
  "0:0",
  "00:0",
  "1",
  "1.0",
  "1.0-0",
  "1.0-1",
  "1.0-01",
  "1.0~",
  "1.0~~",
  "1.0~~a",
  "1.0~a",
  "1.0~rc1",
  "1.0~rc1-1",
  "1.0+dfsg",
  "1.0+dfsg-1",
  "1.0.0",
  "1.00",
  "1.0a",
  "1.0A",
  "1.0.a",
  "1.0-1~bpo12+1",
  "1.0-1+b1",
  "1.0-1.1",
  "1:1.0",
  "1:0.9",
  "2:0",
  "10:0",
  "1.2.3-4-5",
  "1:2:3",
  "1.0-a",
  "a",
  "~",
  "1~",
  "1.0-1~",
  "2147483647:1",
  "0:1.0-1",
  "1.0-",
];

function dpkgCompare(a: string, op: string, b: string): number {
  return runSync("dpkg", ["--compare-versions", a, op, b]).code;
}

/** Compiles the libdpkg oracle once per run. */
function buildOracle(): string {
  const dir = tempDir("berth-oracle-");
  const bin = join(dir, "dpkg-vercmp");
  execFileSync("gcc", ["-O2", "-o", bin, join(ROOT, "test/oracles/dpkg-vercmp.c"), "-ldpkg"]);
  return bin;
}

async function oracleCompare(bin: string, pairs: [string, string][]): Promise<string[]> {
  const r = await run(bin, [], { input: `${pairs.map(([a, b]) => `${a}\t${b}`).join("\n")}\n` });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trimEnd().split("\n");
}

function ours(a: string, b: string): string {
  return String(compareVersions(a, b));
}

/** A small deterministic PRNG so a failure can be reproduced from the printed seed. */
function mulberry32(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let x = Math.imul(t ^ (t >>> 15), 1 | t);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Debian version ordering", () => {
  let oracle: string;
  let versions: string[] = [];

  before(async () => {
    oracle = buildOracle();
    const archive = new Archive();
    const cfg = resolveSources({ suites: ["trixie"] });
    const [repo] = repositoriesOf(cfg);
    const vr = await archive.release(repo!);
    const path = await archive.packagesIndex(vr, "main");
    const set = new Set<string>();
    for await (const s of streamDeb822(createReadStream(path), { fields: new Set(["Version", "Source"]) })) {
      if (s.Version) set.add(s.Version);
      const sv = /\(([^)]+)\)/.exec(s.Source ?? "")?.[1];
      if (sv) set.add(sv);
    }
    versions = [...set];
  });

  test("edge cases agree with the dpkg binary for every relation", () => {
    for (const a of EDGE_CASES)
      for (const b of ["1.0", "1.0~rc1", "1:0.9", "1.0-1", "1.0+dfsg"]) {
        const d = dpkgCompare(a, "lt", b);
        if (d === 2) {
          assert.throws(
            () => parseVersionDetailed(a),
            VersionSyntaxError,
            `${a} should be rejected like dpkg does`,
          );
          continue;
        }
        for (const op of ["lt", "eq", "gt"]) {
          const expected = dpkgCompare(a, op, b) === 0;
          assert.equal(evaluateRelation(a, op, b).holds, expected, `${a} ${op} ${b}`);
        }
      }
  });

  test("the trixie index supplies enough versions, including the longest", () => {
    assert.ok(versions.length > 20_000, `only ${versions.length} distinct versions`);
    const longest = [...versions].sort((a, b) => b.length - a.length).slice(0, 5);
    assert.ok(longest[0]!.length > 30, `longest is ${longest[0]}`);
  });

  test("100,000 random pairs plus the longest versions agree with libdpkg", async () => {
    const seed = Number(process.env.BERTH_TEST_SEED ?? Date.now() % 1e9);
    const rnd = mulberry32(seed);
    const pick = () => versions[Math.floor(rnd() * versions.length)]!;
    const pairs: [string, string][] = [];
    for (let i = 0; i < 100_000; i++) pairs.push([pick(), pick()]);
    const longest = [...versions].sort((a, b) => b.length - a.length).slice(0, 50);
    for (const a of longest) for (const b of longest) pairs.push([a, b]);
    const expected = await oracleCompare(oracle, pairs);
    let bad = 0;
    const examples: string[] = [];
    pairs.forEach(([a, b], i) => {
      if (ours(a, b) !== expected[i]) {
        bad++;
        if (examples.length < 5) examples.push(`${a} vs ${b}: libdpkg ${expected[i]}, berth ${ours(a, b)}`);
      }
    });
    assert.equal(bad, 0, `seed ${seed}: ${bad} disagreements, e.g. ${examples.join("; ")}`);
  });

  test("sorting every version: each adjacent pair agrees with libdpkg (so every pair does)", async () => {
    const sorted = [...versions].sort(compareVersions);
    const pairs: [string, string][] = [];
    for (let i = 1; i < sorted.length; i++) pairs.push([sorted[i - 1]!, sorted[i]!]);
    const expected = await oracleCompare(oracle, pairs);
    for (const [i, [a, b]] of pairs.entries()) assert.equal(ours(a, b), expected[i], `${a} vs ${b}`);
  });

  test("near-miss variants (tildes, epochs, revisions, leading zeros) agree with libdpkg", async () => {
    const rnd = mulberry32(7);
    const pairs: [string, string][] = [];
    for (let i = 0; i < 5000; i++) {
      const v = versions[Math.floor(rnd() * versions.length)]!;
      const noRev = v.includes("-") ? v.slice(0, v.lastIndexOf("-")) : v;
      for (const w of [
        `${v}~`,
        `${v}~~`,
        `${v}+b1`,
        `${noRev}`,
        `${noRev}-0`,
        `0:${v}`,
        `1:${v}`,
        `${v}.0`,
        `${v}a`,
        v.replace(/\d+/, (d) => `0${d}`),
      ])
        pairs.push([v, w]);
    }
    const expected = await oracleCompare(oracle, pairs);
    for (const [i, [a, b]] of pairs.entries()) assert.equal(ours(a, b), expected[i], `${a} vs ${b}`);
  });

  test("the libdpkg oracle and berth both agree with the dpkg binary on a sample", async () => {
    const rnd = mulberry32(42);
    const pairs: [string, string][] = [];
    for (let i = 0; i < 1500; i++)
      pairs.push([
        versions[Math.floor(rnd() * versions.length)]!,
        versions[Math.floor(rnd() * versions.length)]!,
      ]);
    // Two shells in parallel, one dpkg process per comparison.
    const script =
      'while IFS="\t" read -r a b; do dpkg --compare-versions "$a" lt "$b"; l=$?; dpkg --compare-versions "$a" eq "$b"; e=$?; echo "$l$e"; done';
    const half = Math.ceil(pairs.length / 2);
    const chunks = [pairs.slice(0, half), pairs.slice(half)];
    const outs = await Promise.all(
      chunks.map((c) =>
        run("bash", ["-c", script], { input: `${c.map(([a, b]) => `${a}\t${b}`).join("\n")}\n` }),
      ),
    );
    const binary = outs
      .flatMap((o) => o.stdout.trimEnd().split("\n"))
      .map((s) => (s === "01" ? "-1" : s === "10" ? "0" : s === "11" ? "1" : `?${s}`));
    const lib = await oracleCompare(oracle, pairs);
    assert.deepEqual(lib, binary, "libdpkg oracle differs from the dpkg binary");
    for (const [i, [a, b]] of pairs.entries()) assert.equal(ours(a, b), binary[i], `${a} vs ${b}`);
  });

  test("invalid versions are rejected exactly as dpkg rejects them (errors vs warnings)", async () => {
    const cases = [
      "",
      " ",
      "1 2",
      ":1",
      "a:1",
      "1a:1",
      "-1:1",
      "+1:1",
      "1:",
      "1: ",
      "99999999999999999999:1",
      "2147483648:1",
      "2147483647:1",
      "1-",
      "-1",
      "1:-1",
      "a1",
      "1_0",
      "1.0-1_2",
      "1.0-1:2",
      "1.0-a-b",
      "1.0 ",
      " 1.0",
      "\t1.0",
      "1.0\t",
      "1.0é",
      "1.0!",
      "0:",
      "00001:1",
      "1:1:1",
      "1--1",
      "~1",
    ];
    const r = await run(oracle, ["parse"], { input: `${cases.map((c) => c).join("\n")}\n` });
    const lib = r.stdout.trimEnd().split("\n");
    cases.forEach((c, i) => {
      const expected = lib[i]!;
      let got: string;
      try {
        const p = parseVersionDetailed(c);
        got = p.warning ? `W ${p.warning}` : "OK";
      } catch (e) {
        got = `E ${(e as VersionSyntaxError).message.replace(/^version '.*' has bad syntax: /s, "")}`;
      }
      assert.equal(got, expected, `version ${JSON.stringify(c)}`);
      // And the binary: errors exit 2, warnings still compare.
      const code = dpkgCompare(c, "eq", c);
      if (expected.startsWith("E") && c.trim() !== "") assert.equal(code, 2, `dpkg on ${JSON.stringify(c)}`);
    });
  });

  test("`berth pkg compare` exits like `dpkg --compare-versions`", async () => {
    const cases: [string, string, string][] = [];
    const ops = [
      "lt",
      "le",
      "eq",
      "ne",
      "ge",
      "gt",
      "<<",
      "<=",
      "=",
      ">=",
      ">>",
      "<",
      ">",
      "lt-nl",
      "gt-nl",
      "le-nl",
      "ge-nl",
    ];
    for (const op of ops)
      for (const a of ["1.0", "1.0~rc1", "", "<unknown>", "a1.0", ":1"])
        for (const b of ["1.0", ""]) cases.push([a, op, b]);
    const results = await mapLimit(cases, 4, ([a, op, b]) => berth(["pkg", "compare", a, op, b]));
    cases.forEach(([a, op, b], i) => {
      assert.equal(
        results[i]!.code,
        dpkgCompare(a, op, b),
        `berth pkg compare '${a}' ${op} '${b}': ${results[i]!.stderr}`,
      );
    });
    const bad = await berth(["pkg", "compare", "1", "bogus", "2"]);
    assert.equal(bad.code, dpkgCompare("1", "bogus", "2"));
  });
});
