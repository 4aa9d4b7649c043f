// A release to compare: a `berth os build` output directory (manifest.json lists the packages and the
// release version) or an OCI layout of a Berth image (its dpkg database, read by src/scan, and the
// manifest digest). Reads only.

import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { BerthError, UsageError } from "../common/errors.ts";
import type { Manifest } from "../os/manifest.ts";
import { scanOciLayout } from "../scan/layers.ts";

export interface ReleasePackage {
  name: string;
  version: string;
  source: string;
  sourceVersion: string;
}

export interface Release {
  kind: "os" | "image";
  path: string;
  /** Berth release version (os) or the image's reference name, when known. */
  version?: string;
  /** The image's manifest digest (image), or the root image's sha256 (os). */
  digest?: string;
  /** The Debian codename the packages come from. */
  codename?: string;
  packages: ReleasePackage[];
}

function indexDigest(dir: string): { digest?: string; ref?: string } {
  try {
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as {
      manifests?: { digest?: string; annotations?: Record<string, string> }[];
    };
    const m = index.manifests?.[0];
    return { digest: m?.digest, ref: m?.annotations?.["org.opencontainers.image.ref.name"] };
  } catch {
    return {};
  }
}

export async function readRelease(path: string): Promise<Release> {
  const dir = resolve(path);
  if (existsSync(join(dir, "manifest.json")) && existsSync(join(dir, "root.squashfs"))) {
    let m: Manifest;
    try {
      m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
    } catch (e) {
      throw new BerthError(`${dir}/manifest.json: not JSON (${(e as Error).message.split("\n")[0]})`);
    }
    if (!Array.isArray(m.packages)) throw new BerthError(`${dir}/manifest.json: no package list`);
    const root = m.artifacts?.find((a) => a.file === "root.squashfs");
    return {
      kind: "os",
      path: dir,
      version: m.releaseVersion,
      digest: root ? `sha256:${root.sha256}` : undefined,
      codename: m.archive?.find((a) => a.codename)?.codename?.replace(/-.*$/, ""),
      packages: m.packages.map(({ name, version, source, sourceVersion }) => ({
        name,
        version,
        source,
        sourceVersion,
      })),
    };
  }
  if (existsSync(join(dir, "index.json"))) {
    const r = await scanOciLayout(dir);
    const { digest, ref } = indexDigest(dir);
    return {
      kind: "image",
      path: dir,
      version: ref,
      digest,
      codename: r.os?.codename,
      packages: r.packages
        .filter((p) => p.status === "installed")
        .map(({ name, version, source, sourceVersion }) => ({ name, version, source, sourceVersion })),
    };
  }
  throw new UsageError(`${path}: neither a berth os build output directory nor an OCI layout`);
}
