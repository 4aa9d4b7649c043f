// berth harden check of this host beside `lynis audit system` in the same run: wall time and the
// number of checks each performs. Goal: the full rule set in under 10 s (Lynis takes minutes).

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measure, printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");

if (spawnSync("lynis", ["--version"]).status !== 0) {
  console.error("bench/harden: lynis is not installed (apt-get install lynis)");
  process.exit(1);
}

// Warm the file cache for both with one untimed run, so neither pays for the first walk.
measure(BERTH, ["harden", "check", "--json", "-q"]);
const runs = 3;
const berthTimes: number[] = [];
let berthRules = 0;
let berthFiles = 0;
for (let i = 0; i < runs; i++) {
  const m = measure(BERTH, ["harden", "check", "--json", "-q"]);
  berthTimes.push(m.seconds);
  const a = JSON.parse(m.stdout) as { files: number; summary: { rules: number; notApplicable: number } };
  berthRules = a.summary.rules - a.summary.notApplicable;
  berthFiles = a.files;
}
const berthSeconds = berthTimes.sort((a, b) => a - b)[1]!;

const dir = mkdtempSync(join(tmpdir(), "berth-bench-lynis-"));
try {
  const report = join(dir, "lynis-report.dat");
  const lynis = measure("lynis", [
    "audit",
    "system",
    "--quick",
    "--no-colors",
    "--report-file",
    report,
    "--logfile",
    join(dir, "lynis.log"),
  ]);
  const text = readFileSync(report, "utf8");
  // Lynis lists every test it ran in tests_executed= (pipe-separated IDs).
  const executed = (/^tests_executed=(.*)$/m.exec(text)?.[1] ?? "").split("|").filter(Boolean).length;
  console.log(
    `berth harden check: ${berthRules} applicable rules (of 300+), ${berthFiles} files walked, median of ${runs} runs`,
  );
  console.log(`lynis audit system --quick: ${executed} tests executed`);
  printTable("harden: full check of this host", [
    {
      metric: "wall time",
      berth: berthSeconds,
      peer: lynis.seconds,
      peerName: "lynis 3.0.8",
      unit: "s",
      higherIsBetter: false,
    },
    {
      metric: "checks performed",
      berth: berthRules,
      peer: executed,
      peerName: "lynis 3.0.8",
      unit: "",
      higherIsBetter: true,
    },
    {
      metric: "checks per second",
      berth: berthRules / berthSeconds,
      peer: executed / lynis.seconds,
      peerName: "lynis 3.0.8",
      unit: "/s",
      higherIsBetter: true,
    },
  ]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
