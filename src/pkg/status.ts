// Reads dpkg's package database: a `status` file, or a `status.d/` directory of one file per package
// (the layout distroless images use, where there is no Status field and every entry is installed).

import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { Deb822SyntaxError, parseDeb822, type Stanza, streamDeb822 } from "./deb822.ts";

export interface InstalledPackage {
  name: string;
  version: string;
  architecture: string;
  /** The third word of the Status field: installed, config-files, half-configured, ... */
  status: string;
  /** ${source:Package}: the Source field's name, or the package's own name. */
  source: string;
  /** ${source:Version}: the version in the Source field's parentheses, or the package's version. */
  sourceVersion: string;
  /** The first word of the Status field (install, hold, deinstall, purge). */
  want: string;
  multiArch?: string;
  essential?: boolean;
  installedSizeKiB?: number;
}

const STATUS_FIELDS = new Set([
  "Package",
  "Version",
  "Architecture",
  "Status",
  "Source",
  "Multi-Arch",
  "Essential",
  "Installed-Size",
]);

/** Splits "name (version)" as dpkg stores it in the Source field. */
export function parseSourceField(source: string | undefined): { name?: string; version?: string } {
  if (!source) return {};
  const m = /^(\S+)(?:\s*\(\s*([^)\s]+)\s*\))?\s*$/.exec(source.trim());
  if (!m) return {};
  return { name: m[1], version: m[2] };
}

/** Turns one status stanza into a package record; undefined for stanzas dpkg-query would not list. */
export function packageFromStanza(s: Stanza, origin?: string): InstalledPackage | undefined {
  const name = s.Package;
  if (!name) throw new BerthError(`${origin ?? "status"}: a stanza has no Package field`);
  const statusWords = s.Status ? s.Status.split(/\s+/) : ["install", "ok", "installed"];
  if (statusWords.length !== 3)
    throw new BerthError(`${origin ?? "status"}: package ${name}: malformed Status "${s.Status}"`);
  const state = statusWords[2]!;
  if (state === "not-installed") return undefined;
  const version = s.Version ?? "";
  const src = parseSourceField(s.Source);
  const pkg: InstalledPackage = {
    name,
    version,
    architecture: s.Architecture ?? "",
    status: state,
    source: src.name ?? name,
    sourceVersion: src.version ?? version,
    want: statusWords[0]!,
  };
  if (s["Multi-Arch"]) pkg.multiArch = s["Multi-Arch"];
  if (s.Essential === "yes") pkg.essential = true;
  if (s["Installed-Size"] && /^\d+$/.test(s["Installed-Size"]))
    pkg.installedSizeKiB = Number(s["Installed-Size"]);
  return pkg;
}

/** Parses status data already in memory (from an image layer, say). */
export function parseStatusText(text: string, origin = "status"): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  try {
    for (const s of parseDeb822(text, { fields: STATUS_FIELDS, source: origin })) {
      const p = packageFromStanza(s, origin);
      if (p) out.push(p);
    }
  } catch (e) {
    if (e instanceof Deb822SyntaxError) throw new BerthError(`malformed dpkg status: ${e.message}`);
    throw e;
  }
  return out;
}

async function readStatusFile(path: string): Promise<InstalledPackage[]> {
  const out: InstalledPackage[] = [];
  try {
    for await (const s of streamDeb822(createReadStream(path), { fields: STATUS_FIELDS, source: path })) {
      const p = packageFromStanza(s, path);
      if (p) out.push(p);
    }
  } catch (e) {
    if (e instanceof Deb822SyntaxError) throw new BerthError(`malformed dpkg status: ${e.message}`);
    throw e;
  }
  return out;
}

/** Files in status.d that are not package entries. */
const isStatusDEntry = (f: string) => !f.startsWith(".") && !/\.(md5sums|list|conffiles)$/.test(f);

async function readStatusDir(dir: string): Promise<InstalledPackage[]> {
  const files = (await readdir(dir)).filter(isStatusDEntry).sort();
  const out: InstalledPackage[] = [];
  for (const f of files) {
    const path = join(dir, f);
    if (!(await stat(path)).isFile()) continue;
    out.push(...parseStatusText(await readFile(path, "utf8"), path));
  }
  return out;
}

/** Reads a status file or a status.d directory. */
export async function readStatus(path: string): Promise<InstalledPackage[]> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch {
    throw new BerthError(`no dpkg status at ${path}`);
  }
  return st.isDirectory() ? readStatusDir(path) : readStatusFile(path);
}

/**
 * The installed packages of a root file system: var/lib/dpkg/status plus var/lib/dpkg/status.d/
 * (either may be missing, not both).
 */
export async function readRootPackages(root: string): Promise<InstalledPackage[]> {
  const file = join(root, "var/lib/dpkg/status");
  const dir = join(root, "var/lib/dpkg/status.d");
  const has = async (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  const [hasFile, hasDir] = [await has(file), await has(dir)];
  if (!hasFile && !hasDir)
    throw new BerthError(`${root} has no dpkg database (var/lib/dpkg/status or status.d)`);
  const out: InstalledPackage[] = [];
  if (hasFile) out.push(...(await readStatusFile(file)));
  if (hasDir) out.push(...(await readStatusDir(dir)));
  return out;
}
