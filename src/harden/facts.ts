// What the rules look at, for one target. An offline root answers only from files under that root
// (sysctls from sysctl.d, services from unit symlinks); the live host adds running state from /proc,
// systemd and the Docker engine. Everything is read lazily and cached, so a rule set costs what it uses.

import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from "node:fs";
import { posix } from "node:path";
import type { ContainerInfo, ImageInfo } from "../common/docker.ts";
import type { InstalledPackage } from "../pkg/status.ts";
import { parseStatusText } from "../pkg/status.ts";
import { parseKernelConfig, runningKernelConfig } from "../system/kernel-config.ts";
import { UnitTree } from "../system/units.ts";
import {
  dockerdFlags,
  type GroupEntry,
  type MountEntry,
  type PasswdEntry,
  parseFstab,
  parseGroup,
  parseModprobe,
  parseMountUnit,
  parsePasswd,
  parseShadow,
  parseSshdConfig,
  parseSysctlText,
  parseSystemdIni,
  type ShadowEntry,
  type SshdConfig,
  sysctlFileOrder,
} from "./config.ts";
import { type WalkResult, walkTree } from "./walk.ts";

export type TargetKind = "host" | "root" | "image" | "container";

/** Resolves an absolute path inside `root`, following symlinks without ever leaving the root. */
export function resolveIn(root: string, path: string): string {
  if (root === "/") return path;
  let parts = path.split("/").filter(Boolean);
  const done: string[] = [];
  let hops = 0;
  while (parts.length) {
    const part = parts.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      done.pop();
      continue;
    }
    const candidate = posix.join(root, ...done, part);
    let st: Stats | undefined;
    try {
      st = lstatSync(candidate);
    } catch {
      done.push(part);
      continue;
    }
    if (st.isSymbolicLink() && hops++ < 40) {
      const t = readlinkSync(candidate);
      if (t.startsWith("/")) done.length = 0;
      parts = [...t.split("/").filter(Boolean), ...parts];
      continue;
    }
    done.push(part);
  }
  return posix.join(root, ...done);
}

export class Facts {
  readonly kind: TargetKind;
  readonly label: string;
  /** Root of the file system the rules read ("/" for the host). Empty for a container. */
  readonly root: string;
  /** The image or container as the Docker engine describes it, for those targets. */
  readonly image?: ImageInfo;
  readonly container?: ContainerInfo;
  /** Containers on the host's engine (host target only; empty when no engine answers). */
  containers: ContainerInfo[] = [];
  /** Known vulnerabilities of the target's kernels, when an advisory database exists. */
  kernelVulns?: { kernels: string[]; findings: { id: string; severity: string; fixed?: string }[] };
  /** A built Berth OS image: checked as a root, never changed (harden the profile and rebuild). */
  readOnlyImage = false;
  /** A walk made elsewhere (an image's export stream); otherwise the root is walked on first use. */
  walkResult?: WalkResult;
  private readonly cache = new Map<string, unknown>();

  constructor(o: {
    kind: TargetKind;
    label: string;
    root: string;
    image?: ImageInfo;
    container?: ContainerInfo;
  }) {
    this.kind = o.kind;
    this.label = o.label;
    this.root = o.root;
    this.image = o.image;
    this.container = o.container;
  }

  get live(): boolean {
    return this.kind === "host";
  }

  private memo<T>(key: string, f: () => T): T {
    if (!this.cache.has(key)) this.cache.set(key, f());
    return this.cache.get(key) as T;
  }

  /** The real path on this machine of an absolute path in the target. */
  path(p: string): string {
    return resolveIn(this.root, p);
  }

  read(p: string): string | undefined {
    if (!this.root) return undefined;
    return this.memo(`read:${p}`, () => {
      try {
        return readFileSync(this.path(p), "utf8");
      } catch {
        return undefined;
      }
    });
  }

  list(dir: string): string[] {
    if (!this.root) return [];
    return this.memo(`list:${dir}`, () => {
      try {
        return readdirSync(this.path(dir)).sort();
      } catch {
        return [];
      }
    });
  }

  /** lstat of the path's final component (the parent directories resolved inside the root). */
  stat(p: string): Stats | undefined {
    if (!this.root) return undefined;
    try {
      return lstatSync(posix.join(this.path(posix.dirname(p)), posix.basename(p)));
    } catch {
      return undefined;
    }
  }

  exists(p: string): boolean {
    return this.stat(p) !== undefined;
  }

  /** Text of every file in a drop-in directory, in name order. */
  dropIns(dir: string, suffix = ".conf"): string[] {
    return this.list(dir)
      .filter((n) => n.endsWith(suffix))
      .map((n) => this.read(`${dir}/${n}`) ?? "");
  }

  packages(): InstalledPackage[] {
    return this.memo("packages", () => {
      const text = this.read("/var/lib/dpkg/status");
      if (text !== undefined) return parseStatusText(text).filter((p) => p.status === "installed");
      // Distroless images keep one file per package.
      return this.list("/var/lib/dpkg/status.d").flatMap((n) =>
        parseStatusText(this.read(`/var/lib/dpkg/status.d/${n}`) ?? "").filter(
          (p) => p.status === "installed",
        ),
      );
    });
  }

  hasPackage(name: string): boolean {
    return this.packages().some((p) => p.name === name);
  }

  /** Persisted sysctls, merged as systemd-sysctl merges them. */
  sysctlPersisted(): Map<string, string> {
    return this.memo("sysctl.persisted", () => {
      const dirs = [
        "etc/sysctl.d",
        "run/sysctl.d",
        "usr/local/lib/sysctl.d",
        "usr/lib/sysctl.d",
        "lib/sysctl.d",
      ];
      const files = dirs.flatMap((dir) => this.list(`/${dir}`).map((name) => ({ dir, name })));
      const merged = new Map<string, string>();
      for (const f of sysctlFileOrder(files))
        for (const [k, v] of parseSysctlText(this.read(`/${f.dir}/${f.name}`) ?? "")) merged.set(k, v);
      for (const [k, v] of parseSysctlText(this.read("/etc/sysctl.conf") ?? "")) merged.set(k, v);
      return merged;
    });
  }

  /** The running value (host only). */
  sysctlRuntime(key: string): string | undefined {
    if (!this.live) return undefined;
    try {
      return readFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, "utf8")
        .trim()
        .replace(/\s+/g, " ");
    } catch {
      return undefined;
    }
  }

  modprobe(): { blacklisted: Set<string>; disabled: Set<string> } {
    return this.memo("modprobe", () =>
      parseModprobe([
        ...this.dropIns("/lib/modprobe.d"),
        ...this.dropIns("/usr/lib/modprobe.d"),
        ...this.dropIns("/etc/modprobe.d"),
      ]),
    );
  }

  modulesLoaded(): Set<string> | undefined {
    if (!this.live) return undefined;
    return this.memo("modules.loaded", () => {
      let text = "";
      try {
        text = readFileSync("/proc/modules", "utf8");
      } catch {
        // A kernel built without module support has no /proc/modules: nothing is loaded.
      }
      return new Set(
        text
          .split("\n")
          .map((l) => l.split(" ")[0]!)
          .filter(Boolean),
      );
    });
  }

  /** Mounts as configured: /etc/fstab, then systemd .mount units enabled in the root. */
  mountsPersisted(): MountEntry[] {
    return this.memo("mounts.persisted", () => {
      const out = parseFstab(this.read("/etc/fstab") ?? "");
      const units = this.units();
      for (const name of ["tmp.mount", "dev-shm.mount", "var-tmp.mount"]) {
        const u = units.unit(name);
        if (!u || u.masked || !u.path) continue;
        const dropDir = `/etc/systemd/system/${name}.d`;
        const m = parseMountUnit([this.read(`/${u.path}`) ?? "", ...this.dropIns(dropDir)]);
        const pulled = this.enabled(name) || name === "tmp.mount";
        if (m && pulled && !out.some((e) => e.target === m.target)) out.push(m);
      }
      return out;
    });
  }

  mountsRuntime(): MountEntry[] | undefined {
    if (!this.live) return undefined;
    return this.memo("mounts.runtime", () => parseFstab(readFileSync("/proc/self/mounts", "utf8")));
  }

  units(): UnitTree {
    return this.memo("units", () => new UnitTree(this.root || "/nonexistent"));
  }

  /** Whether the unit is started at boot (pulled in by the default target, not masked). */
  enabled(unit: string): boolean {
    return this.memo("units.closure", () => this.units().closure()).has(unit);
  }

  /** Whether the unit file exists at all in the target. */
  hasUnit(unit: string): boolean {
    const u = this.units().unit(unit);
    return !!u && !!u.path && !u.masked;
  }

  /** Running state from systemd (host only); undefined when systemd does not answer. */
  active(unit: string): boolean | undefined {
    if (!this.live) return undefined;
    const states = this.memo("units.active", () => {
      try {
        const out = execFileSync(
          "systemctl",
          ["list-units", "--all", "--plain", "--no-legend", "--no-pager", "--state=active"],
          { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 },
        );
        return new Set(out.split("\n").map((l) => l.trim().split(/\s+/)[0]!));
      } catch {
        return undefined;
      }
    });
    return states ? states.has(unit) : undefined;
  }

  sshd(): SshdConfig | undefined {
    return this.memo("sshd", () => {
      if (this.read("/etc/ssh/sshd_config") === undefined) return undefined;
      return parseSshdConfig(
        "/etc/ssh/sshd_config",
        (p) => this.read(p),
        (pattern) => {
          const dir = posix.dirname(pattern);
          const re = new RegExp(
            `^${posix
              .basename(pattern)
              .replace(/[.+^${}()|[\]\\]/g, "\\$&")
              .replaceAll("*", ".*")
              .replaceAll("?", ".")}$`,
          );
          return this.list(dir)
            .filter((n) => re.test(n))
            .map((n) => `${dir}/${n}`);
        },
      );
    });
  }

  passwd(): PasswdEntry[] {
    return this.memo("passwd", () => parsePasswd(this.read("/etc/passwd") ?? ""));
  }

  shadow(): ShadowEntry[] {
    return this.memo("shadow", () => parseShadow(this.read("/etc/shadow") ?? ""));
  }

  groups(): GroupEntry[] {
    return this.memo("group", () => parseGroup(this.read("/etc/group") ?? ""));
  }

  journald(): Map<string, string> {
    return this.memo("journald", () =>
      parseSystemdIni([
        this.read("/usr/lib/systemd/journald.conf") ?? "",
        this.read("/etc/systemd/journald.conf") ?? "",
        ...this.dropIns("/usr/lib/systemd/journald.conf.d"),
        ...this.dropIns("/etc/systemd/journald.conf.d"),
      ]),
    );
  }

  /** dockerd's configuration: daemon.json with command-line flags of the unit (or the running daemon). */
  dockerDaemon(): Record<string, unknown> | undefined {
    return this.memo("docker.daemon", () => {
      const installed =
        this.hasPackage("docker.io") || this.hasPackage("docker-ce") || this.exists("/usr/sbin/dockerd");
      if (!installed) return undefined;
      let config: Record<string, unknown> = {};
      const text = this.read("/etc/docker/daemon.json");
      if (text !== undefined) {
        try {
          const v = JSON.parse(text) as unknown;
          if (v && typeof v === "object" && !Array.isArray(v)) config = v as Record<string, unknown>;
          else config = { "<invalid>": "daemon.json is not an object" };
        } catch {
          config = { "<invalid>": "daemon.json is not valid JSON" };
        }
      }
      return { ...this.dockerdArgs(), ...config };
    });
  }

  private dockerdArgs(): Record<string, unknown> {
    if (this.live) {
      // The running daemon's own command line, when there is one.
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
          if (argv[0] && posix.basename(argv[0]) === "dockerd") return dockerdFlags(argv.slice(1));
        } catch {}
      }
    }
    const unit = this.units().unit("docker.service");
    if (!unit?.path) return {};
    const ini = parseSystemdIni([
      this.read(`/${unit.path}`) ?? "",
      ...this.dropIns("/etc/systemd/system/docker.service.d"),
    ]);
    const exec = ini.get("Service.ExecStart") ?? "";
    return dockerdFlags(exec.split(/\s+/).slice(1));
  }

  /** Every file under the root, walked once for all file rules. */
  walk(): WalkResult {
    return this.memo("walk", () => {
      if (this.walkResult) return this.walkResult;
      const users = new Set(this.passwd().map((p) => p.uid));
      const groups = new Set(this.groups().map((g) => g.gid));
      return walkTree(this.root, { users, groups, live: this.live });
    });
  }

  kernelCmdline(): string[] | undefined {
    return this.memo("cmdline", () => {
      if (this.live) return readFileSync("/proc/cmdline", "utf8").trim().split(/\s+/);
      const grub = this.read("/etc/default/grub");
      const m = grub && /^GRUB_CMDLINE_LINUX(?:_DEFAULT)?="([^"]*)"/m.exec(grub);
      if (m) return m[1]!.split(/\s+/).filter(Boolean);
      const k = this.read("/etc/kernel/cmdline");
      return k ? k.trim().split(/\s+/) : undefined;
    });
  }

  /** The kernel's build config: the running one's on a live host, the newest in /boot otherwise. */
  kernelConfig(): Map<string, string> | undefined {
    return this.memo("kernel.config", () => {
      if (this.live) {
        const c = runningKernelConfig();
        return c ? parseKernelConfig(c.text) : undefined;
      }
      const name = this.list("/boot")
        .filter((n) => n.startsWith("config-"))
        .pop();
      const text = name ? this.read(`/boot/${name}`) : undefined;
      return text ? parseKernelConfig(text) : undefined;
    });
  }

  /** A /sys or /proc value of the running kernel (live host only). */
  readSys(path: string): string | undefined {
    if (!this.live) return undefined;
    try {
      return readFileSync(path, "utf8").trim();
    } catch {
      return undefined;
    }
  }

  limitsConf(): string[] {
    return [this.read("/etc/security/limits.conf") ?? "", ...this.dropIns("/etc/security/limits.d")];
  }
}
