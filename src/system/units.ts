// Offline systemd analysis of a root file system: which unit files exist, which are masked, and which
// units the default target pulls in (through .wants/.requires directories and Wants=/Requires=
// lines, drop-ins included). Reads only files under the given root, never the running system.

import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename, join, posix } from "node:path";

/** systemd's system unit search path, highest priority first (/run is empty in an image). */
export const UNIT_DIRS = [
  "etc/systemd/system",
  "run/systemd/system",
  "usr/local/lib/systemd/system",
  "usr/lib/systemd/system",
  "lib/systemd/system",
];

const PULL_KEYS = new Set(["Wants", "Requires", "Upholds", "BindsTo"]);

export interface UnitInfo {
  name: string;
  /** Path of the unit file inside the root ("" when only drop-ins or .wants exist). */
  path: string;
  masked: boolean;
  /** Units this one pulls in when it starts. */
  pulls: string[];
}

/** Reads a link target inside `root`, resolving absolute targets against the root. */
function linkTargetIn(root: string, linkPath: string): string {
  const t = readlinkSync(join(root, linkPath));
  return t.startsWith("/") ? t.slice(1) : posix.normalize(posix.join(posix.dirname(linkPath), t));
}

function templateOf(name: string): string | undefined {
  const m = /^([^@]+)@[^.]*(\.[a-z]+)$/.exec(name);
  return m && !name.includes("@.") ? `${m[1]}@${m[2]}` : undefined;
}

/** Parses the [Unit] pull dependencies out of unit-file text (continuations and multiple lines). */
export function pullsOf(text: string): string[] {
  const out: string[] = [];
  let section = "";
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    if (section !== "Unit") continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    if (!PULL_KEYS.has(key)) continue;
    const value = line.slice(eq + 1).trim();
    if (value === "")
      out.length = 0; // an empty assignment resets the list
    else out.push(...value.split(/\s+/));
  }
  return out;
}

export class UnitTree {
  readonly root: string;
  private readonly cache = new Map<string, UnitInfo | undefined>();

  constructor(root: string) {
    this.root = root;
  }

  /** The unit file for a name: first match in search order, following alias symlinks. */
  private locate(name: string): { path: string; masked: boolean } | undefined {
    for (const dir of UNIT_DIRS) {
      const rel = `${dir}/${name}`;
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(join(this.root, rel));
      } catch {
        continue;
      }
      if (st.isSymbolicLink()) {
        const target = linkTargetIn(this.root, rel);
        if (target === "dev/null") return { path: rel, masked: true };
        if (existsSync(join(this.root, target))) return { path: target, masked: false };
        continue;
      }
      if (st.isFile()) return { path: rel, masked: st.size === 0 && dir === "etc/systemd/system" };
    }
    const tmpl = templateOf(name);
    return tmpl ? this.locate(tmpl) : undefined;
  }

  /** Units listed in NAME.wants/ and NAME.requires/ directories (and the template's). */
  private dirPulls(name: string): string[] {
    const names = [name];
    const tmpl = templateOf(name);
    if (tmpl) names.push(tmpl);
    const out: string[] = [];
    for (const n of names)
      for (const dir of UNIT_DIRS)
        for (const suffix of [".wants", ".requires", ".upholds"]) {
          const d = join(this.root, dir, n + suffix);
          let entries: string[];
          try {
            entries = readdirSync(d);
          } catch {
            continue;
          }
          out.push(...entries);
        }
    return out;
  }

  private dropIns(name: string): string[] {
    const names = [name];
    const tmpl = templateOf(name);
    if (tmpl) names.unshift(tmpl);
    const type = name.slice(name.lastIndexOf("."));
    const files = new Map<string, string>();
    // Lower-priority directories first so higher ones override by file name.
    for (const dir of [...UNIT_DIRS].reverse())
      for (const n of [`${type.slice(1)}.d`, ...names.map((x) => `${x}.d`)]) {
        const d = join(dir, n);
        let entries: string[];
        try {
          entries = readdirSync(join(this.root, d));
        } catch {
          continue;
        }
        for (const e of entries) if (e.endsWith(".conf")) files.set(e, join(d, e));
      }
    return [...files.keys()].sort().map((k) => files.get(k)!);
  }

  unit(name: string): UnitInfo | undefined {
    if (this.cache.has(name)) return this.cache.get(name);
    const found = this.locate(name);
    let info: UnitInfo | undefined;
    if (found) {
      const pulls = new Set<string>();
      if (!found.masked) {
        const texts = [found.path, ...this.dropIns(name)].map((p) => {
          try {
            return readFileSync(join(this.root, p), "utf8");
          } catch {
            return "";
          }
        });
        for (const u of pullsOf(texts.join("\n"))) pulls.add(u);
        for (const u of this.dirPulls(name)) pulls.add(u);
        // An instance's unit file is its template's: "%i" expands to the instance.
        const instance = /@([^.]*)\./.exec(name)?.[1];
        if (instance)
          for (const u of [...pulls])
            if (u.includes("%i")) {
              pulls.delete(u);
              pulls.add(u.replace(/%i/g, instance));
            }
      }
      info = { name, path: found.path, masked: found.masked, pulls: [...pulls] };
    }
    this.cache.set(name, info);
    return info;
  }

  defaultTarget(): string {
    for (const dir of UNIT_DIRS) {
      const rel = `${dir}/default.target`;
      try {
        if (lstatSync(join(this.root, rel)).isSymbolicLink())
          return basename(readlinkSync(join(this.root, rel)));
        return "default.target";
      } catch {}
    }
    return "multi-user.target";
  }

  /** Every unit the target pulls in, transitively (masked and missing units excluded). */
  closure(target = this.defaultTarget()): Set<string> {
    const seen = new Set<string>();
    const todo = [target];
    while (todo.length) {
      const n = todo.pop()!;
      if (seen.has(n)) continue;
      const u = this.unit(n);
      if (!u || u.masked) continue;
      seen.add(n);
      for (const p of u.pulls) if (!seen.has(p)) todo.push(p);
    }
    return seen;
  }

  /** Services started for the default target. */
  enabledServices(): string[] {
    return [...this.closure()].filter((n) => n.endsWith(".service")).sort();
  }

  /** All .service unit files present (templates included, aliases and masks not). */
  serviceUnitFiles(): string[] {
    const names = new Set<string>();
    for (const dir of UNIT_DIRS) {
      let entries: string[];
      try {
        entries = readdirSync(join(this.root, dir));
      } catch {
        continue;
      }
      for (const e of entries) {
        if (!e.endsWith(".service")) continue;
        try {
          if (lstatSync(join(this.root, dir, e)).isFile()) names.add(e);
        } catch {}
      }
    }
    return [...names].sort();
  }
}
