// What a scan looks at: the packages of a target (with the image layer each came from), its OS release,
// and its kernels. Built by the target readers in targets.ts; matched by match.ts.

import type { InstalledPackage } from "../pkg/status.ts";

export interface LayerRef {
  index: number;
  /** sha256 of the uncompressed layer tar (the image config's diff_id), when known. */
  diffId?: string;
  /** The blob digest in the archive or layout. */
  digest?: string;
  createdBy?: string;
}

export interface OsRelease {
  id: string;
  versionId?: string;
  codename?: string;
  prettyName?: string;
}

export interface KernelInfo {
  /** uname -r style release, or the linux-image package's ABI name. */
  release: string;
  /** Upstream kernel version, e.g. 6.12.118. */
  upstream?: string;
  /** The linux-image-* package, when the kernel is a Debian package. */
  package?: string;
  packageVersion?: string;
  running: boolean;
}

export type InventoryPackage = InstalledPackage & { layer?: LayerRef };

export interface Inventory {
  target: string;
  kind: "host" | "rootfs" | "oci-layout" | "docker-archive" | "docker" | "berth-image" | "kernel";
  os?: OsRelease;
  packages: InventoryPackage[];
  layers?: LayerRef[];
  kernels: KernelInfo[];
}

export function parseOsRelease(text: string): OsRelease | undefined {
  const f: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) f[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
  }
  if (!f.ID) return undefined;
  let codename = f.VERSION_CODENAME;
  // Debian testing/sid leave VERSION_CODENAME unset in some images; the version string carries it.
  if (!codename && f.VERSION) codename = /\(([a-z]+)\)/.exec(f.VERSION)?.[1];
  return { id: f.ID, versionId: f.VERSION_ID, codename, prettyName: f.PRETTY_NAME };
}

/** Kernel images are linux-image-<version>-<flavour>; metapackages and headers are not kernels. */
export const isKernelImage = (name: string) => /^linux-image-\d/.test(name);

/** The kernels installed as packages (not the running one). */
export function installedKernels(packages: InstalledPackage[]): KernelInfo[] {
  return packages
    .filter((p) => isKernelImage(p.name) && p.status === "installed")
    .map((p) => ({
      release: p.name.replace(/^linux-image-/, "").replace(/-unsigned$/, ""),
      upstream: /^(\d+\.\d+(?:\.\d+)?)/.exec(p.version.replace(/^\d+:/, ""))?.[1],
      package: p.name,
      packageVersion: p.version,
      running: false,
    }));
}
