// Shared by the benchmarks: timing, peak memory of child processes, and ratio tables.

import { spawnSync } from "node:child_process";
import { createReadStream } from "node:fs";
import { Archive } from "../src/pkg/archive.ts";
import { streamDeb822 } from "../src/pkg/deb822.ts";
import { repositoriesOf, resolveSources } from "../src/pkg/sources.ts";

export interface Measured {
  seconds: number;
  /** Peak resident set size in KiB, from GNU time. */
  maxRssKiB: number;
  stdout: string;
}

/** Runs a command under GNU time to get its wall time and peak memory. */
export function measure(cmd: string, args: string[], input?: string): Measured {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", cmd, ...args], {
    input,
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr.slice(-500)}`);
  const lines = r.stderr.trim().split("\n");
  return { seconds, maxRssKiB: Number(lines.at(-1)), stdout: r.stdout };
}

export function printTable(
  title: string,
  rows: {
    metric: string;
    berth: number;
    peer: number;
    peerName: string;
    unit: string;
    higherIsBetter: boolean;
  }[],
): void {
  console.log(`\n## ${title}`);
  console.log("| metric | berth | peer | peer value | ratio (berth advantage) |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    const ratio = r.higherIsBetter ? r.berth / r.peer : r.peer / r.berth;
    console.log(
      `| ${r.metric} | ${fmt(r.berth)} ${r.unit} | ${r.peerName} | ${fmt(r.peer)} ${r.unit} | ${ratio.toFixed(2)}x |`,
    );
  }
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(3);
}

/** The uncompressed trixie main amd64 Packages index from Berth's cache (fetched if needed). */
export async function trixiePackagesPath(): Promise<string> {
  const archive = new Archive();
  const [repo] = repositoriesOf(resolveSources({ suites: ["trixie"] }));
  const vr = await archive.release(repo!);
  return archive.packagesIndex(vr, "main");
}

export async function trixieVersions(): Promise<string[]> {
  const set = new Set<string>();
  for await (const s of streamDeb822(createReadStream(await trixiePackagesPath()), {
    fields: new Set(["Version"]),
  }))
    if (s.Version) set.add(s.Version);
  return [...set];
}

export const NODE = process.execPath;
export const PYTHON = "/usr/bin/python3";
