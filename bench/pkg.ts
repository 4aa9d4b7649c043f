// Package layer benchmarks, each beside a peer measured in the same run:
//  - Debian version comparisons per second: berth vs python3-apt (apt's C++ code) and python-debian.
//  - Parsing the full trixie main amd64 Packages index (wall time, peak memory): berth vs python-debian's
//    deb822 parser and python3-apt's TagFile.

import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measure, NODE, PYTHON, printTable, trixiePackagesPath, trixieVersions } from "./lib.ts";

const PAIRS = 1_000_000;

const versions = await trixieVersions();
const pairsFile = join(tmpdir(), `berth-bench-pairs-${process.pid}.txt`);
const lines: string[] = [];
let seed = 99;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
for (let i = 0; i < PAIRS; i++)
  lines.push(
    `${versions[Math.floor(rnd() * versions.length)]}\t${versions[Math.floor(rnd() * versions.length)]}`,
  );
writeFileSync(pairsFile, `${lines.join("\n")}\n`);

// Each contender reads the same pairs, times only the comparison loop (best of three passes, so the
// JIT is warm as it is in real sorting), and prints "seconds checksum".
const berthCmp = `
import { readFileSync } from "node:fs";
import { compareVersions } from ${JSON.stringify(new URL("../src/pkg/version.ts", import.meta.url).pathname)};
const pairs = readFileSync(${JSON.stringify(pairsFile)}, "utf8").trimEnd().split("\\n").map((l) => l.split("\\t"));
let best = Infinity, sum = 0;
for (let pass = 0; pass < 3; pass++) {
  const t0 = performance.now(); sum = 0;
  for (const [a, b] of pairs) sum += compareVersions(a, b);
  best = Math.min(best, (performance.now() - t0) / 1000);
}
console.log(best, sum);`;
const pyAptCmp = `
import apt_pkg, time
apt_pkg.init_system()
pairs = [l.rstrip("\\n").split("\\t") for l in open(${JSON.stringify(pairsFile)})]
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter(); s = 0
    for a, b in pairs:
        r = apt_pkg.version_compare(a, b); s += (r > 0) - (r < 0)
    best = min(best, time.perf_counter() - t0)
print(best, s)`;
const pyDebCmp = `
from debian.debian_support import version_compare
import time
pairs = [l.rstrip("\\n").split("\\t") for l in open(${JSON.stringify(pairsFile)})][:100000]
t0 = time.perf_counter(); s = 0
for a, b in pairs:
    r = version_compare(a, b); s += (r > 0) - (r < 0)
print((time.perf_counter() - t0) * ${PAIRS / 100000}, s)`;

const rate = (out: string) => PAIRS / Number(out.trim().split(" ")[0]);
const berthRun = measure(NODE, ["--input-type=module", "-e", berthCmp]);
const aptRun = measure(PYTHON, ["-c", pyAptCmp]);
const debRun = measure(PYTHON, ["-c", pyDebCmp]);
if (berthRun.stdout.split(" ")[1] !== aptRun.stdout.split(" ")[1])
  throw new Error("berth and apt_pkg disagree on the pairs");
printTable(`Debian version comparisons (${PAIRS.toLocaleString("en-US")} pairs from trixie)`, [
  {
    metric: "comparisons/s",
    berth: rate(berthRun.stdout),
    peer: rate(aptRun.stdout),
    peerName: "python3-apt apt_pkg.version_compare (C++)",
    unit: "/s",
    higherIsBetter: true,
  },
  {
    metric: "comparisons/s",
    berth: rate(berthRun.stdout),
    peer: rate(debRun.stdout),
    peerName: "python-debian version_compare (extrapolated from 100k)",
    unit: "/s",
    higherIsBetter: true,
  },
]);

const packages = await trixiePackagesPath();
const berthParse = measure(NODE, [
  "--input-type=module",
  "-e",
  `import { createReadStream } from "node:fs";
   import { streamDeb822 } from ${JSON.stringify(new URL("../src/pkg/deb822.ts", import.meta.url).pathname)};
   let n = 0; for await (const s of streamDeb822(createReadStream(${JSON.stringify(packages)}))) if (s.Package) n++;
   console.log(n);`,
]);
const debParse = measure(PYTHON, [
  "-c",
  `from debian.deb822 import Packages
n = 0
with open(${JSON.stringify(packages)}) as f:
    for p in Packages.iter_paragraphs(f, use_apt_pkg=False):
        if "Package" in p: n += 1
print(n)`,
]);
const aptParse = measure(PYTHON, [
  "-c",
  `import apt_pkg
n = 0
with apt_pkg.TagFile(${JSON.stringify(packages)}) as t:
    for s in t:
        if "Package" in s: n += 1
print(n)`,
]);
for (const r of [debParse, aptParse])
  if (r.stdout.trim() !== berthParse.stdout.trim())
    throw new Error(`stanza counts differ: ${berthParse.stdout} vs ${r.stdout}`);
printTable(`Parse the trixie main amd64 Packages index (${berthParse.stdout.trim()} stanzas, all fields)`, [
  {
    metric: "wall time",
    berth: berthParse.seconds,
    peer: debParse.seconds,
    peerName: "python-debian deb822 (pure Python)",
    unit: "s",
    higherIsBetter: false,
  },
  {
    metric: "peak memory",
    berth: berthParse.maxRssKiB / 1024,
    peer: debParse.maxRssKiB / 1024,
    peerName: "python-debian deb822 (pure Python)",
    unit: "MiB",
    higherIsBetter: false,
  },
  {
    metric: "wall time",
    berth: berthParse.seconds,
    peer: aptParse.seconds,
    peerName: "python3-apt TagFile (C++)",
    unit: "s",
    higherIsBetter: false,
  },
  {
    metric: "peak memory",
    berth: berthParse.maxRssKiB / 1024,
    peer: aptParse.maxRssKiB / 1024,
    peerName: "python3-apt TagFile (C++)",
    unit: "MiB",
    higherIsBetter: false,
  },
]);

rmSync(pairsFile, { force: true });
