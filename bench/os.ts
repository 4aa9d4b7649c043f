// Berth OS benchmarks, each beside a peer measured in the same run:
//  1. Warm rebuild: `berth os build` of the default profile (root, configuration, initramfs, squashfs,
//     disk, manifest) against mmdebstrap alone installing the same package set from the same warm package
//     cache (goal: at most 1.2x), and against mmdebstrap followed by mksquashfs with the same compression.
//  2. Boot to a running container of the default image against the general-purpose baseline built from
//     the same archive, booted the same way (QEMU TCG, 1 vCPU, direct kernel boot; goal: at most 40 s),
//     with systemd's critical chain to the self-test from inside each guest (`berth os run --analyze`);
//     both are kept as boot.json and shown in the image's report.md.
// BERTH_BENCH_OS=build runs the first part only.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BootRecord } from "../src/os/boot-record.ts";
import { squashfsArgs } from "../src/os/disk.ts";
import type { Manifest } from "../src/os/manifest.ts";
import { readProfile } from "../src/os/profile.ts";
import { printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const PROFILE = join(ROOT, "profiles/container-host.yaml");
const CACHE = process.env.BERTH_CACHE || "/var/cache/berth";
const work = await mkdtemp(join(tmpdir(), "berth-bench-os-"));

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr.slice(-800)}`);
  return (performance.now() - t0) / 1000;
}

const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;

try {
  // Warm every cache (packages, indexes, the root image) with one build that is not timed.
  const warm = join(work, "warm");
  timed(BERTH, ["os", "build", "--out", warm, "--no-baseline", "-q"]);
  const m = manifestOf(warm);

  const berthSeconds = timed(BERTH, ["os", "build", "--out", join(work, "timed"), "--no-baseline", "-q"]);
  const phases = manifestOf(join(work, "timed")).phases;

  // The same packages, from the same cache, by mmdebstrap alone.
  const debs = join(work, "debs");
  spawnSync("mkdir", ["-p", debs]);
  const names = m.packages.map((p) => p.name).filter((n) => n !== "berth-base");
  const stage = spawnSync(
    BERTH,
    ["pkg", "download", ...names, "--suite", "trixie,trixie-updates,trixie-security", "--dest", debs, "-q"],
    { encoding: "utf8" },
  );
  if (stage.status !== 0) throw new Error(stage.stderr);
  const root = join(work, "mmroot");
  const mm = [
    "--variant=essential",
    "--mode=root",
    "--format=directory",
    '--aptopt=APT::Install-Recommends "false"',
    `--include=${names.join(",")}`,
    "--skip=download/empty",
    `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp ${debs}/*.deb "$1/var/cache/apt/archives/"`,
    "trixie",
    root,
    ...m.archive.map((a) => `deb ${a.uri} ${a.suite} main`),
  ];
  const mmSeconds = timed("mmdebstrap", mm);
  const compression = readProfile(PROFILE).image.compression;
  const sq = join(work, "mm.squashfs");
  const sqSeconds = timed("mksquashfs", [root, sq, ...squashfsArgs(compression, m.sourceDateEpoch)]);
  spawnSync("rm", ["-rf", "--one-file-system", root]);

  printTable("Build the default image, warm cache", [
    {
      metric: "wall time",
      berth: berthSeconds,
      peer: mmSeconds,
      peerName: "mmdebstrap alone, same packages, same warm cache",
      unit: "s",
      higherIsBetter: false,
    },
    {
      metric: "wall time",
      berth: berthSeconds,
      peer: mmSeconds + sqSeconds,
      peerName: `mmdebstrap + mksquashfs (${compression}, same settings)`,
      unit: "s",
      higherIsBetter: false,
    },
  ]);
  console.log(
    `\nwarm rebuild / mmdebstrap alone: ${(berthSeconds / mmSeconds).toFixed(2)}x (goal: at most 1.2x)` +
      `\nberth phases (s): ${JSON.stringify(phases)}; mmdebstrap's root: ${statSync(sq).size} bytes compressed`,
  );

  // Boot to ready: default vs the cached baseline of this archive state (built here when missing).
  // BERTH_BENCH_OS=build measures the build alone.
  if (process.env.BERTH_BENCH_OS !== "build") await bootBench();
} finally {
  spawnSync("rm", ["-rf", "--one-file-system", work]);
  await rm(work, { recursive: true, force: true });
}

async function bootBench(): Promise<void> {
  const baselines = join(CACHE, "os/baselines");
  const candidates = existsSync(baselines)
    ? readdirSync(baselines).filter(
        (d) => d.startsWith("general-purpose-") && existsSync(join(baselines, d, "disk.img")),
      )
    : [];
  let baseline = candidates
    .map((d) => join(baselines, d))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!baseline) {
    baseline = join(work, "baseline");
    timed(BERTH, [
      "os",
      "build",
      join(ROOT, "profiles/general-purpose.yaml"),
      "--out",
      baseline,
      "--no-baseline",
      "-q",
    ]);
  }
  const boot = (image: string): BootRecord => {
    // A boot that fails for an emulator fault (TCG occasionally oopses early) is retried once, and said.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = spawnSync(BERTH, ["os", "run", image, "--check", "--analyze", "--timeout", "900", "-q"], {
        encoding: "utf8",
      });
      if (r.status === 0) return JSON.parse(readFileSync(join(image, "boot.json"), "utf8")) as BootRecord;
      console.log(`  (boot of ${image} failed: ${r.stderr.trim()}; attempt ${attempt})`);
    }
    throw new Error(`${image} did not become ready`);
  };
  const image = join(work, "timed");
  const berthBoot = boot(image);
  const baseBoot = boot(baseline);
  printTable("Boot to a running container (QEMU TCG, 1 vCPU, direct kernel boot)", [
    {
      metric: "boot to ready",
      berth: berthBoot.readySeconds,
      peer: baseBoot.readySeconds,
      peerName: "general-purpose baseline (stock trixie standard + Docker)",
      unit: "s",
      higherIsBetter: false,
    },
  ]);
  console.log(`\nboot to a running container: ${berthBoot.readySeconds} s (goal: at most 40 s)`);
  for (const [name, b] of [
    ["general-purpose baseline", baseBoot],
    ["container-host", berthBoot],
  ] as const) {
    console.log(`\ncritical chain to the self-test, ${name} (systemd-analyze inside the guest):`);
    for (const l of b.analysis?.criticalChain ?? ["(none reported)"]) console.log(`  ${l}`);
  }
  // The image's report gets both boots (report.md, "Boot to a running container").
  spawnSync(BERTH, ["os", "report", image, "--baseline", baseline, "-q"]);
  const md = readFileSync(join(image, "report.md"), "utf8");
  const section = md.slice(md.indexOf("## Boot to a running container"), md.indexOf("## Why each package"));
  console.log(`\nThe image's report.md, boot section:\n\n${section.trim()}`);
}
