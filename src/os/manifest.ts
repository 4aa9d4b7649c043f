// The manifest of a built image: what is in it (packages with versions and sources, units), how big it is,
// and the digests of every artifact. It is also the input of the trimming report.

import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { ArchiveState } from "../pkg/archive-state.ts";
import { readRootPackages } from "../pkg/status.ts";
import { UnitTree } from "../system/units.ts";

export interface ManifestPackage {
  name: string;
  version: string;
  architecture: string;
  source: string;
  sourceVersion: string;
  /** Why the package is in the image: the chain from the profile, e.g. ["docker.io", "containerd", "runc"]. */
  why?: string[];
}

export interface Artifact {
  file: string;
  bytes: number;
  sha256: string;
}

export interface Manifest {
  berthVersion: string;
  /** The release version stamped into the image (YYYY.MM.N; berth os build --release-version). */
  releaseVersion?: string;
  profile: string;
  profileSha256: string;
  kernelVersion: string;
  sourceDateEpoch: number;
  archive: ArchiveState[];
  packages: ManifestPackage[];
  purgedPackages: string[];
  droppedModuleDirs: string[];
  defaultTarget: string;
  enabledServices: string[];
  serviceUnits: string[];
  /** Apparent size of every file in the root (what the image holds, uncompressed). */
  installedBytes: number;
  /** Size of the compressed root image. */
  compressedBytes: number;
  artifacts: Artifact[];
  buildSeconds: number;
  /** Seconds spent in each build phase (plan, mmdebstrap, customize, harden, initramfs, squashfs, disk). */
  phases: Record<string, number>;
  /** What `hardening:` in the profile did to the root (berth harden rules, applied at build time). */
  hardening?: import("../harden/offline.ts").OfflineHardening;
  /** dm-verity of the root image: the hash tree (root.verity), its place in a slot, the root hash. */
  verity?: import("./verity.ts").VerityInfo;
  /** What a node needs to install this release (docs/update.md). */
  update?: {
    bootOptions: string[];
    tries: number;
    images: string[];
    migrations: string[];
    minimumFrom?: string;
    repository?: string;
    trustedRootSha256?: string;
  };
  /** Bytes of kernel modules left out (kernel.dropModules), uncompressed. */
  droppedModuleBytes?: number;
  /** Bytes of Berth's own CLI and its Node.js runtime in the root. */
  berthRuntimeBytes?: number;
}

/** Sum of the apparent sizes of regular files and symlinks under `root` (hard links counted once). */
export async function treeBytes(root: string): Promise<number> {
  let total = 0;
  const seen = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const st = await lstat(p);
        const key = `${st.dev}:${st.ino}`;
        if (st.nlink > 1) {
          if (seen.has(key)) continue;
          seen.add(key);
        }
        total += st.size;
      }
    }
  };
  await walk(root);
  return total;
}

export async function inspectRoot(
  root: string,
): Promise<
  Pick<Manifest, "packages" | "defaultTarget" | "enabledServices" | "serviceUnits" | "installedBytes">
> {
  const pkgs = await readRootPackages(root);
  const units = new UnitTree(root);
  return {
    packages: pkgs
      .filter((p) => p.status === "installed")
      .map((p) => ({
        name: p.name,
        version: p.version,
        architecture: p.architecture,
        source: p.source,
        sourceVersion: p.sourceVersion,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    defaultTarget: units.defaultTarget(),
    enabledServices: units.enabledServices(),
    serviceUnits: units.serviceUnitFiles(),
    installedBytes: await treeBytes(root),
  };
}
