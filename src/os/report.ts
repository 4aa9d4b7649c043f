// The trimming report: the image beside the general-purpose baseline built from the same archive, in the
// form of the original claim (packages 3723 -> 376, services 254 -> 143, image 4.31 GB -> 770 MB), and
// for every package of the image, the chain from the profile that put it there.

import { formatBytes } from "../common/format.ts";
import type { BootRecord } from "./boot-record.ts";
import type { Manifest } from "./manifest.ts";

export interface Figures {
  profile: string;
  packages: number;
  enabledServices: number;
  serviceUnits: number;
  installedBytes: number;
  compressedBytes: number;
}

export interface Report {
  generated: string;
  archive: Manifest["archive"];
  image: Figures;
  baseline?: Figures;
  /** baseline / image for each figure (how many times smaller the image is). */
  ratios?: Record<keyof Omit<Figures, "profile">, number>;
  claim: string;
  purgedPackages: string[];
  /** Kernel module directories left out (kernel.dropModules) and the bytes they held. */
  droppedModules?: { dirs: string[]; bytes: number };
  /** Bytes of Berth's own CLI and Node.js in the root (they make room for themselves with the cuts). */
  berthRuntimeBytes?: number;
  /** berth harden at build time: profile, score before and after, rules applied. */
  hardening?: Manifest["hardening"];
  /** Checked boots (berth os run --check --analyze) of the image and of the baseline, where recorded. */
  boot?: { image?: BootRecord; baseline?: BootRecord };
  why: Record<string, string[]>;
}

export function figuresOf(m: Manifest): Figures {
  return {
    profile: m.profile,
    packages: m.packages.length,
    enabledServices: m.enabledServices.length,
    serviceUnits: m.serviceUnits.length,
    installedBytes: m.installedBytes,
    compressedBytes: m.compressedBytes,
  };
}

const KEYS = ["packages", "enabledServices", "serviceUnits", "installedBytes", "compressedBytes"] as const;

export function makeReport(
  image: Manifest,
  baseline: Manifest | undefined,
  now = new Date(),
  boot: Report["boot"] = {},
): Report {
  const img = figuresOf(image);
  const base = baseline ? figuresOf(baseline) : undefined;
  const ratios = base
    ? (Object.fromEntries(
        KEYS.map((k) => [k, img[k] ? Number((base[k] / img[k]).toFixed(2)) : 0]),
      ) as Report["ratios"])
    : undefined;
  const claim = base
    ? `packages ${base.packages} -> ${img.packages}, services ${base.enabledServices} -> ${img.enabledServices}, image ${formatBytes(base.compressedBytes)} -> ${formatBytes(img.compressedBytes)}`
    : `packages ${img.packages}, services ${img.enabledServices}, image ${formatBytes(img.compressedBytes)} (no baseline)`;
  return {
    generated: now.toISOString(),
    archive: image.archive,
    image: img,
    baseline: base,
    ratios,
    claim,
    purgedPackages: image.purgedPackages,
    ...(image.droppedModuleDirs.length
      ? { droppedModules: { dirs: image.droppedModuleDirs, bytes: image.droppedModuleBytes ?? 0 } }
      : {}),
    ...(image.berthRuntimeBytes ? { berthRuntimeBytes: image.berthRuntimeBytes } : {}),
    ...(image.hardening ? { hardening: image.hardening } : {}),
    ...(boot.image || boot.baseline ? { boot } : {}),
    why: Object.fromEntries(image.packages.map((p) => [p.name, p.why ?? []])),
  };
}

export function reportMarkdown(r: Report): string {
  const row = (label: string, k: (typeof KEYS)[number], fmt: (n: number) => string) => {
    const b = r.baseline ? fmt(r.baseline[k]) : "—";
    const ratio = r.ratios ? `${r.ratios[k]}x smaller` : "";
    return `| ${label} | ${b} | ${fmt(r.image[k])} | ${ratio} |`;
  };
  const n = (x: number) => String(x);
  const lines = [
    `# Berth OS image report: ${r.image.profile}`,
    "",
    `**${r.claim}**`,
    "",
    `Archive: ${r.archive.map((a) => `${a.suite} (${a.codename ?? ""} ${a.version ?? ""}, ${a.date ?? "?"})`).join(", ")}`,
    "",
    `| | ${r.baseline ? `${r.baseline.profile} (stock)` : "baseline"} | ${r.image.profile} | |`,
    "|---|---|---|---|",
    row("packages", "packages", n),
    row("services enabled for the default target", "enabledServices", n),
    row("service units present", "serviceUnits", n),
    row("installed size (root tree)", "installedBytes", formatBytes),
    row("compressed root image", "compressedBytes", formatBytes),
    "",
  ];
  if (r.purgedPackages.length)
    lines.push(
      `Purged after configuration (only maintainer scripts use them): ${r.purgedPackages.join(", ")}.`,
      "",
    );
  if (r.droppedModules)
    lines.push(
      `Kernel modules left out (hardware and file systems no VM or server of this kind has): ${r.droppedModules.dirs.length} directories, ${formatBytes(r.droppedModules.bytes)} as shipped — ${r.droppedModules.dirs.join(", ")}.`,
      "",
    );
  if (r.berthRuntimeBytes)
    lines.push(
      `Berth's own CLI and its Node.js 24 runtime (so a node runs \`berth update\`): ${formatBytes(r.berthRuntimeBytes)} uncompressed.`,
      "",
    );
  if (r.hardening)
    lines.push(
      `Hardened at build time (berth harden, profile ${r.hardening.profile}): score ${r.hardening.scoreBefore} -> ${r.hardening.scoreAfter}, ${r.hardening.applied.length} rules fixed in ${r.hardening.files.length} files${r.hardening.refused.length ? `; refused: ${r.hardening.refused.map((x) => x.id).join(", ")}` : ""}.`,
      "",
    );
  if (r.boot) lines.push(...bootMarkdown(r));
  lines.push("## Why each package is in the image", "", "| package | pulled in by |", "|---|---|");
  for (const [name, chain] of Object.entries(r.why).sort(([a], [b]) => (a < b ? -1 : 1)))
    lines.push(`| ${name} | ${chain.length ? chain.join(" → ") : "—"} |`);
  return `${lines.join("\n")}\n`;
}

/** Boot to a running container, and systemd's critical chain to the self-test, for each side booted. */
function bootMarkdown(r: Report): string[] {
  const sides = [
    [r.baseline?.profile ?? "baseline", r.boot?.baseline],
    [r.image.profile, r.boot?.image],
  ] as const;
  const lines = ["## Boot to a running container", ""];
  for (const [name, b] of sides) {
    if (!b) continue;
    lines.push(
      `**${name}**: ${b.readySeconds} s to a container (${b.machine}; guest uptime ${b.guestUptime ?? "?"} s; ${b.date.slice(0, 10)}).`,
      "",
    );
    if (b.analysis?.criticalChain.length)
      lines.push("Critical chain (systemd-analyze):", "", "```", ...b.analysis.criticalChain, "```", "");
    if (b.analysis?.blame.length)
      lines.push("Slowest units:", "", "```", ...b.analysis.blame.slice(0, 10), "```", "");
  }
  return lines;
}
