// Where Berth gets Debian packages from: mirror URLs, suites, components, architecture and keyring.
// Defaults come from this machine's apt sources so Berth uses the same (possibly local) mirror as apt.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { UsageError } from "../common/errors.ts";
import { parseDeb822 } from "./deb822.ts";

export interface SourcesConfig {
  mirror: string;
  securityMirror: string;
  suites: string[];
  components: string[];
  architecture: string;
  keyring: string;
}

/** One apt repository: a mirror, one suite, some components. */
export interface Repository {
  uri: string;
  suite: string;
  components: string[];
  architecture: string;
  keyring: string;
}

export const DEFAULT_MIRROR = "http://deb.debian.org/debian";
export const DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security";
export const DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

interface AptEntry {
  uri: string;
  suites: string[];
}

/** The deb entries of an apt configuration directory (one-line .list and deb822 .sources files). */
export function readAptEntries(etcApt = "/etc/apt"): AptEntry[] {
  const entries: AptEntry[] = [];
  const files: string[] = [join(etcApt, "sources.list")];
  try {
    for (const f of readdirSync(join(etcApt, "sources.list.d")).sort())
      files.push(join(etcApt, "sources.list.d", f));
  } catch {
    // no sources.list.d
  }
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    if (file.endsWith(".sources")) {
      try {
        for (const s of parseDeb822(text)) {
          if (!(s.Types ?? "").split(/\s+/).includes("deb") || s.Enabled === "no") continue;
          for (const uri of (s.URIs ?? "").split(/\s+/).filter(Boolean))
            entries.push({ uri, suites: (s.Suites ?? "").split(/\s+/).filter(Boolean) });
        }
      } catch {
        // a broken sources file is apt's problem; it only costs us a default
      }
    } else if (file.endsWith(".list")) {
      for (const raw of text.split("\n")) {
        const line = raw
          .replace(/#.*/, "")
          .replace(/\[[^\]]*\]/, "")
          .trim();
        const m = /^deb\s+(\S+)\s+(\S+)/.exec(line);
        if (m) entries.push({ uri: m[1]!, suites: [m[2]!] });
      }
    }
  }
  return entries;
}

const trimSlash = (u: string) => u.replace(/\/+$/, "");

/** Picks the Debian and Debian security mirrors out of apt's entries. */
export function mirrorsFromApt(entries: AptEntry[]): { mirror?: string; securityMirror?: string } {
  let mirror: string | undefined;
  let securityMirror: string | undefined;
  for (const e of entries) {
    const isSecurity = e.suites.some((s) => s.endsWith("-security") || s.endsWith("/updates"));
    if (isSecurity) securityMirror ??= trimSlash(e.uri);
    else if (/\/debian\/?$/.test(e.uri)) mirror ??= trimSlash(e.uri);
  }
  return { mirror, securityMirror };
}

const KNOWN_KEYS = new Set(["mirror", "securityMirror", "suites", "components", "architecture", "keyring"]);

/** Reads a YAML sources file (the keys of SourcesConfig); unknown keys are refused. */
export function readSourcesFile(path: string): Partial<SourcesConfig> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new UsageError(`cannot read sources file ${path}: ${(e as Error).message.split("\n")[0]}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw new UsageError(`${path}: expected a mapping`);
  const out: Partial<SourcesConfig> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (!KNOWN_KEYS.has(k)) throw new UsageError(`${path}: unknown key "${k}"`);
    if (k === "suites" || k === "components") {
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        throw new UsageError(`${path}: "${k}" must be a list of strings`);
      out[k] = v;
    } else {
      if (typeof v !== "string") throw new UsageError(`${path}: "${k}" must be a string`);
      (out as Record<string, string>)[k] = v;
    }
  }
  return out;
}

export interface SourcesOverrides extends Partial<SourcesConfig> {
  file?: string;
}

/** Resolution order: explicit options, then a sources file (option, $BERTH_SOURCES), then apt, then Debian's defaults. */
export function resolveSources(o: SourcesOverrides = {}): SourcesConfig {
  const file = o.file ?? process.env.BERTH_SOURCES;
  const fromFile = file ? readSourcesFile(file) : {};
  const apt = mirrorsFromApt(readAptEntries());
  const cfg: SourcesConfig = {
    mirror: trimSlash(o.mirror ?? fromFile.mirror ?? apt.mirror ?? DEFAULT_MIRROR),
    securityMirror: trimSlash(
      o.securityMirror ?? fromFile.securityMirror ?? apt.securityMirror ?? DEFAULT_SECURITY_MIRROR,
    ),
    suites: o.suites ?? fromFile.suites ?? ["trixie"],
    components: o.components ?? fromFile.components ?? ["main"],
    architecture: o.architecture ?? fromFile.architecture ?? "amd64",
    keyring: o.keyring ?? fromFile.keyring ?? DEFAULT_KEYRING,
  };
  for (const s of cfg.suites)
    if (!/^[a-z0-9][a-z0-9.+-]*$/.test(s)) throw new UsageError(`invalid suite name "${s}"`);
  for (const c of cfg.components)
    if (!/^[a-z0-9][a-z0-9./-]*$/.test(c)) throw new UsageError(`invalid component name "${c}"`);
  if (!/^[a-z0-9-]+$/.test(cfg.architecture))
    throw new UsageError(`invalid architecture "${cfg.architecture}"`);
  for (const u of [cfg.mirror, cfg.securityMirror])
    if (!/^(https?|file):\/\//.test(u))
      throw new UsageError(`mirror must be an http(s):// or file:// URL: ${u}`);
  return cfg;
}

/** Security suites live on the security mirror; everything else on the main mirror. */
export function repositoriesOf(cfg: SourcesConfig): Repository[] {
  return cfg.suites.map((suite) => ({
    uri: suite.endsWith("-security") ? cfg.securityMirror : cfg.mirror,
    suite,
    components: cfg.components,
    architecture: cfg.architecture,
    keyring: cfg.keyring,
  }));
}
