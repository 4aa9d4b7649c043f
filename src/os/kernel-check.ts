// Which container features a kernel has, in the spirit of moby's contrib/check-config.sh: from a kernel
// config (an image's kernel.config, a root's /boot/config-*, a linux-image .deb) and, for the running
// kernel, from what /proc and /sys show (namespaces, cgroup v2 controllers, overlayfs, seccomp).

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../common/errors.ts";
import { listDeb, readDebFile } from "../pkg/deb.ts";

export type FeatureState = "builtin" | "module" | "missing" | "present" | "unknown";

export interface Feature {
  group: string;
  name: string;
  /** CONFIG_ symbol, or a runtime probe description. */
  source: string;
  required: boolean;
  state: FeatureState;
}

interface Spec {
  group: string;
  config: string;
  required: boolean;
}

const req = (group: string, ...configs: string[]): Spec[] =>
  configs.map((config) => ({ group, config, required: true }));
const opt = (group: string, ...configs: string[]): Spec[] =>
  configs.map((config) => ({ group, config, required: false }));

// Required: Docker does not start or cannot run a container without these (check-config.sh "Generally Necessary").
export const SPECS: Spec[] = [
  ...req("namespaces", "NAMESPACES", "NET_NS", "PID_NS", "IPC_NS", "UTS_NS"),
  ...opt("namespaces", "USER_NS"),
  ...req(
    "cgroups",
    "CGROUPS",
    "CGROUP_CPUACCT",
    "CGROUP_DEVICE",
    "CGROUP_FREEZER",
    "CGROUP_SCHED",
    "CPUSETS",
    "MEMCG",
    "CGROUP_PIDS",
    "CGROUP_BPF",
  ),
  ...opt(
    "cgroups",
    "BLK_CGROUP",
    "BLK_DEV_THROTTLING",
    "CGROUP_PERF",
    "CGROUP_HUGETLB",
    "NET_CLS_CGROUP",
    "CGROUP_NET_PRIO",
    "CFS_BANDWIDTH",
    "FAIR_GROUP_SCHED",
  ),
  ...req("security", "KEYS", "POSIX_MQUEUE", "SECCOMP", "SECCOMP_FILTER"),
  ...opt("security", "SECURITY_APPARMOR", "SECURITY_SELINUX"),
  ...req(
    "networking",
    "VETH",
    "BRIDGE",
    "BRIDGE_NETFILTER",
    "IP_NF_FILTER",
    "IP_NF_TARGET_MASQUERADE",
    "NETFILTER_XT_MATCH_ADDRTYPE",
    "NETFILTER_XT_MATCH_CONNTRACK",
    "NETFILTER_XT_MATCH_IPVS",
    "NETFILTER_XT_MARK",
    "IP_NF_NAT",
    "NF_NAT",
  ),
  ...opt(
    "networking",
    "IP_NF_RAW",
    "IP_VS",
    "IP_VS_NFCT",
    "IP_VS_PROTO_TCP",
    "IP_VS_PROTO_UDP",
    "IP_VS_RR",
    "VXLAN",
    "BRIDGE_VLAN_FILTERING",
    "IPVLAN",
    "MACVLAN",
    "DUMMY",
    "XFRM_USER",
    "INET_ESP",
    "NF_TABLES",
    "NFT_COMPAT",
  ),
  ...req("storage", "OVERLAY_FS", "EXT4_FS", "EXT4_FS_POSIX_ACL", "EXT4_FS_SECURITY"),
  ...opt("storage", "BTRFS_FS", "XFS_FS", "SQUASHFS", "EROFS_FS"),
  ...opt(
    "live patching",
    "LIVEPATCH",
    "DYNAMIC_FTRACE_WITH_REGS",
    "MODULE_SIG",
    "MODULE_SIG_FORCE",
    "SECURITY_LOCKDOWN_LSM",
  ),
];

export function checkConfig(config: Map<string, string>): Feature[] {
  return SPECS.map((s) => {
    const v = config.get(s.config);
    const state: FeatureState = v === "y" ? "builtin" : v === "m" ? "module" : "missing";
    return { group: s.group, name: s.config, source: `CONFIG_${s.config}`, required: s.required, state };
  });
}

/** Probes of the running kernel that do not need its config. */
export function runtimeProbes(): Feature[] {
  const out: Feature[] = [];
  const present = (ok: boolean): FeatureState => (ok ? "present" : "missing");
  for (const ns of ["net", "pid", "ipc", "uts", "mnt", "user", "cgroup"])
    out.push({
      group: "namespaces",
      name: `${ns} namespace`,
      source: `/proc/self/ns/${ns}`,
      required: ns !== "user",
      state: present(existsSync(`/proc/self/ns/${ns}`)),
    });
  const cg = cgroupLayout();
  out.push({
    group: "cgroups",
    name: `cgroup hierarchy: ${cg.mode}`,
    source: "/proc/self/mountinfo",
    required: false,
    state: cg.mode === "v2" ? "present" : cg.mode === "none" ? "missing" : "present",
  });
  for (const c of ["cpu", "cpuset", "io", "memory", "pids"]) {
    const v1name = c === "io" ? "blkio" : c;
    const where = cg.v2.includes(c) ? "v2" : cg.v1.includes(v1name) ? "v1" : undefined;
    out.push({
      group: "cgroups",
      name: `cgroup controller ${c}${where ? ` (${where})` : ""}`,
      source: "/proc/self/mountinfo",
      required: c !== "io",
      state: where ? "present" : "missing",
    });
  }
  const fs = readFileSync("/proc/filesystems", "utf8");
  const modulesDir = join("/usr/lib/modules", readFileSync("/proc/sys/kernel/osrelease", "utf8").trim());
  const loadable = (mod: string) => existsSync(modulesDir) && findModule(modulesDir, mod);
  out.push({
    group: "storage",
    name: "overlay file system",
    source: "/proc/filesystems",
    required: true,
    state: /\toverlay$/m.test(fs) ? "present" : loadable("overlay") ? "module" : "missing",
  });
  const status = readFileSync("/proc/self/status", "utf8");
  out.push({
    group: "security",
    name: "seccomp",
    source: "/proc/self/status Seccomp",
    required: true,
    state: present(/^Seccomp:/m.test(status)),
  });
  const lsm = existsSync("/sys/kernel/security/lsm") ? readFileSync("/sys/kernel/security/lsm", "utf8") : "";
  out.push({
    group: "security",
    name: "AppArmor active",
    source: "/sys/kernel/security/lsm",
    required: false,
    state: lsm ? present(lsm.includes("apparmor")) : "unknown",
  });
  out.push({
    group: "live patching",
    name: "livepatch interface",
    source: "/sys/kernel/livepatch",
    required: false,
    state: present(existsSync("/sys/kernel/livepatch")),
  });
  return out;
}

/** How cgroups are mounted: the unified v2 controllers and the v1 hierarchies. */
export function cgroupLayout(mountinfo = readFileSync("/proc/self/mountinfo", "utf8")): {
  mode: "v2" | "hybrid" | "v1" | "none";
  v2: string[];
  v1: string[];
} {
  const v1: string[] = [];
  let v2root: string | undefined;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const mountPoint = left.split(" ")[4]!;
    const [fstype, , options] = right.split(" ");
    if (fstype === "cgroup2") v2root ??= mountPoint;
    if (fstype === "cgroup")
      for (const o of (options ?? "").split(","))
        if (!["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].includes(o) && !o.startsWith("name="))
          v1.push(o);
  }
  let v2: string[] = [];
  if (v2root && existsSync(join(v2root, "cgroup.controllers")))
    v2 = readFileSync(join(v2root, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean);
  const mode = v2root && v1.length === 0 ? "v2" : v2root && v1.length ? "hybrid" : v1.length ? "v1" : "none";
  return { mode, v2, v1 };
}

function findModule(dir: string, name: string): boolean {
  try {
    const dep = readFileSync(join(dir, "modules.dep"), "utf8");
    return new RegExp(`/${name}\\.ko(\\.[a-z]+)?:`).test(dep);
  } catch {
    return false;
  }
}

/** A kernel config from an image directory, a root file system, a config file or a linux-image .deb. */
export async function configOf(target: string): Promise<{ text: string; from: string }> {
  if (!existsSync(target)) throw new UsageError(`no such image, root or file: ${target}`);
  if (isArArchive(target)) {
    const entry = (await listDeb(target)).find((e) => /^boot\/config-/.test(e.path));
    if (!entry) throw new UsageError(`${target} holds no boot/config-*; is it a linux-image package?`);
    const buf = await readDebFile(target, entry.path);
    return { text: buf!.toString("utf8"), from: `${target}:${entry.path}` };
  }
  for (const candidate of [join(target, "kernel.config"), target]) {
    if (existsSync(candidate) && !candidate.endsWith("/") && readFileSafe(candidate)?.includes("CONFIG_"))
      return { text: readFileSync(candidate, "utf8"), from: candidate };
  }
  const boot = join(target, "boot");
  const configs = existsSync(boot) ? readdirSync(boot).filter((f) => f.startsWith("config-")) : [];
  if (configs.length)
    return {
      text: readFileSync(join(boot, configs.sort().pop()!), "utf8"),
      from: join(boot, configs.sort().pop()!),
    };
  throw new UsageError(`${target}: found no kernel config (kernel.config, boot/config-*)`);
}

function isArArchive(p: string): boolean {
  try {
    const fd = openSync(p, "r");
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, 0);
    closeSync(fd);
    return b.toString("latin1") === "!<arch>\n";
  } catch {
    return false;
  }
}

function readFileSafe(p: string): string | undefined {
  try {
    return readFileSync(p, "utf8").slice(0, 4096);
  } catch {
    return undefined;
  }
}

export interface KernelCheck {
  target: string;
  configFrom?: string;
  features: Feature[];
  missingRequired: Feature[];
}

export function summarize(target: string, features: Feature[], configFrom?: string): KernelCheck {
  return {
    target,
    configFrom,
    features,
    missingRequired: features.filter((f) => f.required && f.state === "missing"),
  };
}
