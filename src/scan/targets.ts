// Turning a scan target into an inventory: the live host, an offline root directory, an OCI layout,
// a `docker save` archive, an image in the local Docker engine (through its API socket), or a Berth OS
// image (its squashfs root, read with unsquashfs). Reads only; never writes outside Berth's cache.

import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { docker } from "../common/docker.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { parseStatusText, readRootPackages } from "../pkg/status.ts";
import { type Inventory, installedKernels, type KernelInfo, parseOsRelease } from "./inventory.ts";
import { upstreamVersion } from "./kernel-match.ts";
import { scanDockerArchive, scanOciLayout } from "./layers.ts";

function osOfRoot(root: string) {
  for (const p of ["etc/os-release", "usr/lib/os-release"]) {
    try {
      return parseOsRelease(readFileSync(join(root, p), "utf8"));
    } catch {}
  }
  return undefined;
}

/**
 * A running kernel from `uname -r` and `uname -v`: its upstream version, and its Debian package when
 * it is one (a Debian kernel says "Debian 6.1.112-1" in uname -v; its release names linux-image-*).
 */
export function kernelFromUname(
  release: string,
  build: string,
  packages: { name: string; version: string; status: string }[],
): KernelInfo {
  const pkg =
    packages.find((p) => p.name === `linux-image-${release}` && p.status === "installed") ??
    packages.find((p) => p.name === `linux-image-${release}-unsigned` && p.status === "installed");
  const debianVersion = /Debian (\S+)/.exec(build)?.[1];
  return {
    release,
    upstream: upstreamVersion(pkg?.version ?? debianVersion ?? release),
    package: pkg?.name ?? (debianVersion ? `linux-image-${release}` : undefined),
    packageVersion: pkg?.version ?? debianVersion,
    running: true,
  };
}

export function runningKernel(packages: { name: string; version: string; status: string }[]): KernelInfo {
  return kernelFromUname(
    readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    readFileSync("/proc/sys/kernel/version", "utf8").trim(),
    packages,
  );
}

export async function scanRoot(root: string, kind: "host" | "rootfs" = "rootfs"): Promise<Inventory> {
  const packages = await readRootPackages(root);
  const kernels = installedKernels(packages);
  if (kind === "host") {
    const running = runningKernel(packages);
    const same = kernels.find((k) => k.package && k.package === running.package);
    if (same) same.running = true;
    else kernels.push(running);
  }
  return { target: kind === "host" ? "host" : root, kind, os: osOfRoot(root), packages, kernels };
}

function fromLayers(
  target: string,
  kind: Inventory["kind"],
  r: Awaited<ReturnType<typeof scanOciLayout>>,
): Inventory {
  return {
    target,
    kind,
    os: r.os,
    packages: r.packages,
    layers: r.layers,
    kernels: installedKernels(r.packages),
  };
}

async function scanBerthImage(dir: string): Promise<Inventory> {
  const image = join(dir, "root.squashfs");
  const cat = async (p: string) => {
    const r = await run("unsquashfs", ["-cat", image, p], { keep: 256 * 1024 * 1024 });
    return r.code === 0 ? r.stdout : undefined;
  };
  const status = await cat("var/lib/dpkg/status");
  if (status === undefined)
    throw new BerthError(`${image}: no var/lib/dpkg/status inside (is unsquashfs installed?)`);
  const packages = parseStatusText(status, `${image}:var/lib/dpkg/status`);
  const osText = (await cat("usr/lib/os-release")) ?? (await cat("etc/os-release"));
  return {
    target: dir,
    kind: "berth-image",
    os: osText ? parseOsRelease(osText) : undefined,
    packages,
    kernels: installedKernels(packages),
  };
}

/**
 * TARGET: "host"; "docker:IMAGE"; a directory (a root file system, an OCI layout or a Berth OS image
 * output directory); or a file (a docker save archive, or a Berth root.squashfs's directory).
 */
export async function inventoryOf(target: string): Promise<Inventory> {
  if (target === "host") return scanRoot("/", "host");
  if (target.startsWith("docker:")) {
    const name = target.slice(7);
    if (!name) throw new UsageError("docker: needs an image name, e.g. docker:debian:trixie");
    const stream = await docker.saveImage(name);
    return fromLayers(target, "docker", await scanDockerArchive(stream, target));
  }
  const path = resolve(target);
  if (!existsSync(path))
    throw new UsageError(`no such target: ${target} (use host, docker:IMAGE, a directory or an archive)`);
  const st = statSync(path);
  if (st.isDirectory()) {
    if (existsSync(join(path, "root.squashfs"))) return scanBerthImage(path);
    if (existsSync(join(path, "oci-layout")) || existsSync(join(path, "index.json")))
      return fromLayers(path, "oci-layout", await scanOciLayout(path));
    if (existsSync(join(path, "var/lib/dpkg"))) return scanRoot(path);
    throw new UsageError(
      `${target}: neither a root file system (var/lib/dpkg), an OCI layout (index.json) nor a Berth image (root.squashfs)`,
    );
  }
  return fromLayers(path, "docker-archive", await scanDockerArchive(createReadStream(path), path));
}

/** uname -a of this machine, for reports. */
export function hostKernelLine(): string {
  try {
    return execFileSync("uname", ["-srv"], { encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}
