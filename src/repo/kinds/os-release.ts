// `os-release` targets: a `berth os build` output directory published as one release. Each file a node
// needs becomes a target os/<version>/<file>, and os/<version>/release.json names them all with their
// lengths and hashes; its signed custom field carries the same list plus the release's version, kernel,
// profile and rollout waves. To carry more (dm-verity root hash, pinned images, migrations), add fields
// to OsReleaseCustom and fill them in describeOsRelease: clients read release.custom.
//
// Which files: the four every release has (REQUIRED_FILES), every artifact the manifest lists except
// the installer disk, and any extra file named with --file.

import { existsSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BerthError, UsageError } from "../../common/errors.ts";
import { sha256File } from "../../common/hash.ts";
import type { NewTarget } from "../targets.ts";

export const REQUIRED_FILES = ["root.squashfs", "vmlinuz", "initrd.img", "manifest.json"];
/** Build outputs a node never downloads. */
export const NOT_PUBLISHED = new Set(["disk.img", "report.md", "profile.yaml"]);

/** A rollout wave: from `start` on, nodes whose seed falls in the first `percent` of the fleet may update. */
export interface Wave {
  start: string;
  percent: number;
}

export interface OsReleaseFile {
  target: string;
  length: number;
  sha256: string;
}

/** The custom field of os/<version>/release.json. */
export interface OsReleaseCustom {
  kind: "os-release";
  member: "release";
  version: string;
  profile?: string;
  kernelVersion?: string;
  berthVersion?: string;
  sourceDateEpoch?: number;
  /** File name in the build output -> its target. */
  files: Record<string, OsReleaseFile>;
  waves: Wave[];
  /** dm-verity of the root image (from the manifest): the root hash goes on the node's boot entry. */
  verity?: OsReleaseVerity;
  /** What a node needs to install the release: boot options, tries, pinned images, migration path. */
  update?: OsReleaseUpdate;
  [k: string]: unknown;
}

export interface OsReleaseVerity {
  rootHash: string;
  hashOffset: number;
  dataBytes: number;
  hashBytes: number;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  salt: string;
}

export interface OsReleaseUpdate {
  bootOptions: string[];
  tries: number;
  /** Image targets (manifest digests) the release pins; nodes load them with the update. */
  images: string[];
  migrations: string[];
  /** The oldest release this one may be applied on. */
  minimumFrom?: string;
}

/** The custom field of each file of a release. */
export interface OsReleaseMemberCustom {
  kind: "os-release";
  /** The file's name in the build output (root.squashfs, vmlinuz, ...). */
  member: string;
  version: string;
  /** The release.json target that names this file. */
  release: string;
  [k: string]: unknown;
}

const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$/;
const FILE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** Parses --wave START=PERCENT values; waves must open in time order with growing percentages. */
export function parseWaves(specs: readonly string[]): Wave[] {
  const waves = specs.map((s) => {
    const eq = s.lastIndexOf("=");
    const start = s.slice(0, eq);
    const percent = Number(s.slice(eq + 1));
    if (eq < 0 || Number.isNaN(Date.parse(start)) || !(percent > 0 && percent <= 100))
      throw new UsageError(`--wave wants TIME=PERCENT (e.g. 2026-12-01T00:00:00Z=10), not "${s}"`);
    return { start: new Date(start).toISOString().replace(/\.000Z$/, "Z"), percent };
  });
  for (let i = 1; i < waves.length; i++)
    if (
      Date.parse(waves[i]!.start) <= Date.parse(waves[i - 1]!.start) ||
      waves[i]!.percent <= waves[i - 1]!.percent
    )
      throw new UsageError("waves must open one after another, each to a larger share of the fleet");
  return waves;
}

/**
 * The share of the fleet a release is open to at `now` (0 before its first wave opens; 100 when it has
 * no waves).
 */
export function openPercent(waves: readonly Wave[], now: Date = new Date()): number {
  if (!waves.length) return 100;
  let open = 0;
  for (const w of waves) if (Date.parse(w.start) <= now.getTime()) open = w.percent;
  return open;
}

interface ManifestLike {
  releaseVersion?: string;
  version?: string;
  profile?: string;
  kernelVersion?: string;
  berthVersion?: string;
  sourceDateEpoch?: number;
  artifacts?: { file: string; bytes: number; sha256: string }[];
  verity?: OsReleaseVerity & Record<string, unknown>;
  update?: Partial<OsReleaseUpdate> & Record<string, unknown>;
}

export interface OsReleaseOptions {
  version?: string;
  waves?: Wave[];
  /** More files of the output directory to publish. */
  files?: string[];
  /** A directory for release.json before it is staged. */
  work: string;
}

function verityOf(v: OsReleaseVerity): OsReleaseVerity {
  const { rootHash, hashOffset, dataBytes, hashBytes, algorithm, dataBlockSize, hashBlockSize, salt } = v;
  return { rootHash, hashOffset, dataBytes, hashBytes, algorithm, dataBlockSize, hashBlockSize, salt };
}

function updateOf(u: Partial<OsReleaseUpdate>): OsReleaseUpdate {
  return {
    bootOptions: u.bootOptions ?? [],
    tries: u.tries ?? 3,
    images: u.images ?? [],
    migrations: u.migrations ?? [],
    ...(u.minimumFrom ? { minimumFrom: u.minimumFrom } : {}),
  };
}

export async function describeOsRelease(outDir: string, o: OsReleaseOptions): Promise<NewTarget[]> {
  const manifestPath = join(outDir, "manifest.json");
  let manifest: ManifestLike;
  try {
    manifest = JSON.parse(await readFile(manifestPath, "utf8")) as ManifestLike;
  } catch (e) {
    throw new BerthError(
      `${outDir} is not a berth os build output (manifest.json: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  const version = o.version ?? manifest.releaseVersion ?? manifest.version;
  if (!version)
    throw new UsageError(`${outDir}: the manifest has no release version; give --release VERSION`);
  if (!VERSION.test(version)) throw new UsageError(`"${version}" is not a release version (e.g. 2026.12.1)`);
  const names = new Set(REQUIRED_FILES);
  for (const a of manifest.artifacts ?? []) if (!NOT_PUBLISHED.has(a.file)) names.add(a.file);
  for (const f of o.files ?? []) names.add(f);
  const release = `os/${version}/release.json`;
  const files: OsReleaseCustom["files"] = {};
  const out: NewTarget[] = [];
  for (const name of [...names].sort()) {
    if (!FILE.test(name)) throw new UsageError(`"${name}" is not a file name of the build output`);
    const path = join(outDir, name);
    if (!existsSync(path) || !statSync(path).isFile())
      throw new BerthError(`${outDir} has no ${name}; is the build complete?`);
    const sha256 = await sha256File(path);
    const recorded = manifest.artifacts?.find((a) => a.file === name);
    if (recorded && recorded.sha256 !== sha256)
      throw new BerthError(`${path} does not match the SHA-256 its manifest records; rebuild or recopy it`);
    const target = `os/${version}/${name}`;
    files[name] = { target, length: statSync(path).size, sha256 };
    const custom: OsReleaseMemberCustom = { kind: "os-release", member: name, version, release };
    out.push({ name: target, file: path, custom });
  }
  const custom: OsReleaseCustom = {
    kind: "os-release",
    member: "release",
    version,
    ...(manifest.profile ? { profile: manifest.profile } : {}),
    ...(manifest.kernelVersion ? { kernelVersion: manifest.kernelVersion } : {}),
    ...(manifest.berthVersion ? { berthVersion: manifest.berthVersion } : {}),
    ...(manifest.sourceDateEpoch !== undefined ? { sourceDateEpoch: manifest.sourceDateEpoch } : {}),
    files,
    waves: o.waves ?? [],
    ...(manifest.verity ? { verity: verityOf(manifest.verity) } : {}),
    ...(manifest.update ? { update: updateOf(manifest.update) } : {}),
  };
  const releaseFile = join(o.work, `release-${version}.json`);
  await writeFile(releaseFile, `${JSON.stringify(custom, null, 2)}\n`);
  out.push({ name: release, file: releaseFile, custom });
  return out;
}
