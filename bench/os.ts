// Berth OS benchmarks, each beside a baseline measured in the same run:
//  1. Build time with a warm cache: `berth os build` (root + configuration + squashfs + disk + report)
//     against mmdebstrap alone installing the same package set from the same warm package cache, and
//     against mmdebstrap followed by mksquashfs with the same compression (the bare "image" part).
//  2. Boot to ready (a container ran) of the default image against the general-purpose baseline image,
//     booted the same way (QEMU TCG, 1 vCPU, direct kernel boot).

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { squashfsArgs } from "../src/os/disk.ts";
import type { Manifest } from "../src/os/manifest.ts";
import { runImage } from "../src/os/qemu.ts";
import { printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const CACHE = process.env.BERTH_CACHE || "/var/cache/berth";
const work = await mkdtemp(join(tmpdir(), "berth-bench-os-"));

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr.slice(-800)}`);
  return (performance.now() - t0) / 1000;
}

try {
  // Warm the cache (and get the package set) with one build that is not timed.
  const warm = join(work, "warm");
  timed(BERTH, ["os", "build", "--out", warm, "--no-baseline", "-q"]);
  const m = JSON.parse(readFileSync(join(warm, "manifest.json"), "utf8")) as Manifest;

  const berthSeconds = timed(BERTH, ["os", "build", "--out", join(work, "timed"), "--no-baseline", "-q"]);

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
    `--include=${names.filter((n) => !n.startsWith("berth")).join(",")}`,
    "--skip=download/empty",
    `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp ${debs}/*.deb "$1/var/cache/apt/archives/"`,
    "trixie",
    root,
    ...m.archive.map((a) => `deb ${a.uri} ${a.suite} main`),
  ];
  const mmSeconds = timed("mmdebstrap", mm);
  const sq = join(work, "mm.squashfs");
  const sqSeconds = timed("mksquashfs", [root, sq, ...squashfsArgs("xz", m.sourceDateEpoch)]);
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
      peerName: "mmdebstrap + mksquashfs (same compression)",
      unit: "s",
      higherIsBetter: false,
    },
  ]);
  console.log(
    `\nberth phases (s): ${JSON.stringify(JSON.parse(readFileSync(join(work, "timed", "manifest.json"), "utf8")).phases)}; mmdebstrap root: ${statSync(sq).size} bytes compressed`,
  );

  // Boot to ready: default vs the cached baseline of this archive state.
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
  const boot = async (image: string) => {
    // A boot that fails for an emulator fault (TCG occasionally oopses early) is retried once, and said.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await runImage({ image, check: true, timeoutSeconds: 600 });
      if (r.ok) return r.readySeconds!;
      console.log(`  (boot of ${image} failed: ${r.reason}; attempt ${attempt})`);
    }
    throw new Error(`${image} did not become ready`);
  };
  const berthBoot = await boot(join(work, "timed"));
  const baseBoot = await boot(baseline);
  printTable("Boot to a running container (QEMU TCG, 1 vCPU, direct kernel boot)", [
    {
      metric: "boot to ready",
      berth: berthBoot,
      peer: baseBoot,
      peerName: "general-purpose baseline (stock trixie standard + Docker)",
      unit: "s",
      higherIsBetter: false,
    },
  ]);
} finally {
  spawnSync("rm", ["-rf", "--one-file-system", work]);
  await rm(work, { recursive: true, force: true });
}
