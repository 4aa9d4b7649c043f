// `--target`: the live host, an offline root directory, an image (image:NAME) or a running
// container (container:ID), turned into the facts the rules read.

import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { docker } from "../common/docker.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { AdvisoryDb, defaultDbPath } from "../db/database.ts";
import { installedKernels } from "../scan/inventory.ts";
import { matchInventory } from "../scan/match.ts";
import { runningKernel } from "../scan/targets.ts";
import { exportImageFiles } from "./docker.ts";
import { Facts } from "./facts.ts";

export interface OpenTarget {
  facts: Facts;
  /** Removes temporary files (an image's exported /etc). */
  close: () => void;
}

export async function openTarget(spec: string, o: { db?: string } = {}): Promise<OpenTarget> {
  if (spec === "host") {
    const facts = new Facts({ kind: "host", label: "host", root: "/" });
    facts.containers = await docker.runningContainers();
    facts.kernelVulns = kernelVulns(facts, o.db);
    return { facts, close: () => {} };
  }
  if (spec.startsWith("image:")) {
    const name = spec.slice(6);
    if (!name) throw new UsageError("image: needs an image name, e.g. image:debian:trixie");
    const image = await docker.inspectImage(name);
    const dir = mkdtempSync(join(tmpdir(), "berth-harden-image-"));
    const close = () => rmSync(dir, { recursive: true, force: true });
    try {
      const facts = new Facts({ kind: "image", label: `image ${name}`, root: dir, image });
      facts.walkResult = await exportImageFiles(name, dir, () => ({
        users: new Set(facts.passwd().map((p) => p.uid)),
        groups: new Set(facts.groups().map((g) => g.gid)),
      }));
      return { facts, close };
    } catch (e) {
      close();
      throw e;
    }
  }
  if (spec.startsWith("container:")) {
    const id = spec.slice(10);
    if (!id) throw new UsageError("container: needs a container name or ID");
    const container = await docker.inspectContainer(id);
    return {
      facts: new Facts({
        kind: "container",
        label: `container ${container.Name.replace(/^\//, "")}`,
        root: "",
        container,
      }),
      close: () => {},
    };
  }
  const root = resolve(spec);
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw new UsageError(`--target: ${spec} is not host, a directory, image:NAME or container:ID`);
  if (!existsSync(join(root, "etc")) && existsSync(join(root, "root.squashfs")))
    return openBerthImage(root, o);
  if (!existsSync(join(root, "etc")))
    throw new BerthError(`${root} does not look like a root file system (no etc/)`);
  const facts = new Facts({ kind: "root", label: root, root });
  facts.kernelVulns = kernelVulns(facts, o.db);
  return { facts, close: () => {} };
}

/**
 * A `berth os build` output directory: its read-only root, unpacked with unsquashfs (owners, modes and
 * set-ID bits kept) into a temporary directory that goes away with the target.
 */
async function openBerthImage(dir: string, o: { db?: string }): Promise<OpenTarget> {
  const tmp = mkdtempSync(join(tmpdir(), "berth-harden-os-"));
  const close = () => rmSync(tmp, { recursive: true, force: true });
  try {
    const r = await run("unsquashfs", [
      "-quiet",
      "-no-progress",
      "-no-xattrs",
      "-d",
      join(tmp, "root"),
      join(dir, "root.squashfs"),
    ]);
    if (r.code !== 0)
      throw new BerthError(`cannot unpack ${dir}/root.squashfs: ${r.stderr.trim().split("\n").pop()}`);
    const facts = new Facts({ kind: "root", label: `berth image ${dir}`, root: join(tmp, "root") });
    facts.readOnlyImage = true;
    facts.kernelVulns = kernelVulns(facts, o.db);
    return { facts, close };
  } catch (e) {
    close();
    throw e;
  }
}

/** Kernel findings through the scanner, when an advisory database is there to ask. */
function kernelVulns(f: Facts, dbPath = defaultDbPath()): Facts["kernelVulns"] {
  if (!existsSync(dbPath)) return undefined;
  const packages = f.packages();
  const kernels = f.live ? [runningKernel(packages)] : installedKernels(packages);
  const db = new AdvisoryDb(dbPath, { readOnly: true });
  try {
    const findings = matchInventory(db, { target: f.label, kind: "kernel", packages: [], kernels });
    return {
      kernels: kernels.map((k) => k.release),
      findings: findings.map((x) => ({ id: x.vulnId, severity: x.severity, fixed: x.fixedVersion })),
    };
  } finally {
    db.close();
  }
}
