// Pure parsers for the configuration files the hardening rules read. Each takes text (or a list of
// files with their text) and returns what the owning program would conclude from it.

/** One sysctl.d-style file: "key = value" lines; "-key" (ignore errors) is read as key. */
export function parseSysctlText(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = normalizeSysctlKey(line.slice(0, eq).trim().replace(/^-/, ""));
    out.set(
      key,
      line
        .slice(eq + 1)
        .trim()
        .replace(/\s+/g, " "),
    );
  }
  return out;
}

/** sysctl accepts both dots and slashes as separators. */
export function normalizeSysctlKey(key: string): string {
  return key.includes("/") && !key.includes(".") ? key.replaceAll("/", ".") : key;
}

/**
 * systemd-sysctl's order: files from /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
 * /usr/lib/sysctl.d (and /lib/sysctl.d) are merged by file name — /etc wins over /usr for the same
 * name — then applied in name order, and /etc/sysctl.conf last. Later assignments win.
 */
export function sysctlFileOrder(files: { dir: string; name: string }[]): { dir: string; name: string }[] {
  const precedence = [
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
  ];
  const byName = new Map<string, { dir: string; name: string }>();
  for (const dir of precedence)
    for (const f of files.filter((x) => x.dir === dir && x.name.endsWith(".conf")))
      if (!byName.has(f.name)) byName.set(f.name, f);
  return [...byName.keys()].sort().map((n) => byName.get(n)!);
}

/** sshd's effective global settings: keywords are case-insensitive and the first value wins. */
export interface SshdConfig {
  /** Lower-cased keyword → first value, from the global section only (before any Match). */
  settings: Map<string, string>;
  /** Files read, in order, with the Include directives followed. */
  files: string[];
  /** Whether the main file includes sshd_config.d before its own settings. */
  includesDropIns: boolean;
}

/**
 * Reads sshd_config the way sshd does for the global section: Include globs are expanded in lexical
 * order at the point they appear; the first occurrence of a keyword wins; Match blocks are skipped.
 */
export function parseSshdConfig(
  mainPath: string,
  read: (path: string) => string | undefined,
  glob: (pattern: string) => string[],
): SshdConfig {
  const settings = new Map<string, string>();
  const files: string[] = [];
  let includesDropIns = false;
  let sawSetting = false;
  const visit = (path: string, depth: number) => {
    const text = read(path);
    if (text === undefined || depth > 8) return;
    files.push(path);
    let inMatch = false;
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
      if (!m) continue;
      const key = m[1]!.toLowerCase();
      const value = m[2]!.trim().replace(/^"(.*)"$/, "$1");
      if (key === "match") {
        inMatch = true;
        continue;
      }
      if (inMatch) continue;
      if (key === "include") {
        for (const pattern of value.split(/\s+/)) {
          const abs = pattern.startsWith("/") ? pattern : `/etc/ssh/${pattern}`;
          if (depth === 0 && abs.startsWith("/etc/ssh/sshd_config.d/") && !sawSetting) includesDropIns = true;
          for (const f of glob(abs).sort()) visit(f, depth + 1);
        }
        continue;
      }
      if (depth === 0) sawSetting = true;
      if (!settings.has(key)) settings.set(key, value);
    }
  };
  visit(mainPath, 0);
  return { settings, files, includesDropIns };
}

/** "KEY VALUE" files such as /etc/login.defs: last assignment wins. */
export function parseKeyValueSpace(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!.trim());
  }
  return out;
}

/** INI-style systemd configuration (journald.conf and its drop-ins): section.key → value, later wins. */
export function parseSystemdIni(texts: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const text of texts) {
    let section = "";
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#") || line.startsWith(";")) continue;
      const sec = /^\[(.+)\]$/.exec(line);
      if (sec) {
        section = sec[1]!;
        continue;
      }
      const eq = line.indexOf("=");
      if (eq > 0) out.set(`${section}.${line.slice(0, eq).trim()}`, line.slice(eq + 1).trim());
    }
  }
  return out;
}

/** modprobe.d: which modules are blacklisted and which have their install command replaced. */
export function parseModprobe(texts: string[]): { blacklisted: Set<string>; disabled: Set<string> } {
  const blacklisted = new Set<string>();
  const disabled = new Set<string>();
  const norm = (m: string) => m.replaceAll("-", "_");
  for (const text of texts)
    for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
      const parts = raw.trim().split(/\s+/);
      if (parts[0] === "blacklist" && parts[1]) blacklisted.add(norm(parts[1]));
      if (parts[0] === "install" && parts[1] && /^(\/usr)?\/bin\/(false|true)$/.test(parts[2] ?? ""))
        disabled.add(norm(parts[1]));
    }
  return { blacklisted, disabled };
}

export interface MountEntry {
  source: string;
  target: string;
  type: string;
  options: string[];
}

/** /etc/fstab and /proc/self/mounts share a format (octal escapes for spaces). */
export function parseFstab(text: string): MountEntry[] {
  const unescapeOctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const f = line.split(/\s+/);
    if (f.length < 4) continue;
    out.push({
      source: unescapeOctal(f[0]!),
      target: unescapeOctal(f[1]!),
      type: f[2]!,
      options: f[3]!.split(","),
    });
  }
  return out;
}

/** A systemd .mount unit's What/Where/Type/Options. */
export function parseMountUnit(texts: string[]): MountEntry | undefined {
  const ini = parseSystemdIni(texts);
  const where = ini.get("Mount.Where");
  if (!where) return undefined;
  return {
    source: ini.get("Mount.What") ?? "",
    target: where,
    type: ini.get("Mount.Type") ?? "",
    options: (ini.get("Mount.Options") ?? "").split(",").filter(Boolean),
  };
}

export interface PasswdEntry {
  name: string;
  password: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim() || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 7) continue;
    out.push({
      name: f[0]!,
      password: f[1]!,
      uid: Number(f[2]),
      gid: Number(f[3]),
      home: f[5]!,
      shell: f[6]!.trim(),
    });
  }
  return out;
}

export interface ShadowEntry {
  name: string;
  hash: string;
  maxDays?: number;
  inactive?: number;
}

export function parseShadow(text: string): ShadowEntry[] {
  const out: ShadowEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 8 || !f[0]) continue;
    const num = (s: string | undefined) => (s && /^\d+$/.test(s) ? Number(s) : undefined);
    out.push({ name: f[0], hash: f[1]!, maxDays: num(f[4]), inactive: num(f[6]) });
  }
  return out;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 4 || !f[0]) continue;
    out.push({ name: f[0], gid: Number(f[2]), members: f[3]!.trim().split(",").filter(Boolean) });
  }
  return out;
}

/** dockerd flags as daemon.json keys: `--icc=false` → icc: false; repeated flags collect into arrays. */
export function dockerdFlags(argv: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const multi = new Set(["host", "insecure-registry", "log-opt", "add-runtime", "default-ulimit"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--") && !/^-H$/.test(a)) continue;
    let key: string;
    let value: unknown;
    const eq = a.indexOf("=");
    if (a === "-H") {
      key = "host";
      value = argv[++i];
    } else if (eq > 0) {
      key = a.slice(2, eq);
      value = a.slice(eq + 1);
    } else {
      key = a.slice(2);
      const next = argv[i + 1];
      value = next !== undefined && !next.startsWith("-") && !BOOLEAN_FLAGS.has(key) ? argv[++i] : true;
    }
    if (value === "true") value = true;
    if (value === "false") value = false;
    if (multi.has(key)) {
      const k = key === "host" ? "hosts" : key === "insecure-registry" ? "insecure-registries" : `${key}s`;
      out[k] = [...((out[k] as unknown[]) ?? []), value];
    } else out[key] = value;
  }
  return out;
}

const BOOLEAN_FLAGS = new Set([
  "icc",
  "live-restore",
  "no-new-privileges",
  "userland-proxy",
  "iptables",
  "ip-forward",
  "tlsverify",
  "tls",
  "experimental",
  "selinux-enabled",
  "debug",
]);
