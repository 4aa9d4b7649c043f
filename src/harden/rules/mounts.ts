// Mount options for the world-writable places: /tmp, /dev/shm and /var/tmp. Checked as mounted on a live
// host and as configured (fstab, systemd mount units); fixed in the configuration, effective at next boot.

import { type MountEntry, parseFstab } from "../config.ts";
import type { Facts } from "../facts.ts";
import { type Change, fail, HOST_TARGETS, na, pass, type Rule } from "../rule.ts";

const OPTIONS = ["nodev", "nosuid", "noexec"] as const;

/** systemd mounts /dev/shm itself with these when fstab says nothing. */
const SYSTEMD_DEV_SHM: MountEntry = {
  source: "tmpfs",
  target: "/dev/shm",
  type: "tmpfs",
  options: ["nosuid", "nodev"],
};

function configured(f: Facts, target: string): MountEntry | undefined {
  return (
    f.mountsPersisted().find((m) => m.target === target) ??
    (target === "/dev/shm" ? SYSTEMD_DEV_SHM : undefined)
  );
}

function mounted(f: Facts, target: string): MountEntry | undefined {
  return f.mountsRuntime()?.findLast((m) => m.target === target);
}

/** The configuration change that gives `target` every hardening option (one line per mount point). */
export function mountFix(f: Facts, target: string): Change[] {
  const inFstab = parseFstab(f.read("/etc/fstab") ?? "").find((m) => m.target === target);
  const base = inFstab ?? configured(f, target);
  const opts = [...new Set([...(base?.options.filter((o) => o !== "defaults") ?? ["rw"]), ...OPTIONS])];
  if (!inFstab && target === "/tmp" && f.hasUnit("tmp.mount"))
    return [
      {
        kind: "lines",
        path: "/etc/systemd/system/tmp.mount.d/berth-harden.conf",
        syntax: "ini-equals",
        header: "# Set by berth harden.\n[Mount]",
        lines: [
          {
            key: "Options",
            line: `Options=${["mode=1777", "strictatime", ...opts.filter((o) => !/^mode=|strictatime/.test(o))].join(",")}`,
          },
        ],
      },
    ];
  const line = `${base?.source ?? "tmpfs"}\t${target}\t${base?.type ?? "tmpfs"}\t${opts.join(",")}\t0\t0`;
  return [{ kind: "lines", path: "/etc/fstab", syntax: "fstab", lines: [{ key: target, line }] }];
}

function optionRule(target: string, option: (typeof OPTIONS)[number], refs: string[]): Rule {
  const what = { nodev: "device files", nosuid: "set-user-ID programs", noexec: "programs" }[option];
  return {
    id: `mount-${target.slice(1).replaceAll("/", "-")}-${option}`,
    title: `${target} is mounted ${option}`,
    category: "mounts",
    severity: option === "noexec" ? "medium" : "low",
    rationale: `${target} is writable by everyone; ${option} stops ${what} placed there from working.`,
    refs,
    targets: HOST_TARGETS,
    check: (f) => {
      const conf = configured(f, target);
      const live = mounted(f, target);
      if (!conf && !live) return na(`${target} is not a separate file system`);
      const bad: string[] = [];
      if (live && !live.options.includes(option)) bad.push("mounted without it");
      if (conf && !conf.options.includes(option)) bad.push("configured without it");
      if (!conf && live) bad.push("not in fstab or a mount unit");
      return bad.length ? fail(`${target}: ${bad.join(", ")}`) : pass(`${target} has ${option}`);
    },
    advice: `Add ${option} to the options of ${target} in /etc/fstab (or its mount unit) and remount.`,
    fix: (f) => (configured(f, target) ? mountFix(f, target) : []),
  };
}

export const mountRules: Rule[] = [
  {
    id: "mount-tmp-separate",
    title: "/tmp is a separate file system",
    category: "mounts",
    severity: "low",
    rationale: "A separate /tmp cannot fill the root file system and can carry restrictive options.",
    refs: ["CIS Debian 12 1.1.2.1.1"],
    targets: HOST_TARGETS,
    check: (f) =>
      configured(f, "/tmp") || mounted(f, "/tmp")
        ? pass("/tmp is its own mount")
        : fail("/tmp lives on the root file system"),
    advice: "Mount a tmpfs on /tmp (enable tmp.mount, or add a tmpfs line to /etc/fstab).",
    fix: (f) => mountFix(f, "/tmp"),
  },
  ...OPTIONS.map((o) => optionRule("/tmp", o, [`CIS Debian 12 1.1.2.1.${OPTIONS.indexOf(o) + 2}`])),
  ...OPTIONS.map((o) => optionRule("/dev/shm", o, [`CIS Debian 12 1.1.2.2.${OPTIONS.indexOf(o) + 2}`])),
  ...OPTIONS.map((o) => optionRule("/var/tmp", o, [`CIS Debian 12 1.1.2.5.${OPTIONS.indexOf(o) + 2}`])),
  {
    id: "mount-home-nodev",
    title: "/home is mounted nodev",
    category: "mounts",
    severity: "low",
    rationale: "Users' files should never be device nodes.",
    refs: ["CIS Debian 12 1.1.2.3.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const m = mounted(f, "/home") ?? f.mountsPersisted().find((x) => x.target === "/home");
      if (!m) return na("/home is not a separate file system");
      return m.options.includes("nodev") ? pass("/home has nodev") : fail("/home without nodev");
    },
    advice: "Add nodev to the /home line in /etc/fstab.",
  },
];
