// The trimming report: the image beside the general-purpose baseline built from the same archive, in the
// form of the original claim (packages 3723 -> 376, services 254 -> 143, image 4.31 GB -> 770 MB), and
// for every package of the image, the chain from the profile that put it there.

import { formatBytes } from "../cli/output.ts";
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
  /** berth harden at build time: profile, score before and after, rules applied. */
  hardening?: Manifest["hardening"];
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

export function makeReport(image: Manifest, baseline: Manifest | undefined, now = new Date()): Report {
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
    ...(image.hardening ? { hardening: image.hardening } : {}),
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
  if (r.hardening)
    lines.push(
      `Hardened at build time (berth harden, profile ${r.hardening.profile}): score ${r.hardening.scoreBefore} -> ${r.hardening.scoreAfter}, ${r.hardening.applied.length} rules fixed in ${r.hardening.files.length} files${r.hardening.refused.length ? `; refused: ${r.hardening.refused.map((x) => x.id).join(", ")}` : ""}.`,
      "",
    );
  lines.push("## Why each package is in the image", "", "| package | pulled in by |", "|---|---|");
  for (const [name, chain] of Object.entries(r.why).sort(([a], [b]) => (a < b ? -1 : 1)))
    lines.push(`| ${name} | ${chain.length ? chain.join(" → ") : "—"} |`);
  return `${lines.join("\n")}\n`;
}
